"""NGCSE's graded groups: a sentence with up to three sentences of decreasing similarity.

One row per group: ``sent0`` and the levels ``level5`` (most similar), ``level4``, ``level3``, each
a sentence or None, and ``split``: ``aigen`` for a generated group, ``other`` for an unlabeled
sentence (NGCSE's hybrid files mix both). Read from NGCSE's ``.jsonl`` (keys ``sentence``, ``"5"``,
``"4"``, ``"3"``, ``split``) or from a ``.csv``/``.tsv`` table (SimCSE's NLI triplets are groups:
entailment = level 5, contradiction = level 4). Errors name the file and line.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...data.core import DataFormatError, read_lines

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
