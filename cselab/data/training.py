"""Training-file readers (sentences, NLI triplets, documents) and the course's shipped files."""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .core import COURSE_DATA_DIR, DataFormatError, ScoredPairs, _normalise, _score, read_lines


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
        if isinstance(doc, dict) and "text" not in doc and "sentence" in doc:
            raise DataFormatError(f"{path}:{number}: a 'sentence' row, not a document {{'title', 'text'}}: graded "
                                  "groups are read by the method that trains on them (its read_training_file); "
                                  "choose that method, or write the sentences one per line to a .txt file.")
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise DataFormatError(f"{path}:{number}: expected an object with a string field 'text'.")
        docs.append({"title": str(doc.get("title", "")), "text": doc["text"]})
    return docs


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
