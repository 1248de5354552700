"""Training data written by an LLM, as in NGCSE (Li et al., AAAI-24, §3 "Data Generation").

NGCSE prompts an LLM with a few fixed in-context examples to write, for every source sentence,
new sentences at known similarity levels, then trains on them with InfoNCE plus a hierarchical
triplet loss. Two prompt patterns:

* ``nli``: a sentence -> an entailed sentence and a contradicting one (SNLI-style pairs);
* ``sts``: a sentence -> a paraphrase (same information), an intermediate sentence (some
  details omitted) and a dissimilar sentence (distinct or contradictory meaning).

Records follow NGCSE's JSON-lines layout (``ngcse/utils.py:PrepareFeatures``): ``split:
"aigen"``, ``sentence`` and the level keys ``"5"``/``"4"``/``"3"`` (nli: ``"5"`` = entailment,
``"4"`` = contradiction; sts: ``"5"`` = paraphrase, ``"4"`` = intermediate, ``"3"`` =
dissimilar), plus ``id``, ``source_id``, ``pattern`` and ``provenance``, which NGCSE ignores.

:func:`generate` is resumable and append-only. Accepted records go to ``OUT.jsonl`` (ready for
training); rejected answers go to the sidecar ``OUT.rejected.jsonl`` (``status: "rejected"``,
``reason``, the raw ``answer``), so a re-run asks neither again. A re-run reads both files, cuts
a torn last line left by a crash, and only asks for sources that are in neither.
"""
from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from .data import COURSE_DATA_DIR, DataFormatError, read_lines
from .llm_backends import ChatBackend

log = logging.getLogger(__name__)

# The course's shipped set (data/llm_generated/, see data/README.md): sources, recorded answers, records.
GENERATED_DIR = COURSE_DATA_DIR / "llm_generated"


def shipped_file(name: str) -> Path:
    """A file of the shipped set: ``sources.txt``, ``responses.jsonl``, ``sts.jsonl``, ``nli.rejected.jsonl``,
    ``smollm2/sts.jsonl``, ... Raises FileNotFoundError naming the folder when it is not there."""
    path = GENERATED_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the course data. Files: "
                                f"{sorted(str(p.relative_to(GENERATED_DIR)) for p in GENERATED_DIR.rglob('*.*'))}")
    return path


# Why an answer was rejected, in the order they are checked (the first failing check wins).
REASONS = ("malformed", "empty", "copied", "duplicate", "overlong")
DUPLICATE_SOURCE = "duplicate_source"  # a source whose normalised text came earlier: never asked


# ------------------------------------------------------------------ prompt templates
@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt: system text, task text, answer keys and 3 fixed in-context examples.

    ``fields`` maps each JSON answer key to its NGCSE level key, in order of decreasing similarity.
    Change the wording -> bump ``version``: provenance records which prompt wrote each record.
    """

    pattern: str
    version: str
    fields: tuple[tuple[str, str], ...]
    system: str
    task: str
    examples: tuple[tuple[str, dict[str, str]], ...]

    @property
    def id(self) -> str:
        return f"{self.pattern}-{self.version}"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.fields)

    def format_answer(self, answer: dict[str, str]) -> str:
        return json.dumps({key: answer[key] for key in self.keys}, ensure_ascii=False)

    def messages(self, sentence: str) -> list[dict[str, str]]:
        """System + user chat messages; the user message ends with the sentence and ``Answer:``."""
        key_list = ", ".join(f'"{key}"' for key in self.keys)
        shots = "\n\n".join(f"Sentence: {s}\nAnswer: {self.format_answer(a)}" for s, a in self.examples)
        user = (f"{self.task}\n\nReply with one JSON object and nothing else, with exactly the keys {key_list}; "
                f"each value is one English sentence.\n\n{shots}\n\nSentence: {sentence}\nAnswer:")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


_SYSTEM = "You write sentences for training sentence-embedding models. You follow the output format exactly."

NLI_V1 = PromptTemplate(
    pattern="nli", version="v1", fields=(("entailment", "5"), ("contradiction", "4")), system=_SYSTEM,
    task=("Given a sentence, write two new sentences. \"entailment\": a sentence that must be true if the given "
          "sentence is true. \"contradiction\": a sentence that cannot be true if the given sentence is true. "
          "Do not copy the given sentence."),
    examples=(
        ("A man is playing a guitar on a crowded street.",
         {"entailment": "A man is making music outdoors.",
          "contradiction": "A man is sleeping alone in his bedroom."}),
        ("The museum opened a new exhibition about ancient Egypt last week.",
         {"entailment": "The museum has an exhibition about Egypt.",
          "contradiction": "The museum has not opened any exhibition this year."}),
        ("Two children are building a sandcastle on the beach.",
         {"entailment": "Some kids are playing in the sand.",
          "contradiction": "The children are sitting in a classroom."}),
    ),
)

STS_V1 = PromptTemplate(
    pattern="sts", version="v1", fields=(("paraphrase", "5"), ("intermediate", "4"), ("dissimilar", "3")),
    system=_SYSTEM,
    task=("Given a sentence, write three new sentences. \"paraphrase\": the same information in different words. "
          "\"intermediate\": a sentence that keeps the main point but omits certain details. \"dissimilar\": a "
          "sentence on a similar topic with a distinct or even contradictory meaning. Do not copy the given "
          "sentence."),
    examples=(
        ("The city council approved a plan to build three new parks by 2026.",
         {"paraphrase": "A plan for three new parks to be built by 2026 was approved by the city council.",
          "intermediate": "The city council approved a plan for new parks.",
          "dissimilar": "The city council rejected every proposal for new parks."}),
        ("A woman in a red coat is walking her dog through the snow.",
         {"paraphrase": "A woman wearing a red coat walks her dog in the snow.",
          "intermediate": "A woman is walking her dog.",
          "dissimilar": "A man is swimming in a warm lake."}),
        ("The company reported higher profits after cutting its prices in March.",
         {"paraphrase": "After lowering its prices in March, the company saw its profits go up.",
          "intermediate": "The company reported higher profits.",
          "dissimilar": "The company lost money after raising its prices."}),
    ),
)

PATTERNS: dict[str, PromptTemplate] = {"nli": NLI_V1, "sts": STS_V1}


# ------------------------------------------------------------------ parsing and filtering
def normalize(text: str) -> str:
    """Case-, punctuation- and spacing-insensitive form, for "is it a copy / a duplicate" checks."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


class Parsed(NamedTuple):
    """``fields`` (answer key -> sentence) when accepted, else ``None`` and a ``reason`` from REASONS."""

    fields: dict[str, str] | None
    reason: str | None


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_answer(answer: str, source: str, template: PromptTemplate, *,
                 max_ratio: float = 3.0, max_words: int = 64) -> Parsed:
    """Strictly parse and check one LLM answer.

    Accepted: the whole answer is one JSON object (a single Markdown code fence around it is
    tolerated, since chat models add one often) with exactly the template's keys and string values.
    Rejected, first failing check wins: ``malformed``; ``empty`` (a blank value); ``copied`` (a
    value equal to the source after :func:`normalize`); ``duplicate`` (two values equal after
    normalising); ``overlong`` (a value with more than ``max_words`` words or more than
    ``max_ratio`` times the source's words: LLMs pad, and NGCSE truncates to 32 tokens anyway).
    """
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        obj = json.loads(text)
    except ValueError:
        return Parsed(None, "malformed")
    if not isinstance(obj, dict) or set(obj) != set(template.keys) or \
            not all(isinstance(value, str) for value in obj.values()):
        return Parsed(None, "malformed")
    fields = {key: " ".join(obj[key].split()) for key in template.keys}
    norms = [normalize(value) for value in fields.values()]
    if not all(norms):
        return Parsed(None, "empty")
    if normalize(source) in norms:
        return Parsed(None, "copied")
    if len(set(norms)) < len(norms):
        return Parsed(None, "duplicate")
    limit = min(max_words, max_ratio * max(1, len(source.split())))
    if any(len(value.split()) > limit for value in fields.values()):
        return Parsed(None, "overlong")
    return Parsed(fields, None)


@dataclass
class FilterStats:
    """How many answers were accepted and how many were rejected, per reason."""

    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)

    def add(self, reason: str | None) -> None:
        if reason is None:
            self.accepted += 1
        else:
            self.rejected[reason] += 1

    @property
    def total(self) -> int:
        return self.accepted + sum(self.rejected.values())

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected.items()))
        return f"{self.accepted} accepted, {sum(self.rejected.values())} rejected" + (f" ({reasons})" if reasons else "")


# ------------------------------------------------------------------ records
def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_provenance(template: PromptTemplate, backend: ChatBackend, sampling: dict[str, Any],
                    source_id: str) -> dict[str, Any]:
    """Where a record came from. Holds no endpoint URL or key: records are meant to be shared.

    A backend that did not sample (replay) states its own ``provenance_sampling`` and ``created``
    (read from its responses file), so the record never claims settings that were not used.
    """
    recorded = getattr(backend, "provenance_sampling", None)
    return {"prompt_id": template.id, "prompt_version": template.version, "backend": backend.name,
            "model": backend.model, "sampling": dict(sampling) if recorded is None else recorded,
            "source_id": source_id, "created": getattr(backend, "created", None) or utc_now()}


def make_record(template: PromptTemplate, source_id: str, sentence: str, fields: dict[str, str],
                provenance: dict[str, Any]) -> dict[str, Any]:
    """An accepted record in NGCSE's layout (``sentence`` + level keys, ``split: "aigen"``)."""
    record: dict[str, Any] = {"id": f"{template.id}/{source_id}", "source_id": source_id,
                              "pattern": template.pattern, "split": "aigen", "sentence": sentence}
    record.update({level: fields[key] for key, level in template.fields})
    record["provenance"] = provenance
    return record


def make_rejection(template: PromptTemplate, source_id: str, sentence: str, reason: str, answer: str,
                   provenance: dict[str, Any]) -> dict[str, Any]:
    """A rejected outcome for the sidecar file: the reason and (the start of) the raw answer."""
    return {"id": f"{template.id}/{source_id}", "source_id": source_id, "pattern": template.pattern,
            "sentence": sentence, "status": "rejected", "reason": reason, "answer": answer[:2000],
            "provenance": provenance}


def rejected_path(out_path: str | os.PathLike) -> Path:
    """``data/x.jsonl`` -> ``data/x.rejected.jsonl``: where :func:`generate` keeps rejected outcomes."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.rejected{out.suffix}")


def dedup_records(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Keep the first record per normalised ``sentence`` (e.g. after merging runs); returns (kept, dropped)."""
    seen: set[str] = set()
    kept, dropped = [], 0
    for record in records:
        key = normalize(record["sentence"])
        if key in seen:
            dropped += 1
        else:
            seen.add(key)
            kept.append(record)
    return kept, dropped


def write_training_file(groups: Iterable[dict[str, Any]], sentences: Iterable[str], path: str | os.PathLike) -> Path:
    """An NGCSE training file (§8.1): generated ``groups`` as *aigen* rows, ``sentences`` as *other* rows.

    NGCSE's Wiki.STS_HT data is of this kind: many unlabeled sentences (trained as dropout pairs)
    plus fewer generated groups, which the official collator holds back until 48 can go in one
    step (:meth:`cselab.methods.NGCSE.compose_batches`). Group rows keep only ``sentence`` and the
    level keys of their pattern. Written atomically; returns the path.
    """
    path = Path(path)
    lines, patterns = [], set()
    for group in groups:
        patterns.add(group["pattern"])
        if len(patterns) > 1:
            raise ValueError(f"groups of patterns {sorted(patterns)}: one training file holds one pattern "
                             f"(NGCSE takes every group's levels from the first one).")
        template = PATTERNS[group["pattern"]]
        lines.append({"split": "aigen", "sentence": group["sentence"],
                      **{level: group[level] for _, level in template.fields}})
    levels = sorted({key for row in lines for key in row} - {"split", "sentence"}, reverse=True)
    for sentence in sentences:
        if sentence.strip():
            lines.append({"split": "other", "sentence": " ".join(sentence.split()), **dict.fromkeys(levels, "")})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _word_set(text: str) -> set[str]:
    return set(normalize(text).split())


def level_statistics(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """How each level of generated groups relates to its source, averaged over ``records`` (one pattern).

    Per level key (``"5"``, ``"4"``, ...): ``words`` (mean length), ``jaccard`` (mean Jaccard index of the
    normalised word sets of level and source) and ``inside`` (mean share of the level's words that occur in
    the source). A level that only drops details is short with a high ``inside``; a paraphrase rewords.
    """
    records = list(records)
    if not records or len({r["pattern"] for r in records}) != 1:
        raise ValueError("level_statistics needs records of exactly one pattern.")
    out = {}
    for _, level in PATTERNS[records[0]["pattern"]].fields:
        pairs = [(_word_set(r[level]), _word_set(r["sentence"])) for r in records]
        out[level] = {"words": sum(len(r[level].split()) for r in records) / len(records),
                      "jaccard": sum(len(a & b) / len(a | b) for a, b in pairs) / len(pairs),
                      "inside": sum(len(a & b) / len(a) for a, b in pairs) / len(pairs)}
    return out


PROVENANCE_KEYS = ("prompt_id", "prompt_version", "backend", "model", "sampling", "source_id", "created")


def read_generated(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate an accepted-records file written by :func:`generate`; errors name file:line."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_lines(path), start=1):
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataFormatError(f"{where}: not valid JSON ({exc}). If the last line was cut by a crash, "
                                  f"re-run `cselab generate` with the same --out to repair it.") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{where}: expected a JSON object.")
        template = PATTERNS.get(record.get("pattern"))
        if template is None:
            raise DataFormatError(f"{where}: 'pattern' must be one of {sorted(PATTERNS)}, got {record.get('pattern')!r}.")
        if record.get("status") == "rejected":
            raise DataFormatError(f"{where}: a rejected outcome (status 'rejected'); read_generated reads the "
                                  f"accepted-records file, not the *.rejected.jsonl sidecar.")
        if record.get("split") != "aigen":
            raise DataFormatError(f"{where}: 'split' must be \"aigen\", got {record.get('split')!r}.")
        for key in ("id", "source_id", "sentence", *(level for _, level in template.fields)):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise DataFormatError(f"{where}: field {key!r} must be a non-empty string.")
        provenance = record.get("provenance")
        missing = [k for k in PROVENANCE_KEYS if k not in provenance] if isinstance(provenance, dict) else ["all"]
        if missing:
            raise DataFormatError(f"{where}: 'provenance' lacks {', '.join(missing)}.")
        if record["id"] in first_line:
            raise DataFormatError(f"{where}: id {record['id']!r} already on line {first_line[record['id']]}.")
        first_line[record["id"]] = number
        records.append(record)
    return records


def read_sources(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(source_id, sentence)`` from a text file with one sentence per line; id = 1-based line number.

    Line numbers (not positions among non-empty lines) keep ids stable when blank lines are
    edited, and point straight at the line. Blank lines are skipped.
    """
    sources = [(str(n), " ".join(line.split())) for n, line in enumerate(read_lines(path), start=1) if line.strip()]
    if not sources:
        raise DataFormatError(f"{path}: no sentences (the file is empty).")
    return sources


# ------------------------------------------------------------------ resumable generation
def _repair_and_scan(path: Path, template: PromptTemplate) -> tuple[set[str], int]:
    """Source ids already in ``path``, after cutting a torn last line; returns (ids, bytes cut).

    A crash can only damage the last line (every line is written with one write + fsync):
    it lacks its newline, or (on some file systems after power loss) is not valid JSON.
    That line is cut; any other bad line is an error, because cutting it would lose data.
    """
    if not path.exists():
        return set(), 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    cut = len(lines.pop())  # the bytes after the last newline: b"" for an intact file
    if lines and not _is_json_object(lines[-1]):
        cut += len(lines.pop()) + 1
    if cut:
        with open(path, "r+b") as fh:
            fh.truncate(len(raw) - cut)
            os.fsync(fh.fileno())
        log.warning("%s: cut a torn last line (%d bytes) left by an interrupted run; resuming.", path, cut)
    done: set[str] = set()
    for number, line in enumerate(lines, start=1):
        record = json.loads(line) if _is_json_object(line) else None
        if record is None or not isinstance(record.get("source_id"), str):
            raise DataFormatError(f"{path}:{number}: not a record written by `cselab generate`. "
                                  f"Fix or remove the line, or write to another --out.")
        prompt_id = (record.get("provenance") or {}).get("prompt_id")
        if prompt_id != template.id:
            raise DataFormatError(f"{path}:{number}: written with prompt {prompt_id!r}, this run uses "
                                  f"{template.id!r}. One file holds one prompt: choose another --out.")
        done.add(record["source_id"])
    return done, cut


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _append(fh, record: dict[str, Any]) -> None:
    # One write per line, then fsync: a kill or crash loses at most the line being written.
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


@dataclass
class GenerationResult:
    """What one :func:`generate` call did."""

    stats: FilterStats
    requests: int       # answers asked for in this call
    skipped: int        # sources already in the output files
    repaired_bytes: int  # bytes of torn last lines cut before appending
    out_path: Path
    rejected_path: Path


def generate(backend: ChatBackend, sources: str | os.PathLike | Iterable[tuple[str, str]],
             out_path: str | os.PathLike, *, pattern: str = "sts", concurrency: int = 1, limit: int | None = None,
             temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 256, seed: int | None = None,
             max_ratio: float = 3.0, max_words: int = 64) -> GenerationResult:
    """Ask ``backend`` for every source not yet done and append one line per outcome (NGCSE §3).

    ``sources``: a text file (see :func:`read_sources`) or ``(source_id, sentence)`` pairs;
    ``limit`` keeps the first N. Sources whose normalised text appeared earlier are never asked
    (counted as ``duplicate_source``). Up to ``concurrency`` requests run at once; lines are
    written by this thread only, in completion order. Accepted records go to ``out_path``,
    rejected outcomes to :func:`rejected_path`; re-running with the same arguments resumes, and
    asks nothing once every source is done. A backend error stops new requests, keeps the
    answers already received, and is raised.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r}: choose one of {sorted(PATTERNS)}.")
    if concurrency < 1 or (limit is not None and limit < 0):
        raise ValueError(f"concurrency must be >= 1 and limit >= 0 (got {concurrency}, {limit}).")
    template = PATTERNS[pattern]
    items = read_sources(sources) if isinstance(sources, (str, os.PathLike)) else list(sources)
    items = items[:limit] if limit is not None else items
    out, side = Path(out_path), rejected_path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done_ok, cut_ok = _repair_and_scan(out, template)
    done_bad, cut_bad = _repair_and_scan(side, template)
    done = done_ok | done_bad
    stats, seen, todo = FilterStats(), set(), []
    for source_id, sentence in items:
        key = normalize(sentence)
        if key in seen:
            stats.add(DUPLICATE_SOURCE)
        elif source_id not in done:
            todo.append((source_id, sentence))
        seen.add(key)
    sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
    result = GenerationResult(stats, 0, len(items) - len(todo) - stats.rejected[DUPLICATE_SOURCE],
                              cut_ok + cut_bad, out, side)
    if not todo:
        return result

    def ask(item: tuple[str, str]) -> str:
        return backend.complete(template.messages(item[1]), **sampling)

    error: BaseException | None = None
    pending = iter(todo)
    in_flight: dict[Future, tuple[str, str]] = {}
    with open(out, "a", encoding="utf-8", newline="\n") as fh_ok, \
            open(side, "a", encoding="utf-8", newline="\n") as fh_bad, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        def submit_next() -> None:
            item = next(pending, None)
            if item is not None and error is None:
                in_flight[pool.submit(ask, item)] = item
                result.requests += 1

        for _ in range(concurrency):  # a window, not the whole list: a million futures is a waste
            submit_next()
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                source_id, sentence = in_flight.pop(future)
                try:
                    answer = future.result()
                except Exception as exc:  # stop asking; drain what is in flight, then raise
                    error = error or exc
                    continue
                parsed = parse_answer(answer, sentence, template, max_ratio=max_ratio, max_words=max_words)
                provenance = make_provenance(template, backend, sampling, source_id)
                if parsed.fields is not None:
                    _append(fh_ok, make_record(template, source_id, sentence, parsed.fields, provenance))
                else:
                    _append(fh_bad, make_rejection(template, source_id, sentence, parsed.reason, answer, provenance))
                stats.add(parsed.reason)
                submit_next()
    if error is not None:
        raise error
    return result
