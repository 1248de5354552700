"""Where data lives (data root, cache) and the pair types every reader returns."""
from __future__ import annotations

import codecs
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np



DATA_ENV = "CSELAB_DATA_DIR"
CACHE_ENV = "CSELAB_CACHE"
COURSE_DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ folder

# SentEval's sub-dataset lists (senteval/sts.py); STS13 has no SMT (its input is not distributed).
STS_SUBSETS: dict[str, tuple[str, ...]] = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
STS_TASKS = (*STS_SUBSETS, "STSBenchmark", "SICKRelatedness")  # SimCSE's column order
SPLIT_FILES = {
    "STSBenchmark": {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"},
    "SICKRelatedness": {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"},
}


class DataFormatError(ValueError):
    """A data file has a malformed line; the message names file:line and the fix."""


class DataNotFoundError(FileNotFoundError):
    """A data root or file is missing; the message names the path and how to get it."""


@dataclass
class ScoredPairs:
    """Sentence pairs with gold similarity scores. ``scores``: (n,) float64."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, n: int, seed: int = 0) -> "ScoredPairs":
        """A fixed random ``n``-pair subset in the original order (every genre of a file, not just its first
        lines); the whole set when ``n >= len(self)``. The same ``seed`` gives the same pairs."""
        if n < 2:
            raise ValueError(f"subset(n={n}): a Spearman correlation needs at least 2 pairs.")
        if n >= len(self):
            return self
        keep = _fixed_subset(len(self), n, seed)
        return ScoredPairs([self.sentences1[i] for i in keep], [self.sentences2[i] for i in keep],
                           self.scores[keep], _subset_source(self.source, n))


@dataclass
class LabeledPairs:
    """Sentence pairs with binary labels (1 = paraphrase / match). ``labels``: (n,) int64 of 0/1."""

    sentences1: list[str]
    sentences2: list[str]
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int = 0) -> "LabeledPairs":
        """A fixed random ``n``-pair subset in the original order, as :meth:`ScoredPairs.subset` draws it
        (e.g. a short notebook's MRPC); the whole set when ``n >= len(self)``."""
        if n < 1:
            raise ValueError(f"subset(n={n}): choose at least 1 pair.")
        if n >= len(self):
            return self
        keep = _fixed_subset(len(self), n, seed)
        return LabeledPairs([self.sentences1[i] for i in keep], [self.sentences2[i] for i in keep],
                            self.labels[keep], _subset_source(self.source, n))


def _fixed_subset(length: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of ``length`` rows drawn without replacement; the same ``seed``, the same rows."""
    return np.sort(np.random.default_rng(seed).choice(length, size=n, replace=False))


def _subset_source(source: str, n: int) -> str:
    """``source`` named as an ``n``-pair subset (a subset of a subset names the final size)."""
    return re.sub(r" \(\d+-pair subset\)$", "", source) + f" ({n}-pair subset)"


# ------------------------------------------------------------------ locations
def cache_dir() -> Path:
    """``$CSELAB_CACHE``, default ``~/.cache/cselab``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cselab").expanduser()


def data_root(data_dir: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """The data root: ``data_dir``, else ``$CSELAB_DATA_DIR``, else ``cache_dir()/data``."""
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_ENV):
        root, origin = Path(os.environ[DATA_ENV]).expanduser(), f"${DATA_ENV}"
    else:
        root, origin = cache_dir() / "data", "the default cache"
    if must_exist and not root.is_dir():
        raise DataNotFoundError(
            f"Data root {root} (from {origin}) does not exist. Download the evaluation data with "
            f"`cselab download senteval` (or point {DATA_ENV} at a folder in SentEval's layout)."
        )
    return root


def find_data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`data_root` but returns None instead of raising when SentEval data is absent."""
    try:
        root = data_root(data_dir)
    except DataNotFoundError:
        return None
    return root if (root / "senteval" / "downstream" / "STS").is_dir() else None


def senteval_path(data_dir: str | os.PathLike | None, *parts: str) -> Path:
    path = data_root(data_dir).joinpath("senteval", "downstream", *parts)
    if not path.exists():
        raise DataNotFoundError(
            f"{path} is missing. Get SentEval's data with `cselab download senteval` "
            f"(into the cache, or `--dest DIR` and set {DATA_ENV}=DIR)."
        )
    return path


# ------------------------------------------------------------------ low-level line reading
def read_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a UTF-8 text file; a BOM is dropped and CRLF/LF both end a line."""
    path = Path(path)
    if not path.is_file():
        hint = " Re-download SentEval's data with `cselab download senteval --force`." if "senteval" in path.parts else ""
        raise DataNotFoundError(f"{path} does not exist.{hint}")
    raw = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        position = exc.start + skip
        line = raw[:position].count(b"\n") + 1
        raise DataFormatError(
            f"{path}:{line}: not valid UTF-8 (byte {raw[position]:#04x}). Re-save the file as UTF-8."
        ) from None
    return text.splitlines()


def _score(value: str, path: Path, line: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DataFormatError(f"{path}:{line}: gold score {value!r} is not a number; fix or remove that line "
                              "(an empty gold line marks an unscored pair).") from None
    if not math.isfinite(x):
        raise DataFormatError(f"{path}:{line}: gold score {value!r} is not a finite number; fix or remove that line.")
    return x


def _normalise(sentence: str) -> str:
    # SentEval splits on whitespace and the batcher re-joins the tokens with ' '.
    return " ".join(sentence.split())
