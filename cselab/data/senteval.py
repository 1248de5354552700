"""SentEval's STS, SICK-R and MRPC readers (SentEval's own parsing, errors naming file:line)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .core import (SPLIT_FILES, STS_SUBSETS, STS_TASKS, DataFormatError, LabeledPairs, ScoredPairs, _normalise, _score,
                   read_lines, senteval_path)


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


def _scored_table(path: Path, first: int, columns: tuple[int, int, int], expected: str,
                  source: str) -> ScoredPairs:
    """Tab-separated lines from line ``first`` on; ``columns`` = (score, sentence 1, sentence 2) indices.
    A short line raises naming ``file:line`` and ``expected`` (the columns a reader should find)."""
    s1, s2, scores = [], [], []
    score_at, first_at, second_at = columns
    for number, line in enumerate(read_lines(path)[first - 1:], start=first):
        fields = line.strip().split("\t")
        if len(fields) <= max(columns):
            raise DataFormatError(f"{path}:{number}: expected {expected}, found {len(fields)} column(s).")
        scores.append(_score(fields[score_at], path, number))
        s1.append(_normalise(fields[first_at]))
        s2.append(_normalise(fields[second_at]))
    return ScoredPairs(s1, s2, np.asarray(scores, dtype=np.float64), source)


def read_stsb(split: str = "test", data_dir: str | os.PathLike | None = None) -> ScoredPairs:
    """STS Benchmark ``sts-<split>.csv``: tab-separated genre, file, year, id, score, s1, s2."""
    path = senteval_path(data_dir, "STS", "STSBenchmark", _split_file("STSBenchmark", split))
    return _scored_table(path, 1, (4, 5, 6), "7 tab-separated columns (genre, file, year, id, score, sentence1, "
                         "sentence2)", f"STSBenchmark/{split}")


def read_sick(split: str = "test", data_dir: str | os.PathLike | None = None) -> ScoredPairs:
    """SICK relatedness: header line skipped; columns pair_ID, sentence_A, sentence_B, score, label."""
    path = senteval_path(data_dir, "SICK", _split_file("SICKRelatedness", split))
    return _scored_table(path, 2, (3, 1, 2), "tab-separated pair_ID, sentence_A, sentence_B, "
                         "relatedness_score(, entailment_judgment)", f"SICK/{split}")


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
