"""Data: SentEval readers, training-file readers, the course's shipped files, downloads.

Data root = the ``data_dir`` argument, else ``$CSELAB_DATA_DIR``, else the user cache
(``$CSELAB_CACHE/data``, default ``~/.cache/cselab/data``). Under a root the layout is::

    senteval/downstream/STS/STS12-en-test/ ...   SentEval's standard layout
    senteval/downstream/SICK/SICK_test_annotated.txt ...
    senteval/downstream/MRPC/msr_paraphrase_{train,test}.txt
    nli/nli_for_simcse.csv                         sent0,sent1,hard_neg
    unsup/wiki1m_for_simcse.txt                    one sentence per line
    ngcse/{wiki,nli}_sts.jsonl                     NGCSE graded groups (read_graded_groups)

The STS readers reproduce SentEval (``senteval/sts.py``, ``sick.py``) exactly: pairs
with an empty gold line are dropped, sentences are whitespace-split and re-joined with
one space. Every reader names ``file:line`` when a line is malformed.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ENV = "CSELAB_DATA_DIR"
CACHE_ENV = "CSELAB_CACHE"
COURSE_DATA_DIR = Path(__file__).resolve().parents[1] / "data"

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
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        source = re.sub(r" \(\d+-pair subset\)$", "", self.source)  # a subset of a subset names the final size
        return ScoredPairs([self.sentences1[i] for i in keep], [self.sentences2[i] for i in keep],
                           self.scores[keep], f"{source} ({n}-pair subset)")


@dataclass
class LabeledPairs:
    """Sentence pairs with binary labels (1 = paraphrase / match). ``labels``: (n,) int64 of 0/1."""

    sentences1: list[str]
    sentences2: list[str]
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)


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


# ------------------------------------------------------------------ SentEval STS
def read_sts_subset(folder: str | os.PathLike, subset: str) -> ScoredPairs:
    """One STS12-16 sub-dataset: ``STS.input.<subset>.txt`` + ``STS.gs.<subset>.txt``."""
    folder = Path(folder)
    input_file, gold_file = folder / f"STS.input.{subset}.txt", folder / f"STS.gs.{subset}.txt"
    pairs, gold = read_lines(input_file), read_lines(gold_file)
    if len(pairs) != len(gold):
        raise DataFormatError(
            f"{input_file} has {len(pairs)} lines but {gold_file} has {len(gold)}: each pair needs one gold line."
        )
    s1, s2, scores = [], [], []
    for number, (pair, score) in enumerate(zip(pairs, gold), start=1):
        fields = pair.split("\t")
        if len(fields) != 2:
            raise DataFormatError(
                f"{input_file}:{number}: expected 2 tab-separated sentences, found {len(fields)} field(s)."
            )
        if score == "":  # SentEval drops pairs that were not scored
            continue
        scores.append(_score(score, gold_file, number))
        s1.append(_normalise(fields[0]))
        s2.append(_normalise(fields[1]))
    return ScoredPairs(s1, s2, np.asarray(scores, dtype=np.float64), f"{folder.name}/{subset}")


def read_sts_year(task: str, data_dir: str | os.PathLike | None = None) -> dict[str, ScoredPairs]:
    """All sub-datasets of ``STS12`` ... ``STS16``, in SentEval's order."""
    if task not in STS_SUBSETS:
        raise ValueError(f"Unknown STS year {task!r}; choose one of {list(STS_SUBSETS)}.")
    folder = senteval_path(data_dir, "STS", f"{task}-en-test")
    return {subset: read_sts_subset(folder, subset) for subset in STS_SUBSETS[task]}


def read_stsb(split: str = "test", data_dir: str | os.PathLike | None = None) -> ScoredPairs:
    """STS Benchmark ``sts-<split>.csv``: tab-separated genre, file, year, id, score, s1, s2."""
    path = senteval_path(data_dir, "STS", "STSBenchmark", _split_file("STSBenchmark", split))
    s1, s2, scores = [], [], []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.strip().split("\t")
        if len(fields) < 7:
            raise DataFormatError(
                f"{path}:{number}: expected 7 tab-separated columns (genre, file, year, id, score, "
                f"sentence1, sentence2), found {len(fields)}."
            )
        scores.append(_score(fields[4], path, number))
        s1.append(_normalise(fields[5]))
        s2.append(_normalise(fields[6]))
    return ScoredPairs(s1, s2, np.asarray(scores, dtype=np.float64), f"STSBenchmark/{split}")


def read_sick(split: str = "test", data_dir: str | os.PathLike | None = None) -> ScoredPairs:
    """SICK relatedness: header line skipped; columns pair_ID, sentence_A, sentence_B, score, label."""
    path = senteval_path(data_dir, "SICK", _split_file("SICKRelatedness", split))
    s1, s2, scores = [], [], []
    for number, line in enumerate(read_lines(path)[1:], start=2):
        fields = line.strip().split("\t")
        if len(fields) < 4:
            raise DataFormatError(
                f"{path}:{number}: expected tab-separated pair_ID, sentence_A, sentence_B, "
                f"relatedness_score(, entailment_judgment), found {len(fields)} column(s)."
            )
        scores.append(_score(fields[3], path, number))
        s1.append(_normalise(fields[1]))
        s2.append(_normalise(fields[2]))
    return ScoredPairs(s1, s2, np.asarray(scores, dtype=np.float64), f"SICK/{split}")


def _split_file(task: str, split: str) -> str:
    if split not in SPLIT_FILES[task]:
        raise ValueError(f"Unknown split {split!r} for {task}; choose one of {list(SPLIT_FILES[task])}.")
    return SPLIT_FILES[task][split]


def load_sts_task(task: str, split: str = "test", data_dir: str | os.PathLike | None = None) -> dict[str, ScoredPairs]:
    """One evaluation task as ``{subset: pairs}``; STS-B and SICK-R give ``{split: pairs}``.

    STS12-16 only have test data, so for them ``split`` must be ``"test"``.
    """
    if task in STS_SUBSETS:
        if split != "test":
            raise ValueError(f"{task} has only a test split (asked for {split!r}); use STSBenchmark or SICKRelatedness.")
        return read_sts_year(task, data_dir)
    if task == "STSBenchmark":
        return {split: read_stsb(split, data_dir)}
    if task == "SICKRelatedness":
        return {split: read_sick(split, data_dir)}
    raise ValueError(f"Unknown STS task {task!r}; choose from {list(STS_TASKS)}.")


# ------------------------------------------------------------------ binary pair classification
MRPC_SPLITS = {"train": "msr_paraphrase_train.txt", "test": "msr_paraphrase_test.txt"}
MRPC_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


def _label(value: str, path: Path, line: int) -> int:
    if value.strip() not in ("0", "1"):
        raise DataFormatError(f"{path}:{line}: label {value!r} is not 0 or 1; fix or remove that line.")
    return int(value)


def _labeled_rows(path: Path, lines: list[str], columns: tuple[int, int, int], expected: list[str]) -> LabeledPairs:
    """Rows after the header; ``columns`` = (label, sentence1, sentence2) field indices."""
    header = "<TAB>".join(expected)
    if not lines or [h.strip() for h in lines[0].split("\t")] != expected:
        found = lines[0].split("\t") if lines else "an empty file"
        raise DataFormatError(f"{path}:1: expected the header {header}, found {found}.")
    s1, s2, labels = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(expected):
            raise DataFormatError(f"{path}:{number}: expected {len(expected)} tab-separated columns "
                                  f"({header}), found {len(fields)}.")
        label, first, second = (fields[i] for i in columns)
        labels.append(_label(label, path, number))
        first, second = _normalise(first), _normalise(second)
        if not first or not second:
            raise DataFormatError(f"{path}:{number}: empty sentence; every pair needs two sentences.")
        s1.append(first)
        s2.append(second)
    return LabeledPairs(s1, s2, np.asarray(labels, dtype=np.int64), path.name)


def read_mrpc(split: str = "test", data_dir: str | os.PathLike | None = None) -> LabeledPairs:
    """Microsoft Research Paraphrase Corpus, SentEval layout (``MRPC/msr_paraphrase_<split>.txt``).

    The files start with a UTF-8 BOM and the header ``Quality, #1 ID, #2 ID, #1 String, #2 String``
    (tab-separated); ``Quality`` is the label (1 = paraphrase). Like SentEval's ``MRPCEval`` the
    sentences are whitespace-split and re-joined. ``train``: 4,076 pairs (2,753 positive);
    ``test``: 1,725 pairs (1,147 positive). There is no dev split (SentEval cross-validates on train).
    """
    if split not in MRPC_SPLITS:
        raise ValueError(f"Unknown split {split!r} for MRPC; choose one of {list(MRPC_SPLITS)}.")
    path = senteval_path(data_dir, "MRPC", MRPC_SPLITS[split])
    pairs = _labeled_rows(path, read_lines(path), (0, 3, 4), MRPC_HEADER)
    pairs.source = f"MRPC/{split}"
    return pairs


def read_labeled_pairs(path: str | os.PathLike) -> LabeledPairs:
    """Your own binary pairs: header ``label<TAB>sentence1<TAB>sentence2``, labels 0/1 (1 = match)."""
    path = Path(path)
    return _labeled_rows(path, read_lines(path), (0, 1, 2), ["label", "sentence1", "sentence2"])


# ------------------------------------------------------------------ training files
def read_nli_triplets(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """SimCSE's ``nli_for_simcse.csv``: header ``sent0,sent1,hard_neg`` = (premise, entailment, contradiction)."""
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise DataFormatError(f"{path}:1: empty file; expected the header sent0,sent1,hard_neg.")
    # keepends: a quoted field may span lines; reader.line_num then counts physical lines
    reader = csv.reader([line + "\n" for line in lines])
    header = next(reader)
    if [h.strip() for h in header] != ["sent0", "sent1", "hard_neg"]:
        raise DataFormatError(f"{path}:1: header is {header}, expected ['sent0', 'sent1', 'hard_neg'].")
    triplets = []
    for row in reader:
        if len(row) != 3:
            raise DataFormatError(f"{path}:{reader.line_num}: expected 3 comma-separated columns, found "
                                  f"{len(row)} (put fields that contain commas in double quotes).")
        triplets.append((row[0], row[1], row[2]))
    return triplets


def check_training_table(path: str | os.PathLike, delimiter: str = ",") -> list[str]:
    """Check a training ``.csv`` (``delimiter=","``, quoted fields) or ``.tsv`` (tab, quotes are text)
    before ``datasets`` reads it, and return its header.

    pandas (under ``datasets``) would silently shift a row with an extra field into an index column
    and fill a short row with empty values; here every row must have as many fields as the header,
    the file must be UTF-8 (a BOM and CRLF line ends are fine), and the header names must be
    distinct. Errors name the file and line. Blank lines are allowed (pandas skips them).
    """
    path = Path(path)
    lines = read_lines(path)
    tsv = delimiter == "\t"
    kind, hint = (("tab", "a tab inside a sentence splits it; replace it by a space") if tsv else
                  ("comma", "put fields that contain commas in double quotes"))
    if not lines or not lines[0].strip():
        raise DataFormatError(f"{path}:1: empty header line; the first line must name the columns, e.g. "
                              + ("'sentence'." if tsv else "'sent0,sent1' or 'sent0,sent1,hard_neg'."))
    rows = csv.reader([line + "\n" for line in lines], delimiter=delimiter,
                      quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    header = [h.strip() for h in next(rows)]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataFormatError(f"{path}:1: column name(s) {repeated} appear more than once in the header {header}; "
                              "rename them so that each column has its own name.")
    for row in rows:
        if row and len(row) != len(header):
            raise DataFormatError(f"{path}:{rows.line_num}: {len(row)} {kind}-separated fields, but the header "
                                  f"{header} has {len(header)} ({hint}).")
    return header


def read_sentences(path: str | os.PathLike) -> list[str]:
    """One sentence per line (SimCSE's wiki1m format). Empty lines are skipped with a warning."""
    lines = read_lines(path)
    sentences = [line.strip() for line in lines if line.strip()]
    if len(sentences) < len(lines):
        warnings.warn(f"{path}: skipped {len(lines) - len(sentences)} empty line(s).", stacklevel=2)
    if not sentences:
        raise DataFormatError(f"{path}: no sentences (the file is empty).")
    return sentences


def read_documents(path: str | os.PathLike) -> list[dict[str, str]]:
    """JSON Lines documents, one ``{"title": ..., "text": ...}`` object per line."""
    path = Path(path)
    docs = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise DataFormatError(f"{path}:{number}: expected an object with a string field 'text'.")
        docs.append({"title": str(doc.get("title", "")), "text": doc["text"]})
    return docs


# ------------------------------------------------------------------ NGCSE's graded groups
# NGCSE's level keys, most similar first, and our columns for them (cselab.methods.ngcse.LEVEL_COLUMNS).
GRADED_LEVELS = {"5": "level5", "4": "level4", "3": "level3"}
GRADED_SPLITS = ("aigen", "other")
# header names a .csv/.tsv column may use for the sentence and each level (SimCSE's NLI triplets:
# sent1 = entailment -> '5', hard_neg = contradiction -> '4', NGCSE's NLI pattern)
_GRADED_HEADER = {"sent0": "sent0", "sentence": "sent0", "sent1": "level5", "hard_neg": "level4",
                  **GRADED_LEVELS, **{v: v for v in GRADED_LEVELS.values()}}
_GRADED_IGNORED = ("id", "meaning_id", "source_id")  # bookkeeping columns that may stay in a table


def _graded_text(value, where: str, key: str) -> str | None:
    """A cell of a graded group: a string, ``""``/whitespace/``None`` = absent (returned as None)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: {key!r} must be a string, got {type(value).__name__} {value!r}.")
    return value if value.strip() else None


def _graded_row(sentence, levels: dict[str, str | None], split, where: str) -> dict:
    if sentence is None or not isinstance(sentence, str) or not sentence.strip():
        raise DataFormatError(f"{where}: every row needs a non-empty 'sentence' (found {sentence!r}).")
    present = [k for k, v in levels.items() if v is not None]
    if split is None:  # a table without a split column: the levels decide
        split = "aigen" if present else "other"
    elif split not in GRADED_SPLITS:
        raise DataFormatError(f"{where}: 'split' is {split!r}; choose 'aigen' (a generated group) or 'other' "
                              "(an unsupervised sentence).")
    if split == "aigen" and not present:
        raise DataFormatError(f"{where}: an 'aigen' row needs at least one of the levels {list(GRADED_LEVELS)}; "
                              "all are empty (mark a lone sentence split 'other').")
    if split == "other" and present:
        raise DataFormatError(f"{where}: an 'other' row is an unsupervised sentence, but it has the levels "
                              f"{present}; make it 'aigen' or empty those cells.")
    return {"sent0": sentence, **{GRADED_LEVELS[k]: v for k, v in levels.items()}, "split": split}


def _graded_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{where}: expected a JSON object with 'sentence' and the levels "
                                  f"{list(GRADED_LEVELS)}, got {type(record).__name__}.")
        if "sentence" not in record:
            hint = " (a 'text' field is a DeCLUTR document, not an NGCSE group)" if "text" in record else ""
            raise DataFormatError(f"{where}: no 'sentence' field{hint}; NGCSE rows are "
                                  '{"split": "aigen"|"other", "sentence": ..., "5": ..., "4": ..., "3": ...}.')
        extra = [k for k in ("2", "1", "0") if _graded_text(record.get(k), where, k) is not None]
        if extra:
            raise DataFormatError(f"{where}: levels {extra} are not supported; cselab's NGCSE reads the levels "
                                  f"{list(GRADED_LEVELS)} (keep those cells empty).")
        levels = {k: _graded_text(record.get(k), where, k) for k in GRADED_LEVELS}
        yield where, _graded_row(record["sentence"], levels, record.get("split"), where)


def _graded_table(path: Path, delimiter: str) -> Iterator[tuple[str, dict]]:
    lines = read_lines(path)
    if not lines:
        raise DataFormatError(f"{path}:1: empty file; expected a header such as sent0,sent1,hard_neg.")
    if delimiter == "\t":  # the course's .tsv files: quotes are text (as cselab.train reads them)
        rows = ((number, line.split("\t")) for number, line in enumerate(lines, start=1))
    else:
        reader = csv.reader([line + "\n" for line in lines])  # physical line numbers, as read_nli_triplets
        rows = ((reader.line_num, row) for row in reader)
    _, header = next(rows)
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in _GRADED_HEADER and h not in _GRADED_IGNORED and h != "split"]
    columns = [_GRADED_HEADER.get(h) for h in header]
    named = [c for c in columns if c is not None]
    if unknown or "sent0" not in named or len(set(named)) != len(named):
        raise DataFormatError(
            f"{path}:1: header {header} is not a graded-group table: it needs one sentence column ('sent0' or "
            f"'sentence') and level columns from {sorted(set(_GRADED_HEADER) - {'sent0', 'sentence'})} (each level "
            f"once; 'sent1' = '5' = level5, 'hard_neg' = '4' = level4)"
            + (f"; unknown columns {unknown}" if unknown else "") + ".")
    split_at = header.index("split") if "split" in header else None
    for number, fields in rows:
        where = f"{path}:{number}"
        if len(fields) != len(header):
            hint = " (put fields that contain commas in double quotes)" if delimiter == "," else ""
            raise DataFormatError(f"{where}: expected {len(header)} columns ({', '.join(header)}), found "
                                  f"{len(fields)}{hint}.")
        cells = {c: _graded_text(v, where, h) for c, h, v in zip(columns, header, fields) if c is not None}
        levels = {k: cells.get(col) for k, col in GRADED_LEVELS.items()}
        split = fields[split_at].strip() if split_at is not None else None
        yield where, _graded_row(fields[columns.index("sent0")], levels, split or None, where)


def read_graded_groups(path: str | os.PathLike) -> list[dict[str, str | None]]:
    """NGCSE's training rows (reference §8.1), validated: ``{"sent0", "level5", "level4", "level3", "split"}``.

    Formats, by suffix:

    - ``.jsonl`` (NGCSE's own, :mod:`cselab.llm_data` writes it): one object per line with
      ``sentence``, the level keys ``"5"``, ``"4"``, ``"3"`` (most similar first; ``""``, ``null``
      or a missing key = absent) and ``split``: ``"aigen"`` (a generated group) or ``"other"``
      (a lone sentence, trained as an unsupervised dropout pair); other keys (``id``,
      ``provenance``, ...) are ignored. Without ``split`` a row with levels is ``aigen``.
    - ``.csv`` with a header: a sentence column ``sent0`` or ``sentence`` and level columns
      ``5``/``4``/``3`` (or ``level5``/...); SimCSE's NLI triplets ``sent0,sent1,hard_neg`` are
      NGCSE's NLI pattern, K = 3: ``sent1`` (entailment) -> ``level5``, ``hard_neg``
      (contradiction) -> ``level4``. Empty cells are absent levels.
    - ``.tsv`` with a ``sentence`` column (the course's toy corpus; quotes are text) and ``.txt``
      (one sentence per line): ``other`` rows only, i.e. unsupervised data.

    Absent levels are ``None``. Every ``aigen`` row must have the same levels as the first one (the
    official collator takes its keys from the first row, reference §8.1); rows are checked
    as they are read and a bad one raises :class:`DataFormatError` naming ``file:line``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        rows = [(f"{path}:{n}", _graded_row(line, dict.fromkeys(GRADED_LEVELS), "other", f"{path}:{n}"))
                for n, line in enumerate(read_lines(path), start=1) if line.strip()]
    elif suffix == ".jsonl":
        rows = _graded_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        rows = _graded_table(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} for graded groups; use .jsonl, .csv, .tsv or .txt.")
    out, first = [], None
    for where, row in rows:
        if row["split"] == "aigen":
            levels = tuple(c for c in GRADED_LEVELS.values() if row[c] is not None)
            if first is None:
                first = (levels, where)
            elif levels != first[0]:
                raise DataFormatError(f"{where}: this group has the levels {list(levels)} but the first group "
                                      f"({first[1]}) has {list(first[0])}; every generated group needs the same "
                                      "levels (split the file by pattern).")
        out.append(row)
    if not out:
        raise DataFormatError(f"{path}: no rows (the file is empty).")
    return out


def graded_levels(rows: Iterable[dict]) -> tuple[str, ...]:
    """The level columns that some row of ``rows`` (from :func:`read_graded_groups`) fills, most similar first."""
    rows = list(rows)
    return tuple(c for c in GRADED_LEVELS.values() if any(r.get(c) is not None for r in rows))


def is_graded_jsonl(path: str | os.PathLike) -> bool:
    """True when the first record of a ``.jsonl`` file has ``sentence`` and no ``text`` (NGCSE, not DeCLUTR)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and "sentence" in record and "text" not in record
    return False


# ------------------------------------------------------------------ data shipped with the course
def read_scored_pairs(path: str | os.PathLike = COURSE_DATA_DIR / "sts_sample.tsv") -> ScoredPairs:
    """The course's scored pairs: header ``score<TAB>sentence1<TAB>sentence2``, scores 0-5."""
    path = Path(path)
    lines = read_lines(path)
    if not lines or lines[0].split("\t") != ["score", "sentence1", "sentence2"]:
        raise DataFormatError(f"{path}:1: expected the header score<TAB>sentence1<TAB>sentence2.")
    s1, s2, scores = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataFormatError(f"{path}:{number}: expected 3 tab-separated columns, found {len(fields)}.")
        scores.append(_score(fields[0], path, number))
        s1.append(_normalise(fields[1]))
        s2.append(_normalise(fields[2]))
    return ScoredPairs(s1, s2, np.asarray(scores, dtype=np.float64), path.name)


def read_toy_corpus(path: str | os.PathLike = COURSE_DATA_DIR / "toy_corpus.tsv") -> tuple[list[str], np.ndarray]:
    """The course's toy corpus: (sentences, meaning ids); equal ids are paraphrases."""
    path = Path(path)
    lines = read_lines(path)
    if not lines or lines[0].split("\t") != ["meaning_id", "sentence"]:
        raise DataFormatError(f"{path}:1: expected the header meaning_id<TAB>sentence.")
    sentences, ids = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataFormatError(f"{path}:{number}: expected '<integer id><TAB><sentence>'.")
        ids.append(int(fields[0]))
        sentences.append(fields[1])
    return sentences, np.asarray(ids)


# ------------------------------------------------------------------ downloads
SIMCSE_DATA_URL = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/"
NGCSE_DATA_URL = "https://huggingface.co/datasets/H34lthy/NGCSE_hybrid_dataset/resolve/main/"


@dataclass(frozen=True)
class RemoteDataset:
    """A downloadable data set. ``target`` is relative to the data root."""

    name: str
    url: str
    target: str
    archive: bool
    sha256: str | None
    description: str
    preprocess: str | None = None  # a key of PREPROCESSORS: turns the downloaded file into the target


# The hub serves these through Git LFS and states each file's SHA-256 in its X-Linked-Etag
# header; a download is checked against `sha256` when set, else against that header.
REGISTRY: dict[str, RemoteDataset] = {
    "senteval": RemoteDataset("senteval", SIMCSE_DATA_URL + "senteval.tar", "senteval/downstream", True, None,
                              "SentEval STS12-16, STS-B, SICK and transfer tasks (SimCSE's copy)"),
    "wiki1m": RemoteDataset("wiki1m", SIMCSE_DATA_URL + "wiki1m_for_simcse.txt", "unsup/wiki1m_for_simcse.txt",
                            False, None, "10^6 English Wikipedia sentences (unsupervised SimCSE)"),
    "nli": RemoteDataset("nli", SIMCSE_DATA_URL + "nli_for_simcse.csv", "nli/nli_for_simcse.csv", False, None,
                         "SNLI+MNLI (premise, entailment, contradiction) triplets (supervised SimCSE)"),
    # DeCLUTR trains on OpenWebText (scripts/preprocess_openwebtext.py). The hub copy is split into 21
    # tar files of .xz archives of .txt documents; this entry takes the first (about 1/21 of the corpus,
    # pass url=... for another) and keeps documents of >= 2048 whitespace tokens, lowercased, as DeCLUTR.
    "openwebtext": RemoteDataset("openwebtext",
                                 "https://huggingface.co/datasets/Skylion007/openwebtext/resolve/main/subsets/"
                                 "urlsf_subset00.tar", "docs/openwebtext.jsonl", False, None,
                                 "OpenWebText documents of >= 2048 tokens (DeCLUTR), one subset", "openwebtext"),
    # The 60 articles of WikiText-2's test split (= WikiText-103's), DeCLUTR's demo corpus; the same
    # file as the shared data's docs/wikitext_docs.jsonl (see its README for the processing).
    "wikitext-docs": RemoteDataset("wikitext-docs",
                                   "https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/"
                                   "wikitext-2-raw-v1/test-00000-of-00001.parquet", "docs/wikitext_docs.jsonl",
                                   False, None, "60 WikiText articles as documents (DeCLUTR, laptop profile)",
                                   "wikitext"),
    # NGCSE's hybrid data (data/download_hybrid.sh: a git-lfs clone of this hub data set, reference §8.7): its
    # scripts train on data/wiki_sts.jsonl and data/nli_sts.jsonl, rows read by read_graded_groups.
    # [unverified filename]: the hub listing could not be checked offline; the names are those of the scripts.
    "ngcse-wiki-sts": RemoteDataset("ngcse-wiki-sts", NGCSE_DATA_URL + "wiki_sts.jsonl", "ngcse/wiki_sts.jsonl",
                                    False, None, "NGCSE Wiki.STS_HT training data (hybrid: 'other' sentences + "
                                    "generated 'aigen' groups; contents unverified offline)"),
    "ngcse-nli-sts": RemoteDataset("ngcse-nli-sts", NGCSE_DATA_URL + "nli_sts.jsonl", "ngcse/nli_sts.jsonl",
                                   False, None, "NGCSE NLI.STS_HT training data (hybrid: 'other' sentences + "
                                   "generated 'aigen' groups; contents unverified offline)"),
}


# Real training text when the data root has it (CSELAB_DATA_DIR's samples, then the full registry files),
# else the course's own shipped files: kind -> ((relative path, label) in order of preference, shipped fallback).
TRAINING_TEXT: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, str]]] = {
    "unlabeled": ((("unsup/wiki_sample.txt", "wiki1m sample (SimCSE's Wikipedia sentences)"),
                   ("unsup/wiki1m_for_simcse.txt", "wiki1m (SimCSE's Wikipedia sentences)")),
                  ("toy_corpus.tsv", "the course's toy corpus (shipped)")),
    "nli": ((("nli/snli_devtest_triplets.csv", "SNLI dev/test triplets"),
             ("nli/nli_for_simcse.csv", "SNLI+MNLI triplets (SimCSE)")),
            ("toy_nli.csv", "the course's toy NLI triplets (shipped)")),
    "documents": ((("docs/wikitext_docs.jsonl", "WikiText-2 test articles"),),
                  ("toy_docs.jsonl", "the course's toy stories (shipped)")),
}


def training_text(kind: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(path, label)`` of real training text of ``kind`` (``unlabeled``, ``nli``, ``documents``) in the data root,
    else of the course's shipped stand-in, so a chapter trains on real sentences whenever it can."""
    if kind not in TRAINING_TEXT:
        raise ValueError(f"kind={kind!r}: choose one of {sorted(TRAINING_TEXT)}.")
    found, (shipped, label) = TRAINING_TEXT[kind]
    try:
        root = data_root(data_dir)
    except DataNotFoundError:
        root = None
    for relative, name in found if root is not None else ():
        if (root / relative).is_file():
            return root / relative, name
    return COURSE_DATA_DIR / shipped, label


def _sha256_from_headers(headers) -> str | None:
    for key in ("X-Linked-Etag", "ETag"):
        value = (headers.get(key) or "").strip('W/"')
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
            return value.lower()
    return None


def download(name: str, dest: str | os.PathLike | None = None, *, force: bool = False,
             url: str | None = None, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download a registered data set into a data root and return its path.

    The file is streamed to a temporary name beside the target, its SHA-256 is checked,
    and only then is it renamed into place (archives are unpacked into a temporary
    folder first), so an interrupted or corrupt download never leaves a partial target.

    Args:
        name: a key of :data:`REGISTRY` (``senteval``, ``wiki1m``, ``nli``).
        dest: data root (default: ``data_root(must_exist=False)``).
        force: download again even if the target exists.
        url: override the registry URL (mirrors, tests).
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(REGISTRY)}.")
    entry = REGISTRY[name]
    root = Path(dest).expanduser() if dest is not None else data_root(must_exist=False)
    target = root / entry.target
    if target.exists() and not force:
        return target
    created = [p for p in reversed(target.parents) if not p.exists()]  # removed again if the download fails
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    source = url or entry.url
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as response:
            expected = entry.sha256 or _sha256_from_headers(response.headers)
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {name}", disable=not progress) as bar:
                received = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:  # a connection closed early can look like a clean end
            raise OSError(f"Download of {source} was interrupted: got {received} of {total} bytes. "
                          "Nothing was written; try again.")
        if expected and digest.hexdigest() != expected:
            raise OSError(f"Checksum mismatch for {source}: got sha256 {digest.hexdigest()}, expected {expected}. "
                          "Nothing was written; try again (or check the URL).")
        umask = _umask()
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a shared data root must stay readable
        if entry.archive:
            _unpack_senteval(tmp, target, 0o777 & ~umask)
        elif entry.preprocess:
            PREPROCESSORS[entry.preprocess](tmp, target)  # writes target atomically
        else:
            if target.exists():
                target.unlink()
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in reversed(created):  # deepest first; only folders this call made, and only if empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unpack_senteval(archive: Path, target: Path, mode: int = 0o755) -> None:
    """Unpack SimCSE's senteval.tar (top-level STS/, SICK/, MR/, ...) into ``target``."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack.") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        candidates = [p.parent for p in Path(tmp).rglob("STS") if p.is_dir()]
        if not candidates:
            raise OSError(f"{archive.name}: no STS/ folder inside the archive; is it SentEval's data?")
        found = min(candidates, key=lambda p: len(p.parts))
        os.chmod(found, mode)  # TemporaryDirectory parents are 0700; the moved folder keeps its own mode
        if target.exists():
            shutil.rmtree(target)
        os.replace(found, target)


# ------------------------------------------------------------------ DeCLUTR's documents
def write_documents(documents: Iterable[tuple[str, str]], path: str | os.PathLike, min_length: int = 0,
                    tokenizer=None, lowercase: bool = False) -> dict[str, int]:
    """Write ``(title, text)`` documents as JSON Lines, keeping those of at least ``min_length`` tokens.

    DeCLUTR's preprocessing (``scripts/preprocess_openwebtext.py``, reference §7.4): whitespace
    tokens unless a tokenizer is given (then its subword tokens, as the span sampler counts), an
    optional lowercasing (DeCLUTR's default), and only documents long enough for the sampler
    (``--min-length 2048``; here ``>=``, the sampler's own rule). The file is written to a temporary
    name and renamed, so an interrupted run leaves no partial file. Returns the counts kept/dropped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = dropped = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for title, text in documents:
                text = text.strip()
                if lowercase:
                    text = text.lower()
                length = len(tokenizer.tokenize(text)) if tokenizer is not None else len(text.split())
                if length < min_length or not text:
                    dropped += 1
                    continue
                out.write(json.dumps({"title": title, "text": text}, ensure_ascii=False) + "\n")
                kept += 1
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return {"kept": kept, "dropped": dropped}


def iter_openwebtext(archive: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of every ``.txt`` document in an OpenWebText tar: a tar of ``.xz`` archives
    (the hub's ``urlsf_subsetNN.tar``), a single ``.xz`` tar, or a plain tar of ``.txt`` files."""
    def members(tar: tarfile.TarFile) -> Iterator[tuple[str, str]]:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if member.name.endswith(".xz"):
                with tarfile.open(fileobj=handle, mode="r:xz") as inner:
                    yield from members(inner)
            elif member.name.endswith(".txt"):
                yield Path(member.name).stem, handle.read().decode("utf-8", errors="replace")

    with tarfile.open(archive) as tar:
        yield from members(tar)


def _prepare_openwebtext(download: Path, target: Path) -> None:
    counts = write_documents(iter_openwebtext(download), target, min_length=2048, lowercase=True)
    print(f"OpenWebText: kept {counts['kept']} documents of >= 2048 tokens, dropped {counts['dropped']} shorter ones.")


WIKITEXT_MARKERS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}


def wikitext_articles(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """WikiText raw lines -> ``(title, text)`` articles, as ``docs/wikitext_docs.jsonl`` was made.

    An article starts at a top-level heading `` = Title = `` that stands between blank lines (a
    formula line such as `` = 1 henry and capacitance C = `` inside a paragraph does not);
    section headings `` = = ... = = `` are dropped; paragraphs are stripped and joined with
    newlines; WikiText's `` @-@ ``, `` @,@ ``, `` @.@ `` markers become ``-``, ``,``, ``.``.
    """
    lines = [line.rstrip("\r\n") for line in lines]

    def clean(text: str) -> str:
        for marker, char in WIKITEXT_MARKERS.items():
            text = text.replace(marker, char)
        return text.strip()

    def blank(i: int) -> bool:
        return i < 0 or i >= len(lines) or not lines[i].strip()

    title, paragraphs = None, []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        top = stripped.startswith("= ") and stripped.endswith(" =") and not stripped.startswith("= =")
        if top and blank(i - 1) and blank(i + 1):
            if title is not None and paragraphs:
                yield title, "\n".join(paragraphs)
            title, paragraphs = clean(stripped[2:-2]), []
        elif stripped.startswith("= =") and stripped.endswith("= ="):
            continue  # a section heading
        elif title is not None:
            paragraphs.append(clean(stripped))
    if title is not None and paragraphs:
        yield title, "\n".join(paragraphs)


def _prepare_wikitext(download: Path, target: Path) -> None:
    import pyarrow.parquet as pq

    lines = pq.read_table(download, columns=["text"]).column("text").to_pylist()
    counts = write_documents(wikitext_articles(lines), target)
    print(f"WikiText: wrote {counts['kept']} articles.")


PREPROCESSORS = {"openwebtext": _prepare_openwebtext, "wikitext": _prepare_wikitext}
