"""cselab.llm_data: NGCSE prompts, strict answer filtering, records, and resumable append-only generation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cselab import cli
from cselab.data import DataFormatError
from cselab.llm_data import (NLI_V1, PATTERNS, STS_V1, FilterStats, Parsed, dedup_records, generate, normalize,
                             parse_answer, read_generated, read_sources, rejected_path)
from llm_fake_server import FakeLLMServer

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-SENTINEL"


class ScriptedBackend:
    """An in-process ChatBackend: answers from a dict keyed by the prompt's sentence, counts calls."""

    name, model = "scripted", "scripted-1"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.calls = answers, []
        self._lock = threading.Lock()

    def complete(self, messages, **sampling) -> str:
        sentence = messages[-1]["content"].rsplit("Sentence: ", 1)[1].removesuffix("\nAnswer:")
        with self._lock:
            self.calls.append((sentence, sampling))
        return self.answers[sentence]


# ------------------------------------------------------------------ prompts
def test_templates_have_ids_versions_and_ngcse_levels():
    assert sorted(PATTERNS) == ["nli", "sts"]
    assert (NLI_V1.id, NLI_V1.version, STS_V1.id) == ("nli-v1", "v1", "sts-v1")
    assert NLI_V1.fields == (("entailment", "5"), ("contradiction", "4"))
    assert STS_V1.fields == (("paraphrase", "5"), ("intermediate", "4"), ("dissimilar", "3"))
    assert len(NLI_V1.examples) == 3 and len(STS_V1.examples) == 3


def test_messages_are_system_plus_user_ending_with_the_sentence():
    messages = STS_V1.messages("A dog runs in the park.")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.endswith("\n\nSentence: A dog runs in the park.\nAnswer:")
    assert user.count("Sentence: ") == 4  # three in-context examples + the query
    assert 'exactly the keys "paraphrase", "intermediate", "dissimilar"' in user
    assert ('Sentence: A woman in a red coat is walking her dog through the snow.\nAnswer: {"paraphrase": '
            '"A woman wearing a red coat walks her dog in the snow.", "intermediate": "A woman is walking her dog.", '
            '"dissimilar": "A man is swimming in a warm lake."}') in user


@pytest.mark.parametrize("template", [NLI_V1, STS_V1], ids=["nli", "sts"])
def test_in_context_examples_pass_the_filter(template):
    # The examples show the model what we accept; each must pass our own checks.
    for sentence, answer in template.examples:
        assert parse_answer(template.format_answer(answer), sentence, template) == Parsed(answer, None)


# ------------------------------------------------------------------ parsing and filtering
SOURCE = "A man is playing a guitar."  # 6 words: overlong means more than 18 words


def test_parse_good_answers():
    plain = '{"entailment": "A man makes music.", "contradiction": "Nobody is playing anything."}'
    fenced = '```json\n{"contradiction": "The man is  asleep.", "entailment": "Someone plays an instrument."}\n```'
    assert parse_answer(plain, SOURCE, NLI_V1) == Parsed(
        {"entailment": "A man makes music.", "contradiction": "Nobody is playing anything."}, None)
    assert parse_answer(fenced, SOURCE, NLI_V1) == Parsed(
        {"entailment": "Someone plays an instrument.", "contradiction": "The man is asleep."}, None)


REJECTIONS = [
    ("Sure! Here it is.", "malformed"),
    ('Here you go: {"entailment": "A man makes music.", "contradiction": "He is asleep."}', "malformed"),
    ('{"entailment": "A man makes music."}', "malformed"),
    ('{"entailment": "A b.", "contradiction": "C d.", "neutral": "E f."}', "malformed"),
    ('["A man makes music.", "He is asleep."]', "malformed"),
    ('{"entailment": 3, "contradiction": "He is asleep."}', "malformed"),
    ('{"entailment": "   ", "contradiction": "He is asleep."}', "empty"),
    ('{"entailment": "a man is playing a guitar", "contradiction": "He is asleep."}', "copied"),
    ('{"entailment": "A man makes music.", "contradiction": "A MAN -- is playing a guitar!"}', "copied"),
    ('{"entailment": "He plays music.", "contradiction": "he plays, music"}', "duplicate"),
    ('{"entailment": "A man who is standing on the corner of a very busy street is playing a guitar for the '
     'people.", "contradiction": "He is asleep."}', "overlong"),
]


def test_each_rejection_reason_and_the_counts():
    stats = FilterStats()
    for answer, expected in REJECTIONS:
        parsed = parse_answer(answer, SOURCE, NLI_V1)
        assert parsed == Parsed(None, expected), answer
        stats.add(parsed.reason)
    stats.add(parse_answer('{"entailment": "Music is played.", "contradiction": "It is silent."}', SOURCE, NLI_V1).reason)
    assert stats.accepted == 1 and stats.total == 12
    assert stats.rejected == Counter({"malformed": 6, "empty": 1, "copied": 2, "duplicate": 1, "overlong": 1})
    assert str(stats) == "1 accepted, 11 rejected (copied: 2, duplicate: 1, empty: 1, malformed: 6, overlong: 1)"


def test_overlong_limits_are_configurable():
    answer = '{"entailment": "One two three four five six seven.", "contradiction": "He is asleep."}'  # 7 words
    assert parse_answer(answer, SOURCE, NLI_V1).reason is None
    assert parse_answer(answer, SOURCE, NLI_V1, max_words=6).reason == "overlong"
    assert parse_answer(answer, SOURCE, NLI_V1, max_ratio=1.0).reason == "overlong"  # 7 > 1.0 * 6
    assert parse_answer(answer, "Hi there.", NLI_V1).reason == "overlong"  # 7 > 3 * 2


def test_normalize_and_dedup_records():
    assert normalize("  The CAT, sat -- on the “mat”!  ") == "the cat sat on the mat"
    records = [{"id": "a", "sentence": "The cat sat."}, {"id": "b", "sentence": "A dog."},
               {"id": "c", "sentence": "the  cat sat"}, {"id": "d", "sentence": "A DOG!"}]
    kept, dropped = dedup_records(records)
    assert [r["id"] for r in kept] == ["a", "b"] and dropped == 2


# ------------------------------------------------------------------ generation and records
STS_GOOD = '{"paraphrase": "A puppy is running around.", "intermediate": "A dog runs.", "dissimilar": "A cat sleeps."}'


def test_generate_writes_ngcse_records_rejections_and_provenance(tmp_path):
    sources = tmp_path / "src.txt"
    sources.write_text("A dog runs in the park.\n\nTwo men cook dinner.\na dog RUNS in the park\nIt rains.\n")
    backend = ScriptedBackend({"A dog runs in the park.": STS_GOOD, "Two men cook dinner.": "no idea",
                               "It rains.": '{"paraphrase": "Rain falls.", "intermediate": "It is wet.", '
                                            '"dissimilar": "It is sunny."}'})
    out = tmp_path / "gen" / "sts.jsonl"
    before = datetime.now().astimezone()
    result = generate(backend, sources, out, pattern="sts", temperature=0.7, top_p=0.95, max_tokens=64, seed=5)
    # Line 4 repeats line 1 after normalising: never asked.
    assert sorted(s for s, _ in backend.calls) == ["A dog runs in the park.", "It rains.", "Two men cook dinner."]
    assert result.requests == 3 and result.skipped == 0 and result.repaired_bytes == 0
    assert result.stats.accepted == 2 and result.stats.rejected == Counter({"malformed": 1, "duplicate_source": 1})

    records = read_generated(out)
    by_source = {r["source_id"]: r for r in records}
    assert sorted(by_source) == ["1", "5"]  # source ids are line numbers
    first = by_source["1"]
    assert {k: v for k, v in first.items() if k != "provenance"} == {
        "id": "sts-v1/1", "source_id": "1", "pattern": "sts", "split": "aigen", "sentence": "A dog runs in the park.",
        "5": "A puppy is running around.", "4": "A dog runs.", "3": "A cat sleeps."}
    prov = first["provenance"]
    assert {k: v for k, v in prov.items() if k != "created"} == {
        "prompt_id": "sts-v1", "prompt_version": "v1", "backend": "scripted", "model": "scripted-1",
        "sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 5}, "source_id": "1"}
    created = datetime.fromisoformat(prov["created"])
    assert created.utcoffset() == timedelta(0) and before - timedelta(seconds=2) <= created <= datetime.now().astimezone()

    bad, = [json.loads(line) for line in rejected_path(out).read_text().splitlines()]
    assert rejected_path(out) == tmp_path / "gen" / "sts.rejected.jsonl"
    assert (bad["source_id"], bad["status"], bad["reason"], bad["answer"]) == ("3", "rejected", "malformed", "no idea")
    assert bad["provenance"]["prompt_id"] == "sts-v1"

    # Completed: a re-run asks nothing and writes nothing.
    sizes = (out.stat().st_size, rejected_path(out).stat().st_size)
    again = generate(backend, sources, out, pattern="sts")
    assert len(backend.calls) == 3 and again.requests == 0 and again.skipped == 3
    assert (out.stat().st_size, rejected_path(out).stat().st_size) == sizes


def test_limit_and_resume_ask_only_what_is_missing(tmp_path):
    sources = [(str(i), f"Sentence number {i} is here.") for i in range(1, 7)]
    backend = ScriptedBackend({s: '{"entailment": "A claim exists.", "contradiction": "Nothing exists."}'
                               for _, s in sources})
    out = tmp_path / "nli.jsonl"
    assert generate(backend, sources, out, pattern="nli", limit=2).requests == 2
    result = generate(backend, sources, out, pattern="nli", limit=4, concurrency=3)
    assert (result.requests, result.skipped) == (2, 2)
    assert sorted(s for s, _ in backend.calls) == [f"Sentence number {i} is here." for i in (1, 2, 3, 4)]
    assert sorted(r["source_id"] for r in read_generated(out)) == ["1", "2", "3", "4"]


def test_resume_cuts_a_torn_last_line(tmp_path, caplog):
    sources = [(str(i), f"Sentence number {i} is here.") for i in range(1, 5)]
    backend = ScriptedBackend({s: '{"entailment": "A claim exists.", "contradiction": "Nothing exists."}'
                               for _, s in sources})
    out = tmp_path / "nli.jsonl"
    generate(backend, sources[:2], out, pattern="nli")
    intact = out.read_bytes()
    with open(out, "ab") as fh:
        fh.write(b'{"id": "nli-v1/3", "source_id": "3", "pattern": "n')  # a kill mid-write
    result = generate(backend, sources, out, pattern="nli")
    assert result.repaired_bytes == 50 and result.requests == 2
    assert out.read_bytes().startswith(intact)
    assert "cut a torn last line (50 bytes)" in caplog.text
    assert sorted(r["source_id"] for r in read_generated(out)) == ["1", "2", "3", "4"]
    # A last line that ends but is not JSON (zero-filled after a power loss) is cut too.
    complete = out.read_bytes()
    with open(out, "ab") as fh:
        fh.write(b"\0\0\0\0\n")
    result = generate(backend, sources, out, pattern="nli")
    assert (result.repaired_bytes, result.requests) == (5, 0) and out.read_bytes() == complete


def test_resume_refuses_a_file_of_another_prompt_or_a_bad_middle_line(tmp_path):
    out = tmp_path / "x.jsonl"
    backend = ScriptedBackend({"A dog runs in the park.": STS_GOOD})
    generate(backend, [("1", "A dog runs in the park.")], out, pattern="sts")
    with pytest.raises(DataFormatError, match=r"x.jsonl:1: written with prompt 'sts-v1', this run uses 'nli-v1'"):
        generate(backend, [("1", "A dog runs in the park.")], out, pattern="nli")
    out.write_text("garbage\n" + out.read_text())
    with pytest.raises(DataFormatError, match=r"x.jsonl:1: not a record written by `cselab generate`"):
        generate(backend, [("1", "A dog runs in the park.")], out, pattern="sts")


def test_backend_error_keeps_finished_answers_and_is_raised(tmp_path):
    class Flaky(ScriptedBackend):
        def complete(self, messages, **sampling):
            if "broken" in messages[-1]["content"].rsplit("Sentence: ", 1)[1]:
                raise RuntimeError("server down")
            return super().complete(messages, **sampling)

    sources = [("1", "A fine sentence."), ("2", "A broken sentence."), ("3", "Another fine one.")]
    backend = Flaky({"A fine sentence.": '{"entailment": "It is fine.", "contradiction": "It is awful."}',
                     "Another fine one.": '{"entailment": "It is good.", "contradiction": "It is bad."}'})
    out = tmp_path / "nli.jsonl"
    with pytest.raises(RuntimeError, match="server down"):
        generate(backend, sources, out, pattern="nli", concurrency=1)
    assert [r["source_id"] for r in read_generated(out)] == ["1"]  # 3 was never asked
    assert not rejected_path(out).read_text()


def test_read_generated_names_file_and_line(tmp_path):
    good = {"id": "nli-v1/1", "source_id": "1", "pattern": "nli", "split": "aigen", "sentence": "A b.", "5": "C d.",
            "4": "E f.", "provenance": {k: "x" for k in ("prompt_id", "prompt_version", "backend", "model",
                                                         "sampling", "source_id", "created")}}
    path = tmp_path / "g.jsonl"
    cases = [("{not json", r"g.jsonl:2: not valid JSON"),
             (json.dumps({**good, "id": "nli-v1/2", "4": ""}), r"g.jsonl:2: field '4' must be a non-empty string"),
             (json.dumps({**good, "id": "nli-v1/2", "split": "other"}), r"g.jsonl:2: 'split' must be \"aigen\""),
             (json.dumps({**good, "provenance": {}}), r"g.jsonl:2: 'provenance' lacks prompt_id, prompt_version"),
             (json.dumps(good), r"g.jsonl:2: id 'nli-v1/1' already on line 1"),
             (json.dumps({**good, "status": "rejected"}), r"g.jsonl:2: a rejected outcome")]
    for line, match in cases:
        path.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(DataFormatError, match=match):
            read_generated(path)


def test_read_sources_ids_are_line_numbers(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("First  one.\n\n  Third\tline. \n")
    assert read_sources(path) == [("1", "First one."), ("3", "Third line.")]
    path.write_text("\n \n")
    with pytest.raises(DataFormatError, match="s.txt: no sentences"):
        read_sources(path)


def test_http_concurrency_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("CSELAB_LLM_API_KEY", KEY)
    from cselab.llm_backends import OpenAIChatBackend

    sources = [(str(i), f"Sentence number {i} is here.") for i in range(1, 8)]
    with FakeLLMServer(delay=0.5) as server:
        result = generate(OpenAIChatBackend("m", server.base_url), sources, tmp_path / "o.jsonl", pattern="nli",
                          concurrency=3)
    assert result.requests == 7 and result.stats.accepted == 7
    assert server.max_active == 3


# ------------------------------------------------------------------ the command line, killed and resumed
def _cli(args: list[str], **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CSELAB_LLM_API_KEY": KEY}
    return subprocess.Popen([sys.executable, "-m", "cselab.cli", "generate", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow  # kept out of `make test-fast` (seconds of training or subprocesses)
def test_cli_generate_killed_and_resumed(tmp_path):
    sentences = [f"Person {i} walks to the old market." for i in range(1, 11)]
    sentences[4] = "COPY this fifth sentence please."
    source = tmp_path / "src.txt"
    source.write_text("\n".join(sentences) + "\n")
    out = tmp_path / "nli.jsonl"
    side = rejected_path(out)
    with FakeLLMServer(delay=0.5) as server:
        args = ["--backend", "openai", "--model", "fake", "--base-url", server.base_url, "--source", str(source),
                "--out", str(out), "--pattern", "nli", "--concurrency", "2", "--max-retries", "0"]
        proc = _cli(args)
        deadline = time.monotonic() + 60
        while len(_lines(out)) + len(_lines(side)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        written = len(_lines(out)) + len(_lines(side))
        assert 3 <= written < 10
        with open(out, "ab") as fh:  # and a line torn by the crash
            fh.write(b'{"id": "nli-v1/10", "source_id": "10", "pat')

        server.delay = 0.0
        second = _cli(args)
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr
        assert [line for line in stderr.splitlines() if "torn" in line] == \
            [f"{out}: cut a torn last line (43 bytes) left by an interrupted run; resuming."]
        assert f"{10 - written} requests" in stdout

        records = [json.loads(line) for line in _lines(out)]  # every line is valid JSON
        rejected = [json.loads(line) for line in _lines(side)]
        ids = [r["source_id"] for r in records + rejected]
        assert sorted(ids, key=int) == [str(i) for i in range(1, 11)]  # each source exactly once
        assert [(r["source_id"], r["reason"]) for r in rejected] == [("5", "copied")]
        assert len(read_generated(out)) == 9

        asked = len(server.requests)
        third = _cli(args)
        stdout3, stderr3 = third.communicate(timeout=120)
        assert third.returncode == 0 and len(server.requests) == asked
        assert "nothing to do (10 sources already done)" in stdout3

    assert all(h["Authorization"] == f"Bearer {KEY}" for h, _ in server.requests)
    for text in (out.read_text(), side.read_text(), stdout, stderr, stdout3, stderr3):
        assert KEY not in text


@pytest.mark.parametrize("argv, message", [
    (["--backend", "openai", "--model", "m", "--source", "s.txt", "--out", "o.jsonl"], "--base-url"),
    (["--backend", "openai", "--model", "m", "--base-url", "http://x/v1", "--source", "s.txt", "--out", "o.jsonl",
      "--concurrency", "0"], "--concurrency must be >= 1"),
    (["--backend", "transformers", "--source", "s.txt", "--out", "o.jsonl"], "needs --model"),
    (["--backend", "vllm", "--source", "s.txt", "--out", "o.jsonl"], "invalid choice"),
])
def test_cli_generate_bad_arguments(argv, message, monkeypatch, capsys):
    monkeypatch.delenv("CSELAB_LLM_BASE_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_cli_generate_reports_backend_failure(tmp_path, monkeypatch, capsys):
    source = tmp_path / "s.txt"
    source.write_text("A dog runs.\n")
    with FakeLLMServer(script=[(500, {}, b"boom")]) as server:
        code = cli.main(["generate", "--backend", "openai", "--model", "m", "--base-url", server.base_url,
                         "--source", str(source), "--out", str(tmp_path / "o.jsonl"), "--max-retries", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 500" in err and "re-run the same command to resume" in err


# ----------------------------------------------------------------------------- the shipped set (data/llm_generated)
def test_shipped_set_has_600_groups_of_both_patterns_with_provenance_and_no_copies():
    from cselab.llm_data import PATTERNS, normalize, read_generated, shipped_file

    sources = shipped_file("sources.txt").read_text("utf-8").splitlines()
    assert len(sources) >= 300 and len(set(map(normalize, sources))) == len(sources)
    assert all(6 <= len(s.split()) <= 30 for s in sources), [s for s in sources if not 6 <= len(s.split()) <= 30]
    header = json.loads(shipped_file("responses.jsonl").read_text("utf-8").splitlines()[0])
    total = 0
    for pattern, template in PATTERNS.items():
        records = read_generated(shipped_file(f"{pattern}.jsonl"))
        rejected = [json.loads(x) for x in shipped_file(f"{pattern}.rejected.jsonl").read_text("utf-8").splitlines()]
        assert len(records) + len(rejected) == len(sources)  # every source answered once with this prompt
        for record in records:
            levels = [record[level] for _, level in template.fields]
            assert normalize(record["sentence"]) not in map(normalize, levels)
            assert record["sentence"] == sources[int(record["source_id"]) - 1]
            assert record["provenance"]["backend"] == "replay" and record["provenance"]["prompt_id"] == template.id
            assert record["provenance"]["model"] == header["model"] and "Claude" in header["model"]
            assert record["provenance"]["sampling"] == header["sampling"]
        total += len(records)
    assert total >= 600


def test_replay_rebuilds_the_shipped_set_byte_for_byte(tmp_path):
    from cselab.llm_backends import ReplayChatBackend
    from cselab.llm_data import generate, shipped_file

    backend = ReplayChatBackend(shipped_file("responses.jsonl"))
    for pattern in ("nli", "sts"):
        out = tmp_path / f"{pattern}.jsonl"
        generate(backend, shipped_file("sources.txt"), out, pattern=pattern)
        assert out.read_bytes() == shipped_file(f"{pattern}.jsonl").read_bytes(), pattern
        assert rejected_path(out).read_bytes() == shipped_file(f"{pattern}.rejected.jsonl").read_bytes(), pattern


def test_smollm2_comparison_set_covers_the_first_16_sources():
    from cselab.llm_data import REASONS, shipped_file

    sources = shipped_file("sources.txt").read_text("utf-8").splitlines()[:16]
    for pattern in ("nli", "sts"):
        rows = [json.loads(line) for name in (f"smollm2/{pattern}.jsonl", f"smollm2/{pattern}.rejected.jsonl")
                for line in shipped_file(name).read_text("utf-8").splitlines()]
        assert sorted(int(r["source_id"]) for r in rows) == list(range(1, 17))
        assert {r["sentence"] for r in rows} == set(sources)
        assert all(r["provenance"]["backend"] == "transformers" and "SmolLM2-135M-Instruct" in r["provenance"]["model"]
                   for r in rows)
        assert all(r["reason"] in REASONS for r in rows if r.get("status") == "rejected")


def test_training_file_mixes_generated_groups_and_unlabeled_sentences(tmp_path):
    from cselab.methods.ngcse import read_graded_groups
    from cselab.llm_data import write_training_file

    groups = [{"pattern": "sts", "sentence": f"s{i}", "5": f"p{i}", "4": f"m{i}", "3": f"n{i}", "id": "x"}
              for i in range(3)]
    path = write_training_file(groups, ["an  unlabeled sentence", "", "another one"], tmp_path / "t.jsonl")
    rows = read_graded_groups(path)
    assert [r["split"] for r in rows] == ["aigen"] * 3 + ["other"] * 2
    assert rows[1] == {"sent0": "s1", "level5": "p1", "level4": "m1", "level3": "n1", "split": "aigen"}
    assert rows[3]["sent0"] == "an unlabeled sentence" and rows[3]["level5"] is None
    with pytest.raises(ValueError, match="one training file holds one pattern"):
        write_training_file(groups + [{"pattern": "nli", "sentence": "a", "5": "b", "4": "c"}], [], tmp_path / "u.jsonl")


def test_level_statistics_by_hand():
    from cselab.llm_data import level_statistics

    records = [{"pattern": "nli", "sentence": "A dog runs fast.", "5": "A dog runs.", "4": "A cat sleeps now!"},
               {"pattern": "nli", "sentence": "Rain fell.", "5": "It rained.", "4": "Rain fell not."}]
    stats = level_statistics(records)
    # '5': {a, dog, runs} vs {a, dog, runs, fast}: 3/4 shared of the union, all 3 inside; {it, rained} vs {rain, fell}: 0
    assert stats["5"] == pytest.approx({"words": (3 + 2) / 2, "jaccard": (3 / 4 + 0) / 2, "inside": (1 + 0) / 2})
    # '4': {a, cat, sleeps, now} vs {a, dog, runs, fast}: 1/7, inside 1/4; {rain, fell, not} vs {rain, fell}: 2/3, 2/3
    assert stats["4"] == pytest.approx({"words": (4 + 3) / 2, "jaccard": (1 / 7 + 2 / 3) / 2, "inside": (1 / 4 + 2 / 3) / 2})
    with pytest.raises(ValueError, match="exactly one pattern"):
        level_statistics(records + [{"pattern": "sts", "sentence": "x", "5": "y", "4": "z", "3": "w"}])
