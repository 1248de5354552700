"""cselab.data: SentEval readers on the real data, readers on synthetic files, bad input, downloads.

Real data is read from $CSELAB_DATA_DIR (fixture ``shared_data_dir``); every malformed or
synthetic file is built in ``tmp_path``. The download tests serve files from ``tmp_path``
with a real ``http.server`` on 127.0.0.1, so they need no network.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import re
import stat
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import cselab.data as D
from cselab.data import DataFormatError, DataNotFoundError
import cselab.methods.ngcse as N

# ---------------------------------------------------------------- expected counts (data/README.md)
STS_COUNTS = {
    "STS12": {"MSRpar": 750, "MSRvid": 750, "SMTeuroparl": 459, "surprise.OnWN": 750, "surprise.SMTnews": 399},
    "STS13": {"FNWN": 189, "headlines": 750, "OnWN": 561},
    "STS14": {"deft-forum": 450, "deft-news": 300, "headlines": 750, "images": 750, "OnWN": 750,
              "tweet-news": 750},
    "STS15": {"answers-forums": 375, "answers-students": 750, "belief": 375, "headlines": 750, "images": 750},
    "STS16": {"answer-answer": 254, "headlines": 249, "plagiarism": 230, "postediting": 244,
              "question-question": 209},
}
STS_TOTALS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186}
STSB_COUNTS = {"train": 5749, "dev": 1500, "test": 1379}
SICK_COUNTS = {"train": 4500, "dev": 500, "test": 4927}


def _assert_normalised(sentences, where):
    for i, s in enumerate(sentences):
        assert s, f"{where}[{i}] is empty"
        assert s == s.strip(), f"{where}[{i}] has leading/trailing whitespace: {s!r}"
        assert "  " not in s, f"{where}[{i}] has a double space: {s!r}"
        assert "\r" not in s and "\t" not in s and "\n" not in s, f"{where}[{i}] has a control character: {s!r}"
        assert s == " ".join(s.split()), f"{where}[{i}] is not whitespace-normalised: {s!r}"


# ================================================================ real data (CSELAB_DATA_DIR)
@pytest.mark.shared_data
@pytest.mark.parametrize("year", list(STS_COUNTS))
def test_sts_year_counts_and_subset_order(shared_data_dir, year):
    subsets = D.read_sts_year(year, shared_data_dir)
    assert list(subsets) == list(STS_COUNTS[year])  # SentEval's order
    assert {name: len(p) for name, p in subsets.items()} == STS_COUNTS[year]
    assert sum(len(p) for p in subsets.values()) == STS_TOTALS[year]
    for name, pairs in subsets.items():
        assert len(pairs.sentences1) == len(pairs.sentences2) == len(pairs.scores)
        assert pairs.scores.dtype == np.float64
        assert np.isfinite(pairs.scores).all()
        assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0
        _assert_normalised(pairs.sentences1, f"{year}/{name}/s1")
        _assert_normalised(pairs.sentences2, f"{year}/{name}/s2")


@pytest.mark.shared_data
def test_load_sts_task_matches_read_sts_year(shared_data_dir):
    for year in STS_COUNTS:
        loaded = D.load_sts_task(year, "test", shared_data_dir)
        assert {k: len(v) for k, v in loaded.items()} == STS_COUNTS[year]
    assert {k: len(v) for k, v in D.load_sts_task("STSBenchmark", "test", shared_data_dir).items()} == {"test": 1379}
    assert {k: len(v) for k, v in D.load_sts_task("SICKRelatedness", "dev", shared_data_dir).items()} == {"dev": 500}


@pytest.mark.shared_data
@pytest.mark.parametrize("split", list(STSB_COUNTS))
def test_stsb_counts(shared_data_dir, split):
    pairs = D.read_stsb(split, shared_data_dir)
    assert len(pairs) == STSB_COUNTS[split]
    assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0
    _assert_normalised(pairs.sentences1, f"sts-{split}/s1")
    _assert_normalised(pairs.sentences2, f"sts-{split}/s2")


@pytest.mark.shared_data
@pytest.mark.parametrize("split", list(SICK_COUNTS))
def test_sick_counts(shared_data_dir, split):
    pairs = D.read_sick(split, shared_data_dir)
    assert len(pairs) == SICK_COUNTS[split]
    assert pairs.scores.min() >= 1.0 and pairs.scores.max() <= 5.0  # SICK relatedness is on 1-5
    _assert_normalised(pairs.sentences1, f"SICK-{split}/s1")
    _assert_normalised(pairs.sentences2, f"SICK-{split}/s2")


@pytest.mark.shared_data
def test_sick_test_crlf_file_parses_without_carriage_returns(shared_data_dir):
    path = shared_data_dir / "senteval" / "downstream" / "SICK" / "SICK_test_annotated.txt"
    raw = path.read_bytes()
    assert b"\r\n" in raw, "the data README says this file has CRLF line endings"
    pairs = D.read_sick("test", shared_data_dir)
    assert len(pairs) == 4927
    # Independent parse: bytes -> text, split on CRLF, skip the header.
    rows = [line.split("\t") for line in raw.decode("utf-8").split("\r\n")[1:] if line]
    assert len(rows) == 4927
    np.testing.assert_array_equal(pairs.scores, np.array([float(r[3]) for r in rows]))
    assert all("\r" not in s for s in pairs.sentences1 + pairs.sentences2)
    assert pairs.sentences1[0] == " ".join(rows[0][1].split())
    assert pairs.sentences2[-1] == " ".join(rows[-1][2].split())


@pytest.mark.shared_data
def test_first_stsb_test_pair_equals_raw_line(shared_data_dir):
    path = shared_data_dir / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-test.csv"
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
    genre, file, year, pair_id, score, s1, s2 = first.rstrip("\r\n").split("\t")[:7]
    pairs = D.read_stsb("test", shared_data_dir)
    assert pairs.sentences1[0] == " ".join(s1.split())
    assert pairs.sentences2[0] == " ".join(s2.split())
    assert pairs.scores[0] == float(score)
    assert pairs.source == "STSBenchmark/test"


@pytest.mark.shared_data
def test_find_data_root(shared_data_dir, tmp_path):
    assert D.find_data_root(shared_data_dir) == shared_data_dir
    assert D.find_data_root(tmp_path) is None  # exists, but no SentEval layout
    assert D.find_data_root(tmp_path / "missing") is None


# ================================================================ synthetic SentEval roots
def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _sts_dir(root: Path, year: str = "STS12") -> Path:
    return root / "senteval" / "downstream" / "STS" / f"{year}-en-test"


def _make_sts12(root: Path, overrides: dict[str, bytes | str] | None = None) -> Path:
    """A complete synthetic STS12 folder (2 pairs per subset); ``overrides`` replaces files by name."""
    folder = _sts_dir(root)
    for subset in D.STS_SUBSETS["STS12"]:
        _write(folder / f"STS.input.{subset}.txt", f"a {subset} one .\tthe {subset} one .\nb two\tc two\n")
        _write(folder / f"STS.gs.{subset}.txt", "4.0\n1.5\n")
    for name, content in (overrides or {}).items():
        _write(folder / name, content)
    return folder


def test_sts_subset_reader_basic_and_normalisation(tmp_path):
    folder = _sts_dir(tmp_path)
    _write(folder / "STS.input.MSRpar.txt", "  a  man\tis  here \nx\t y \n")
    _write(folder / "STS.gs.MSRpar.txt", "4.2\n0\n")
    pairs = D.read_sts_subset(folder, "MSRpar")
    assert pairs.sentences1 == ["a man", "x"]
    assert pairs.sentences2 == ["is here", "y"]
    np.testing.assert_array_equal(pairs.scores, [4.2, 0.0])
    assert pairs.scores.dtype == np.float64
    assert pairs.source == "STS12-en-test/MSRpar"
    assert len(pairs) == 2


def test_sts_reader_tolerates_bom_at_file_start(tmp_path):
    folder = _sts_dir(tmp_path)
    _write(folder / "STS.input.MSRpar.txt", b"\xef\xbb\xbfhello world\tbonjour\nfoo\tbar\n")
    _write(folder / "STS.gs.MSRpar.txt", b"\xef\xbb\xbf3.5\n2\n")
    pairs = D.read_sts_subset(folder, "MSRpar")
    assert pairs.sentences1[0] == "hello world"  # no '\ufeff' glued to the first sentence
    np.testing.assert_array_equal(pairs.scores, [3.5, 2.0])


def test_stsb_reader_tolerates_bom_and_crlf(tmp_path):
    folder = tmp_path / "senteval" / "downstream" / "STS" / "STSBenchmark"
    _write(folder / "sts-dev.csv",
           b"\xef\xbb\xbfmain-captions\tMSRvid\t2012test\t0001\t5.000\ta  man .\ta man .\r\n"
           b"main-news\theadlines\t2013\t0002\t0.250\tone\ttwo three\r\n")
    pairs = D.read_stsb("dev", tmp_path)
    assert pairs.sentences1 == ["a man .", "one"]
    assert pairs.sentences2 == ["a man .", "two three"]
    np.testing.assert_array_equal(pairs.scores, [5.0, 0.25])


def test_sts_reader_tolerates_crlf(tmp_path):
    folder = _sts_dir(tmp_path)
    _write(folder / "STS.input.MSRpar.txt", "a b\tc d\r\ne f\tg h\r\n")
    _write(folder / "STS.gs.MSRpar.txt", "1.0\r\n\r\n")  # CRLF and an empty (unscored) gold line
    pairs = D.read_sts_subset(folder, "MSRpar")
    assert pairs.sentences1 == ["a b"] and pairs.sentences2 == ["c d"]
    np.testing.assert_array_equal(pairs.scores, [1.0])


def test_sick_reader_tolerates_crlf(tmp_path):
    _write(tmp_path / "senteval" / "downstream" / "SICK" / "SICK_trial.txt",
           "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
           "1\tA dog  runs\tA dog is running\t4.5\tENTAILMENT\r\n"
           "2\tA cat\tA car\t1.2\tNEUTRAL\r\n")
    pairs = D.read_sick("dev", tmp_path)
    assert pairs.sentences1 == ["A dog runs", "A cat"]
    assert pairs.sentences2 == ["A dog is running", "A car"]
    np.testing.assert_array_equal(pairs.scores, [4.5, 1.2])
    assert pairs.source == "SICK/dev"


def test_empty_gold_lines_drop_their_pairs(tmp_path):
    """SentEval: ``not_empty_idx = raw_scores != ''``; the sentences of unscored pairs go too."""
    folder = _sts_dir(tmp_path)
    _write(folder / "STS.input.MSRpar.txt", "s1 a\ts2 a\ns1 b\ts2 b\ns1 c\ts2 c\ns1 d\ts2 d\n")
    _write(folder / "STS.gs.MSRpar.txt", "\n3.0\n\n0.5\n")
    pairs = D.read_sts_subset(folder, "MSRpar")
    assert pairs.sentences1 == ["s1 b", "s1 d"]
    assert pairs.sentences2 == ["s2 b", "s2 d"]
    np.testing.assert_array_equal(pairs.scores, [3.0, 0.5])


def test_read_sts_year_on_synthetic_root(tmp_path):
    _make_sts12(tmp_path, {"STS.gs.MSRvid.txt": "\n2.0\n"})
    subsets = D.read_sts_year("STS12", tmp_path)
    assert list(subsets) == list(D.STS_SUBSETS["STS12"])
    assert {k: len(v) for k, v in subsets.items()} == {
        "MSRpar": 2, "MSRvid": 1, "SMTeuroparl": 2, "surprise.OnWN": 2, "surprise.SMTnews": 2}


def test_data_dir_defaults_to_env(tmp_path, monkeypatch):
    _make_sts12(tmp_path)
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    assert D.data_root() == tmp_path
    assert len(D.read_sts_year("STS12")["MSRpar"]) == 2


# ---------------------------------------------------------------- training-file readers
def test_nli_triplets_with_quoted_commas(tmp_path):
    path = tmp_path / "nli.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerow(["A man, a plan, a canal.", "A man plans.", "Nobody plans, ever."])
        writer.writerow(['He said "hi", then left.', "He spoke.", "He was silent."])
    triplets = D.read_nli_triplets(path)
    assert triplets == [
        ("A man, a plan, a canal.", "A man plans.", "Nobody plans, ever."),
        ('He said "hi", then left.', "He spoke.", "He was silent."),
    ]


def test_nli_triplets_with_bom_and_crlf(tmp_path):
    path = _write(tmp_path / "nli.csv", b'\xef\xbb\xbfsent0,sent1,hard_neg\r\n"a, b",c,d\r\ne,f,g\r\n')
    assert D.read_nli_triplets(path) == [("a, b", "c", "d"), ("e", "f", "g")]


@pytest.mark.shared_data
def test_nli_triplets_on_shared_file(shared_data_dir):
    triplets = D.read_nli_triplets(shared_data_dir / "nli" / "snli_devtest_triplets.csv")
    assert len(triplets) == 5863
    assert all(len(t) == 3 and all(t) for t in triplets)


def test_read_sentences_skips_blank_lines_with_warning(tmp_path):
    path = _write(tmp_path / "wiki.txt", "first sentence .\n\n  second one  \n   \nthird\n")
    with pytest.warns(UserWarning, match=r"skipped 2 empty line"):
        sentences = D.read_sentences(path)
    assert sentences == ["first sentence .", "second one", "third"]


def test_read_sentences_no_warning_when_clean(tmp_path, recwarn):
    path = _write(tmp_path / "wiki.txt", "a\nb\n")
    assert D.read_sentences(path) == ["a", "b"]
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_read_sentences_empty_file(tmp_path):
    path = _write(tmp_path / "empty.txt", "\n\n")
    with pytest.warns(UserWarning), pytest.raises(DataFormatError, match=re.escape(str(path))):
        D.read_sentences(path)


def test_read_documents_jsonl(tmp_path):
    path = _write(tmp_path / "docs.jsonl",
                  json.dumps({"title": "T1", "text": "Body one."}) + "\n\n"
                  + json.dumps({"text": "No title.", "extra": 1}) + "\n")
    assert D.read_documents(path) == [{"title": "T1", "text": "Body one."}, {"title": "", "text": "No title."}]


@pytest.mark.shared_data
def test_read_documents_on_shared_file(shared_data_dir):
    docs = D.read_documents(shared_data_dir / "docs" / "wikitext_docs.jsonl")
    assert len(docs) == 60
    assert all(isinstance(d["text"], str) and d["text"] for d in docs)


def test_read_scored_pairs_shipped_sample():
    pairs = D.read_scored_pairs()
    assert len(pairs) == 800
    assert pairs.source == "sts_sample.tsv"
    assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0
    _assert_normalised(pairs.sentences1, "sample/s1")
    _assert_normalised(pairs.sentences2, "sample/s2")
    # Independent parse of the first data line.
    first = (D.COURSE_DATA_DIR / "sts_sample.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert (pairs.scores[0], pairs.sentences1[0], pairs.sentences2[0]) == (float(first[0]), first[1], first[2])


def test_read_toy_corpus_shipped():
    sentences, ids = D.read_toy_corpus()
    assert len(sentences) == 1024 and ids.shape == (1024,)
    values, counts = np.unique(ids, return_counts=True)
    assert len(values) == 256
    assert (counts == 4).all()
    assert set(values.tolist()) == set(range(256))
    assert all(isinstance(s, str) and s for s in sentences)


# ================================================================ bad input
def _assert_names(exc_info, *parts: str):
    message = str(exc_info.value)
    for part in parts:
        assert part in message, f"{part!r} not in error message {message!r}"


def test_missing_data_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as info:
        D.read_sts_year("STS12", missing)
    _assert_names(info, str(missing), "cselab download senteval", D.DATA_ENV)
    assert isinstance(info.value, FileNotFoundError)


def test_missing_data_root_from_env_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "env-root"))
    with pytest.raises(DataNotFoundError) as info:
        D.read_stsb("test")
    _assert_names(info, str(tmp_path / "env-root"), f"${D.DATA_ENV}", "cselab download senteval")
    monkeypatch.delenv(D.DATA_ENV)
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as info:
        D.read_sick("test")
    _assert_names(info, str(tmp_path / "cache" / "data"), "cselab download senteval")


def test_missing_file_inside_existing_root(tmp_path):
    (tmp_path / "senteval" / "downstream" / "STS").mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as info:
        D.read_sts_year("STS13", tmp_path)
    _assert_names(info, str(tmp_path / "senteval" / "downstream" / "STS" / "STS13-en-test"),
                  "cselab download senteval")
    with pytest.raises(DataNotFoundError) as info:
        D.read_sick("train", tmp_path)
    _assert_names(info, "SICK_train.txt", "cselab download senteval")


def test_missing_subset_file_inside_year_folder(tmp_path):
    folder = _make_sts12(tmp_path)
    (folder / "STS.gs.SMTeuroparl.txt").unlink()
    with pytest.raises(DataNotFoundError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, str(folder / "STS.gs.SMTeuroparl.txt"))


def test_sts_input_line_with_three_fields(tmp_path):
    folder = _make_sts12(tmp_path, {"STS.input.MSRvid.txt": "a\tb\nc\td\textra\n"})
    with pytest.raises(DataFormatError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, f"{folder / 'STS.input.MSRvid.txt'}:2", "expected 2 tab-separated", "3 field")


def test_sts_gold_line_not_numeric(tmp_path):
    folder = _make_sts12(tmp_path, {"STS.gs.SMTeuroparl.txt": "4.0\nabc\n"})
    with pytest.raises(DataFormatError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, f"{folder / 'STS.gs.SMTeuroparl.txt'}:2", "'abc'", "not a number")


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf"])
def test_sts_gold_not_finite(tmp_path, bad):
    folder = _make_sts12(tmp_path, {"STS.gs.MSRpar.txt": f"{bad}\n1.0\n"})
    with pytest.raises(DataFormatError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, f"{folder / 'STS.gs.MSRpar.txt'}:1", repr(bad), "not a finite number")


def test_sts_input_gold_line_count_mismatch(tmp_path):
    folder = _make_sts12(tmp_path, {"STS.gs.surprise.OnWN.txt": "4.0\n1.0\n2.0\n"})
    with pytest.raises(DataFormatError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, str(folder / "STS.input.surprise.OnWN.txt"), "2 lines",
                  str(folder / "STS.gs.surprise.OnWN.txt"), "3", "one gold line")


def test_stsb_csv_with_five_columns(tmp_path):
    path = _write(tmp_path / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-test.csv",
                  "g\tf\t2012\t1\t4.0\ta\tb\ng\tf\t2012\t2\t3.0\n")
    with pytest.raises(DataFormatError) as info:
        D.read_stsb("test", tmp_path)
    _assert_names(info, f"{path}:2", "expected 7 tab-separated columns", "found 5")


def test_stsb_csv_comma_separated_is_rejected(tmp_path):
    path = _write(tmp_path / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-train.csv",
                  "g,f,2012,1,4.0,a,b\n")
    with pytest.raises(DataFormatError) as info:
        D.read_stsb("train", tmp_path)
    _assert_names(info, f"{path}:1", "tab-separated", "found 1")


def test_sick_with_two_columns(tmp_path):
    path = _write(tmp_path / "senteval" / "downstream" / "SICK" / "SICK_test_annotated.txt",
                  "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
                  "1\ta\tb\t3.0\tNEUTRAL\n"
                  "2\tonly one sentence\n")
    with pytest.raises(DataFormatError) as info:
        D.read_sick("test", tmp_path)
    _assert_names(info, f"{path}:3", "pair_ID, sentence_A, sentence_B", "found 2")


def test_sick_score_not_numeric(tmp_path):
    path = _write(tmp_path / "senteval" / "downstream" / "SICK" / "SICK_train.txt",
                  "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
                  "1\ta\tb\tNEUTRAL\t3.0\n")
    with pytest.raises(DataFormatError) as info:
        D.read_sick("train", tmp_path)
    _assert_names(info, f"{path}:2", "'NEUTRAL'", "not a number")


def test_nli_wrong_header(tmp_path):
    path = _write(tmp_path / "nli.csv", "premise,hypothesis,label\na,b,c\n")
    with pytest.raises(DataFormatError) as info:
        D.read_nli_triplets(path)
    _assert_names(info, f"{path}:1", "sent0", "hard_neg")


def test_nli_empty_file(tmp_path):
    path = _write(tmp_path / "nli.csv", "")
    with pytest.raises(DataFormatError) as info:
        D.read_nli_triplets(path)
    _assert_names(info, f"{path}:1", "sent0,sent1,hard_neg")


def test_nli_row_with_two_columns(tmp_path):
    path = _write(tmp_path / "nli.csv", 'sent0,sent1,hard_neg\na,b,c\n"x, y",z\n')
    with pytest.raises(DataFormatError) as info:
        D.read_nli_triplets(path)
    _assert_names(info, f"{path}:3", "expected 3 comma-separated columns", "found 2", "double quotes")


def test_documents_invalid_json_line(tmp_path):
    path = _write(tmp_path / "docs.jsonl", '{"text": "ok"}\n{"text": "broken"\n')
    with pytest.raises(DataFormatError) as info:
        D.read_documents(path)
    _assert_names(info, f"{path}:2", "not valid JSON")


def test_documents_without_text_field(tmp_path):
    path = _write(tmp_path / "docs.jsonl", '{"text": "ok"}\n["a list"]\n')
    with pytest.raises(DataFormatError) as info:
        D.read_documents(path)
    _assert_names(info, f"{path}:2", "'text'")


def test_latin1_bytes_in_sts_input(tmp_path):
    folder = _make_sts12(tmp_path, {"STS.input.MSRpar.txt": "caf\u00e9 ok\tfine\n".encode("utf-8")
                                    + "caf\u00e9 bad\tx\n".encode("latin-1")})
    with pytest.raises(DataFormatError) as info:
        D.read_sts_year("STS12", tmp_path)
    _assert_names(info, f"{folder / 'STS.input.MSRpar.txt'}:2", "not valid UTF-8", "0xe9", "UTF-8")


def test_non_utf8_after_bom_names_the_right_line_and_byte(tmp_path):
    path = _write(tmp_path / "STS.input.x.txt", b"\xef\xbb\xbfa\tb\n\xe9t\tc\n")
    with pytest.raises(DataFormatError) as info:
        D.read_lines(path)
    _assert_names(info, f"{path}:2", "0xe9")


def test_nli_quoted_newline_is_kept_and_line_numbers_stay_physical(tmp_path):
    path = _write(tmp_path / "nli.csv", 'sent0,sent1,hard_neg\n"line one\nline two",b,c\nx,y\n')
    with open(path, encoding="utf-8", newline="") as f:
        expected_first = tuple(list(csv.reader(f))[1])
    assert expected_first == ("line one\nline two", "b", "c")
    with pytest.raises(DataFormatError) as info:
        D.read_nli_triplets(path)
    _assert_names(info, f"{path}:4")  # 'x,y' is on physical line 4
    _write(path, 'sent0,sent1,hard_neg\n"line one\nline two",b,c\n')
    assert D.read_nli_triplets(path) == [expected_first]


def test_read_lines_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "nope.txt"))):
        D.read_lines(tmp_path / "nope.txt")


def test_shipped_format_readers_reject_bad_header_and_rows(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "sentence1\tsentence2\tscore\n")
    with pytest.raises(DataFormatError) as info:
        D.read_scored_pairs(path)
    _assert_names(info, f"{path}:1", "score<TAB>sentence1<TAB>sentence2")
    path = _write(tmp_path / "pairs.tsv", "score\tsentence1\tsentence2\n4.0\ta\n")
    with pytest.raises(DataFormatError) as info:
        D.read_scored_pairs(path)
    _assert_names(info, f"{path}:2", "expected 3 tab-separated columns")
    path = _write(tmp_path / "toy.tsv", "meaning_id\tsentence\nx1\ta sentence\n")
    with pytest.raises(DataFormatError) as info:
        D.read_toy_corpus(path)
    _assert_names(info, f"{path}:2", "<integer id><TAB><sentence>")


def test_unknown_sts_year():
    with pytest.raises(ValueError, match=r"Unknown STS year 'STS17'.*STS12"):
        D.read_sts_year("STS17")
    with pytest.raises(ValueError, match=r"Unknown STS task 'STS17'.*STSBenchmark"):
        D.load_sts_task("STS17")


@pytest.mark.parametrize("reader,task", [(D.read_stsb, "STSBenchmark"), (D.read_sick, "SICKRelatedness")])
def test_unknown_split(reader, task, tmp_path):
    # Raised before any file is touched: works without data.
    with pytest.raises(ValueError, match=rf"Unknown split 'validation' for {task}.*'train', 'dev', 'test'"):
        reader("validation", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Unknown split"):
        D.load_sts_task(task, "validation", tmp_path / "nowhere")


def test_sts12_has_no_dev_split(tmp_path):
    with pytest.raises(ValueError, match=r"STS12 has only a test split.*'dev'.*STSBenchmark"):
        D.load_sts_task("STS12", "dev", tmp_path / "nowhere")


# ================================================================ download()
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; records request paths; optionally sends an ETag-style header."""

    requests: list[str] = []
    extra_headers: dict[str, str] = {}

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def end_headers(self):
        for key, value in type(self).extra_headers.items():
            self.send_header(key, value)
        super().end_headers()


@pytest.fixture
def http_root(tmp_path):
    """(directory served, base URL, handler class) for a real HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    handler = type("Handler", (_Handler,), {"requests": [], "extra_headers": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _nli_payload() -> bytes:
    return b'sent0,sent1,hard_neg\r\n"A man, outside.",A man is outdoors.,A man is asleep indoors.\r\n' + bytes(range(256))


def _no_part_files(folder: Path) -> bool:
    return not list(folder.glob("*.part")) and not list(folder.glob(".*.part"))


def test_download_plain_file(http_root, tmp_path):
    served, base, handler = http_root
    payload = _nli_payload()
    _write(served / "nli_for_simcse.csv", payload)
    dest = tmp_path / "root"
    target = D.download("nli", dest, url=base + "nli_for_simcse.csv", progress=False)
    assert target == dest / D.REGISTRY["nli"].target == dest / "nli" / "nli_for_simcse.csv"
    assert target.read_bytes() == payload
    assert handler.requests == ["/nli_for_simcse.csv"]
    assert _no_part_files(target.parent)


def _senteval_tar(path: Path, prefix: str = "") -> dict[str, bytes]:
    files = {
        "STS/STS12-en-test/STS.input.MSRpar.txt": b"a b\tc d\ne f\tg h\n",
        "STS/STS12-en-test/STS.gs.MSRpar.txt": b"4.0\n\n",
        "STS/STSBenchmark/sts-test.csv": b"g\tf\t2012\t1\t2.5\tx y\tz\n",
        "SICK/SICK_test_annotated.txt": b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
                                        b"1\tA\tB\t3.2\tNEUTRAL\r\n",
    }
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return files


@pytest.mark.parametrize("prefix", ["", "downstream/"], ids=["top-level-STS", "downstream-prefix"])
def test_download_senteval_archive_is_unpacked(http_root, tmp_path, prefix):
    served, base, _ = http_root
    files = _senteval_tar(served / "senteval.tar", prefix)
    dest = tmp_path / "root"
    target = D.download("senteval", dest, url=base + "senteval.tar", progress=False)
    assert target == dest / "senteval" / "downstream"
    for name, content in files.items():
        assert (target / name).read_bytes() == content, name
    # Nothing left beside the target: no archive, no .part file, no temporary unpack folder.
    assert sorted(p.name for p in (dest / "senteval").iterdir()) == ["downstream"]
    # The unpacked tree is readable with the package's own readers.
    assert D.find_data_root(dest) == dest
    assert len(D.read_sts_subset(target / "STS" / "STS12-en-test", "MSRpar")) == 1
    assert D.read_sick("test", dest).scores.tolist() == [3.2]
    assert D.read_stsb("test", dest).sentences1 == ["x y"]


def test_download_archive_without_sts_folder(http_root, tmp_path):
    served, base, _ = http_root
    with tarfile.open(served / "other.tar", "w") as tar:
        info = tarfile.TarInfo("MR/rt-polarity.pos")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "root"
    with pytest.raises(OSError, match="no STS/ folder"):
        D.download("senteval", dest, url=base + "other.tar", progress=False)
    assert not (dest / "senteval" / "downstream").exists()
    assert not dest.exists(), "a failed download must remove the (empty) folders it created"


def _with_sha256(monkeypatch, name: str, sha256: str | None):
    monkeypatch.setitem(D.REGISTRY, name, dataclasses.replace(D.REGISTRY[name], sha256=sha256))


def test_download_correct_registry_checksum_passes(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    payload = _nli_payload()
    _write(served / "f.csv", payload)
    _with_sha256(monkeypatch, "nli", hashlib.sha256(payload).hexdigest())
    target = D.download("nli", tmp_path / "root", url=base + "f.csv", progress=False)
    assert target.read_bytes() == payload


def test_download_checksum_mismatch_leaves_nothing(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    _write(served / "f.csv", _nli_payload())
    _with_sha256(monkeypatch, "nli", "0" * 64)
    dest = tmp_path / "root"
    with pytest.raises(OSError, match="Checksum mismatch") as info:
        D.download("nli", dest, url=base + "f.csv", progress=False)
    assert "0" * 64 in str(info.value) and hashlib.sha256(_nli_payload()).hexdigest() in str(info.value)
    target = dest / D.REGISTRY["nli"].target
    assert not target.exists()
    assert _no_part_files(target.parent)
    assert not dest.exists(), "a failed download must remove the (empty) folders it created"


def test_download_checksum_mismatch_archive_leaves_nothing(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    _senteval_tar(served / "senteval.tar")
    _with_sha256(monkeypatch, "senteval", "f" * 64)
    dest = tmp_path / "root"
    with pytest.raises(OSError, match="Checksum mismatch"):
        D.download("senteval", dest, url=base + "senteval.tar", progress=False)
    assert not (dest / "senteval" / "downstream").exists()
    assert not dest.exists(), "a failed download must remove the (empty) folders it created"


def test_forced_download_with_bad_checksum_keeps_old_target(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    _write(served / "f.csv", b"new content")
    dest = tmp_path / "root"
    target = _write(dest / D.REGISTRY["nli"].target, b"old content")
    _with_sha256(monkeypatch, "nli", "0" * 64)
    with pytest.raises(OSError, match="Checksum mismatch"):
        D.download("nli", dest, url=base + "f.csv", force=True, progress=False)
    assert target.read_bytes() == b"old content"
    assert _no_part_files(target.parent)


def test_existing_target_is_not_downloaded_again(http_root, tmp_path):
    served, base, handler = http_root
    _write(served / "f.csv", b"server version")
    dest = tmp_path / "root"
    target = _write(dest / D.REGISTRY["nli"].target, b"local version")
    assert D.download("nli", dest, url=base + "f.csv", progress=False) == target
    assert target.read_bytes() == b"local version"
    assert handler.requests == []
    assert D.download("nli", dest, url=base + "f.csv", force=True, progress=False) == target
    assert target.read_bytes() == b"server version"
    assert handler.requests == ["/f.csv"]
    assert _no_part_files(target.parent)


def test_existing_archive_target_is_replaced_only_with_force(http_root, tmp_path):
    served, base, handler = http_root
    _senteval_tar(served / "senteval.tar")
    dest = tmp_path / "root"
    old = _write(dest / "senteval" / "downstream" / "STS" / "old.txt", b"old")
    D.download("senteval", dest, url=base + "senteval.tar", progress=False)
    assert old.exists() and handler.requests == []
    D.download("senteval", dest, url=base + "senteval.tar", force=True, progress=False)
    assert not old.exists()
    assert (dest / "senteval" / "downstream" / "STS" / "STS12-en-test" / "STS.input.MSRpar.txt").exists()
    assert handler.requests == ["/senteval.tar"]


@pytest.mark.parametrize("header", ["X-Linked-Etag", "ETag"])
def test_download_header_checksum_mismatch(http_root, tmp_path, header):
    served, base, handler = http_root
    _write(served / "f.csv", _nli_payload())
    wrong = "ab" * 32
    handler.extra_headers = {header: f'"{wrong}"'}
    assert D.REGISTRY["nli"].sha256 is None  # the header is the only reference here
    dest = tmp_path / "root"
    with pytest.raises(OSError, match="Checksum mismatch") as info:
        D.download("nli", dest, url=base + "f.csv", progress=False)
    assert wrong in str(info.value)
    target = dest / D.REGISTRY["nli"].target
    assert not target.exists()
    assert _no_part_files(target.parent)


def test_download_header_checksum_match_passes(http_root, tmp_path):
    served, base, handler = http_root
    payload = _nli_payload()
    _write(served / "f.csv", payload)
    handler.extra_headers = {"X-Linked-Etag": f'W/"{hashlib.sha256(payload).hexdigest().upper()}"'}
    target = D.download("nli", tmp_path / "root", url=base + "f.csv", progress=False)
    assert target.read_bytes() == payload


def test_download_http_error_leaves_nothing(http_root, tmp_path):
    _, base, _ = http_root
    dest = tmp_path / "root"
    with pytest.raises(D.DataNotFoundError, match=r"Cannot download 'nli' from .*missing\.csv.*nothing was written"
                       r".*cselab download nli.*nli/nli_for_simcse\.csv.*CSELAB_DATA_DIR"):
        D.download("nli", dest, url=base + "missing.csv", progress=False)
    target = dest / D.REGISTRY["nli"].target
    assert not target.exists()
    assert _no_part_files(target.parent)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_downloaded_data_has_umask_permissions(http_root, tmp_path):
    served, base, _ = http_root
    _write(served / "f.csv", _nli_payload())
    _senteval_tar(served / "senteval.tar")
    umask = os.umask(0)
    os.umask(umask)
    dest = tmp_path / "root"
    file_target = D.download("nli", dest, url=base + "f.csv", progress=False)
    dir_target = D.download("senteval", dest, url=base + "senteval.tar", progress=False)
    assert stat.S_IMODE(file_target.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(dir_target.stat().st_mode) == 0o777 & ~umask


def test_download_unknown_name(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown data set 'sts17'") as info:
        D.download("sts17", tmp_path)
    for name in D.REGISTRY:
        assert repr(name) in str(info.value)
    assert not list(tmp_path.iterdir())


def test_download_default_dest_is_data_root(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    _write(served / "f.txt", b"one sentence\n")
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "fresh-root"))  # need not exist yet
    target = D.download("wiki1m", url=base + "f.txt", progress=False)
    assert target == tmp_path / "fresh-root" / "unsup" / "wiki1m_for_simcse.txt"
    assert D.read_sentences(target) == ["one sentence"]


# ================================================================ MRPC and user labelled pairs
MRPC_COUNTS = {"train": 4076, "test": 1725}
MRPC_HEADER_LINE = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def _parse_mrpc_independently(path: Path) -> tuple[list[str], list[str], list[int]]:
    """SentEval MRPCEval.loadFile with the csv module: utf-8-sig drops the BOM, no quoting (the
    sentences contain bare '"'), header skipped; label column 0, sentences columns 3 and 4."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    s1 = [" ".join(r[3].split()) for r in rows[1:]]
    s2 = [" ".join(r[4].split()) for r in rows[1:]]
    return s1, s2, [int(r[0]) for r in rows[1:]]


@pytest.mark.shared_data
@pytest.mark.parametrize("split", list(MRPC_COUNTS))
def test_mrpc_counts_and_labels_equal_independent_parse(shared_data_dir, split):
    path = shared_data_dir / "senteval" / "downstream" / "MRPC" / f"msr_paraphrase_{split}.txt"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the real files carry a BOM
    s1, s2, labels = _parse_mrpc_independently(path)
    pairs = D.read_mrpc(split, shared_data_dir)
    assert len(pairs) == MRPC_COUNTS[split] == len(labels)
    assert pairs.source == f"MRPC/{split}"
    assert pairs.labels.dtype == np.int64 and pairs.labels.shape == (MRPC_COUNTS[split],)
    assert pairs.labels.tolist() == labels
    positives = sum(1 for y in labels if y == 1)
    assert int(pairs.labels.sum()) == positives
    assert {"train": 2753, "test": 1147}[split] == positives  # computed once with awk on the raw files
    assert pairs.sentences1 == s1 and pairs.sentences2 == s2
    _assert_normalised(pairs.sentences1, f"MRPC/{split}/s1")
    _assert_normalised(pairs.sentences2, f"MRPC/{split}/s2")


@pytest.mark.shared_data
def test_mrpc_first_test_pair_equals_raw_line(shared_data_dir):
    path = shared_data_dir / "senteval" / "downstream" / "MRPC" / "msr_paraphrase_test.txt"
    second_line = path.read_bytes().decode("utf-8").split("\n")[1].split("\t")
    pairs = D.read_mrpc("test", shared_data_dir)
    assert not pairs.sentences1[0].startswith("\ufeff")
    assert (pairs.labels[0], pairs.sentences1[0], pairs.sentences2[0]) == (
        int(second_line[0]), " ".join(second_line[3].split()), " ".join(second_line[4].split()))


def _mrpc_file(root: Path, split: str, body: str | bytes, bom: bool = True) -> Path:
    head = ("\ufeff" if bom else "") + MRPC_HEADER_LINE + "\n"
    if isinstance(body, bytes):
        return _write(root / "senteval" / "downstream" / "MRPC" / f"msr_paraphrase_{split}.txt",
                      head.encode("utf-8") + body)
    return _write(root / "senteval" / "downstream" / "MRPC" / f"msr_paraphrase_{split}.txt", head + body)


def test_mrpc_synthetic_bom_crlf_and_normalisation(tmp_path):
    _mrpc_file(tmp_path, "train", b'1\t11\t12\t  He said " yes "  .\tHe  said yes .\r\n0\t13\t14\ta\tb\r\n')
    pairs = D.read_mrpc("train", tmp_path)
    assert pairs.sentences1 == ['He said " yes " .', "a"]
    assert pairs.sentences2 == ["He said yes .", "b"]
    assert pairs.labels.tolist() == [1, 0] and pairs.labels.dtype == np.int64
    assert len(pairs) == 2 and pairs.source == "MRPC/train"
    _mrpc_file(tmp_path, "test", "0\t1\t2\tx\ty\n", bom=False)  # a file without BOM reads the same way
    assert D.read_mrpc(data_dir=tmp_path).sentences1 == ["x"]


@pytest.mark.parametrize("label", ["2", "-1", "yes", "", "1.0"])
def test_mrpc_label_not_binary(tmp_path, label):
    path = _mrpc_file(tmp_path, "test", f"1\t1\t2\ta\tb\n{label}\t3\t4\tc\td\n")
    with pytest.raises(DataFormatError) as info:
        D.read_mrpc("test", tmp_path)
    _assert_names(info, f"{path}:3", repr(label), "not 0 or 1")


@pytest.mark.parametrize("row", ["1\t1\t2\tonly one sentence", "1\t1\t2\ta\tb\tc", "", "1,1,2,a,b"])
def test_mrpc_malformed_row(tmp_path, row):
    path = _mrpc_file(tmp_path, "test", f"1\t1\t2\ta\tb\n0\t3\t4\tc\td\n{row}\n")
    with pytest.raises(DataFormatError) as info:
        D.read_mrpc("test", tmp_path)
    _assert_names(info, f"{path}:4", "expected 5 tab-separated columns", "#1 String")


def test_mrpc_empty_sentence(tmp_path):
    path = _mrpc_file(tmp_path, "test", "1\t1\t2\t  \tb\n")
    with pytest.raises(DataFormatError) as info:
        D.read_mrpc("test", tmp_path)
    _assert_names(info, f"{path}:2", "empty sentence")


def test_mrpc_wrong_header(tmp_path):
    path = _write(tmp_path / "senteval" / "downstream" / "MRPC" / "msr_paraphrase_test.txt", "1\t1\t2\ta\tb\n")
    with pytest.raises(DataFormatError) as info:
        D.read_mrpc("test", tmp_path)
    _assert_names(info, f"{path}:1", "expected the header", "Quality")
    _write(path, "")
    with pytest.raises(DataFormatError) as info:
        D.read_mrpc("test", tmp_path)
    _assert_names(info, f"{path}:1", "empty file")


def test_mrpc_unknown_split_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown split 'dev' for MRPC.*'train', 'test'"):
        D.read_mrpc("dev", tmp_path)
    (tmp_path / "senteval" / "downstream" / "MRPC").mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as info:
        D.read_mrpc("train", tmp_path)
    _assert_names(info, "msr_paraphrase_train.txt", "cselab download senteval")


def test_read_labeled_pairs(tmp_path):
    path = _write(tmp_path / "mine.tsv", "\ufefflabel\tsentence1\tsentence2\r\n1\ta  cat\tA cat .\r\n0\tx\ty\r\n")
    pairs = D.read_labeled_pairs(path)
    assert isinstance(pairs, D.LabeledPairs)
    assert (pairs.sentences1, pairs.sentences2, pairs.labels.tolist()) == (["a cat", "x"], ["A cat .", "y"], [1, 0])
    assert pairs.source == "mine.tsv" and len(pairs) == 2


def test_read_labeled_pairs_errors(tmp_path):
    path = _write(tmp_path / "bad.tsv", "score\tsentence1\tsentence2\n1\ta\tb\n")
    with pytest.raises(DataFormatError) as info:
        D.read_labeled_pairs(path)
    _assert_names(info, f"{path}:1", "label<TAB>sentence1<TAB>sentence2")
    _write(path, "label\tsentence1\tsentence2\n1\ta\tb\n0.7\tc\td\n")
    with pytest.raises(DataFormatError) as info:
        D.read_labeled_pairs(path)
    _assert_names(info, f"{path}:3", "'0.7'", "not 0 or 1")
    _write(path, "label\tsentence1\tsentence2\n1\ta b\n")
    with pytest.raises(DataFormatError) as info:
        D.read_labeled_pairs(path)
    _assert_names(info, f"{path}:2", "expected 3 tab-separated columns", "found 2")


# ------------------------------------------------------------------ DeCLUTR's documents
def _xz_tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _openwebtext_tar(path: Path) -> None:
    """The hub layout: a tar of .xz archives, each a tar of .txt documents."""
    parts = {"openwebtext/urlsf_subset00-1_data.xz": _xz_tar_of({"0001-a.txt": "Long Doc " * 2100,
                                                                 "0002-b.txt": "short doc"}),
             "openwebtext/urlsf_subset00-2_data.xz": _xz_tar_of({"0003-c.txt": "Exactly " * 2048})}
    with tarfile.open(path, "w") as tar:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_iter_openwebtext_reads_nested_archives(tmp_path):
    _openwebtext_tar(tmp_path / "subset.tar")
    docs = dict(D.iter_openwebtext(tmp_path / "subset.tar"))
    assert sorted(docs) == ["0001-a", "0002-b", "0003-c"] and docs["0002-b"] == "short doc"


def test_write_documents_keeps_long_enough_documents(tmp_path, tiny_encoder):
    tiny_tokenizer = tiny_encoder.tokenizer
    docs = [("a", "one two three four"), ("b", "One Two Three"), ("c", "   "), ("d", "Unaffable words here")]
    out = tmp_path / "docs" / "out.jsonl"
    assert D.write_documents(docs, out, min_length=3, lowercase=True) == {"kept": 3, "dropped": 1}
    assert D.read_documents(out) == [{"title": "a", "text": "one two three four"},
                                     {"title": "b", "text": "one two three"},
                                     {"title": "d", "text": "unaffable words here"}]
    # with a tokenizer the subword tokens count, as the span sampler counts them
    n = len(tiny_tokenizer.tokenize("unaffable words here"))
    assert D.write_documents(docs[3:], out, min_length=n, tokenizer=tiny_tokenizer)["kept"] == 1
    assert D.write_documents(docs[3:], out, min_length=n + 1, tokenizer=tiny_tokenizer)["kept"] == 0
    assert _no_part_files(out.parent)


def test_write_documents_leaves_no_partial_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"title": "old", "text": "kept safe"}\n', encoding="utf-8")

    def broken():
        yield "a", "fine text"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        D.write_documents(broken(), out)
    assert D.read_documents(out) == [{"title": "old", "text": "kept safe"}] and _no_part_files(tmp_path)


WIKITEXT = [" \n", " = Robert Boulter = \n", " \n", " Robert Boulter is an English actor . \n", " \n",
            " = = Career = = \n", " \n", " In 2000 Boulter had a guest @-@ starring role , 1 @,@ 000 times . \n",
            " \n", " = Constant k filter = \n", " \n", " The impedance is \n",
            " = 1 rad / s and a nominal impedance k = \n", " which is 2 @.@ 5 ohms . \n", " \n",
            " = = = Sub = = = \n", " \n", " Last paragraph . \n"]


def test_wikitext_articles_as_the_shared_file_was_made():
    articles = list(D.wikitext_articles(WIKITEXT))
    assert articles == [
        ("Robert Boulter", "Robert Boulter is an English actor .\n"
                           "In 2000 Boulter had a guest-starring role , 1,000 times ."),
        ("Constant k filter", "The impedance is\n= 1 rad / s and a nominal impedance k =\nwhich is 2.5 ohms .\n"
                              "Last paragraph ."),
    ]


def test_download_openwebtext_is_preprocessed(http_root, tmp_path):
    served, base, _ = http_root
    _openwebtext_tar(served / "urlsf_subset00.tar")
    dest = tmp_path / "root"
    target = D.download("openwebtext", dest, url=base + "urlsf_subset00.tar", progress=False)
    assert target == dest / "docs" / "openwebtext.jsonl"
    docs = D.read_documents(target)
    assert [d["title"] for d in docs] == ["0001-a", "0003-c"]  # >= 2048 whitespace tokens
    assert docs[0]["text"].startswith("long doc long doc")  # lowercased, as DeCLUTR's default
    assert sorted(p.name for p in target.parent.iterdir()) == ["openwebtext.jsonl"]


def test_download_wikitext_docs_from_parquet(http_root, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    served, base, _ = http_root
    pq.write_table(pa.table({"text": WIKITEXT}), served / "test.parquet")
    target = D.download("wikitext-docs", tmp_path / "root", url=base + "test.parquet", progress=False)
    assert [d["title"] for d in D.read_documents(target)] == ["Robert Boulter", "Constant k filter"]


@pytest.mark.skipif(not os.environ.get("CSELAB_DATA_DIR"), reason="needs CSELAB_DATA_DIR")
def test_shared_wikitext_documents_match_the_registry_layout():
    root = Path(os.environ["CSELAB_DATA_DIR"])
    docs = D.read_documents(root / D.REGISTRY["wikitext-docs"].target)
    assert len(docs) == 60  # the shared README's count
    assert sum(len(d["text"].split()) for d in docs) == 229_902
    assert all("@-@" not in d["text"] for d in docs)


def test_toy_documents_are_regenerated_byte_for_byte(tmp_path, tiny_encoder):
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_data", repo / "data" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    make_data.HERE = tmp_path
    make_data.make_docs()
    shipped = repo / "data" / "toy_docs.jsonl"
    assert (tmp_path / "toy_docs.jsonl").read_bytes() == shipped.read_bytes()
    docs = D.read_documents(shipped)  # the counts data/README.md states
    lengths = [len(tiny_encoder.tokenizer.tokenize(d["text"])) for d in docs]
    assert len(docs) == 96 and (min(lengths), max(lengths), sum(lengths)) == (111, 436, 26_663)
    assert docs[0]["title"] == "Story 1: a man" and all(2 <= len(d["text"].split("\n")) for d in docs)


# ================================================================ NGCSE's graded groups (reference §8.1)
def _graded(aigen=True, **cells):
    """An expected row, written out: absent levels are None."""
    row = {"sent0": cells.pop("sent0"), "level5": None, "level4": None, "level3": None,
           "split": "aigen" if aigen else "other"}
    row.update(cells)
    return row


def test_graded_groups_jsonl_in_ngcse_layout(tmp_path):
    lines = [
        {"split": "aigen", "sentence": "A man plays a guitar .", "5": "A guy strums a guitar .",
         "4": "A man holds a guitar .", "3": "Nobody plays music .", "2": "", "1": "", "0": "",
         "id": "g1", "provenance": {"model": "x"}},
        {"split": "other", "sentence": "Stocks fell on Monday .", "5": "", "4": "", "3": ""},
        {"split": "other", "sentence": "The pier was rebuilt ."},  # missing keys = absent
        {"sentence": "Two dogs run .", "5": "Dogs are running .", "4": "Animals move .", "3": "Dogs sleep ."},
        {"split": "other", "sentence": "A cat sleeps .", "5": None, "4": "  ", "3": ""},  # null / blank = absent
    ]
    path = _write(tmp_path / "hybrid.jsonl", "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n"
                  + "\n".join(json.dumps(x) for x in lines[2:]) + "\n")
    assert N.read_graded_groups(path) == [
        _graded(sent0="A man plays a guitar .", level5="A guy strums a guitar .", level4="A man holds a guitar .",
                level3="Nobody plays music ."),
        _graded(False, sent0="Stocks fell on Monday ."),
        _graded(False, sent0="The pier was rebuilt ."),
        _graded(sent0="Two dogs run .", level5="Dogs are running .", level4="Animals move .", level3="Dogs sleep ."),
        _graded(False, sent0="A cat sleeps ."),
    ]
    assert N.graded_levels(N.read_graded_groups(path)) == ("level5", "level4", "level3")
    assert N.is_graded_jsonl(path)


def test_graded_groups_nli_pattern_jsonl_has_two_levels(tmp_path):
    path = _write(tmp_path / "nli.jsonl", json.dumps({"split": "aigen", "sentence": "s", "5": "e", "4": "c"}) + "\n"
                  + json.dumps({"split": "aigen", "sentence": "t", "5": "e2", "4": "c2", "3": ""}) + "\n")
    rows = N.read_graded_groups(path)
    assert rows == [_graded(sent0="s", level5="e", level4="c"), _graded(sent0="t", level5="e2", level4="c2")]
    assert N.graded_levels(rows) == ("level5", "level4")


def test_graded_groups_from_simcse_triplets_csv(tmp_path):
    path = _write(tmp_path / "nli.csv", 'sent0,sent1,hard_neg\n"A man, outside .",A guy is out .,A man is in .\n'
                                        "Dogs run .,Dogs move .,Dogs sleep .\n")
    assert N.read_graded_groups(path) == [
        _graded(sent0="A man, outside .", level5="A guy is out .", level4="A man is in ."),
        _graded(sent0="Dogs run .", level5="Dogs move .", level4="Dogs sleep ."),
    ]


def test_graded_groups_level_table_with_empty_cells(tmp_path):
    path = _write(tmp_path / "levels.csv", "sentence,level5,level4,level3\na,b,c,d\nlone,,,\n")
    assert N.read_graded_groups(path) == [_graded(sent0="a", level5="b", level4="c", level3="d"),
                                          _graded(False, sent0="lone")]


def test_graded_groups_of_the_shipped_files():
    nli = N.read_graded_groups(D.COURSE_DATA_DIR / "toy_nli.csv")
    with open(D.COURSE_DATA_DIR / "toy_nli.csv", encoding="utf-8", newline="") as f:
        triplets = list(csv.reader(f))[1:]
    assert len(nli) == len(triplets) == 1024
    assert [(r["sent0"], r["level5"], r["level4"], r["level3"], r["split"]) for r in nli] == [
        (a, b, c, None, "aigen") for a, b, c in triplets]
    corpus = N.read_graded_groups(D.COURSE_DATA_DIR / "toy_corpus.tsv")  # meaning_id is ignored
    lines = (D.COURSE_DATA_DIR / "toy_corpus.tsv").read_text("utf-8").splitlines()[1:]
    sentences = [line.split("\t")[1] for line in lines]
    assert corpus == [_graded(False, sent0=s) for s in sentences]
    assert N.graded_levels(corpus) == ()


def test_graded_groups_from_plain_sentences(tmp_path):
    path = _write(tmp_path / "s.txt", "one sentence\n\n  \nanother one\n")
    assert N.read_graded_groups(path) == [_graded(False, sent0="one sentence"), _graded(False, sent0="another one")]


def test_documents_are_not_graded_jsonl(tmp_path):
    path = _write(tmp_path / "docs.jsonl", json.dumps({"title": "t", "text": "a sentence"}) + "\n")
    assert not N.is_graded_jsonl(path)
    with pytest.raises(DataFormatError, match=r"docs.jsonl:1: no 'sentence' field \(a 'text' field is a DeCLUTR"):
        N.read_graded_groups(path)


GOOD = json.dumps({"split": "aigen", "sentence": "s", "5": "a", "4": "b", "3": "c"})


@pytest.mark.parametrize("line,match", [
    ("{not json", r"not valid JSON"),
    ('["s", "a"]', r"expected a JSON object"),
    (json.dumps({"split": "aigen", "5": "a"}), r"no 'sentence' field"),
    (json.dumps({"split": "aigen", "sentence": "  ", "5": "a", "4": "b", "3": "c"}), r"non-empty 'sentence'"),
    (json.dumps({"split": "train", "sentence": "s", "5": "a", "4": "b", "3": "c"}), r"'split' is 'train'"),
    (json.dumps({"split": "aigen", "sentence": "s", "5": "", "4": "", "3": ""}), r"'aigen' row needs at least one"),
    (json.dumps({"split": "other", "sentence": "s", "5": "a"}), r"'other' row .* has the levels \['5'\]"),
    (json.dumps({"split": "aigen", "sentence": "s", "5": "a", "4": "b", "3": ""}),
     r"levels \['level5', 'level4'\] but the first group \(.*g.jsonl:1\) has \['level5', 'level4', 'level3'\]"),
    (json.dumps({"split": "aigen", "sentence": "s", "5": "a", "4": "b", "3": "c", "2": "d"}),
     r"levels \['2'\] are not supported"),
    (json.dumps({"split": "aigen", "sentence": "s", "5": 5, "4": "b", "3": "c"}), r"'5' must be a string"),
])
def test_graded_groups_bad_jsonl_line_names_file_and_line(tmp_path, line, match):
    path = _write(tmp_path / "g.jsonl", GOOD + "\n\n" + line + "\n" + GOOD + "\n")
    with pytest.raises(DataFormatError, match=r"g\.jsonl:3: .*" + match):
        N.read_graded_groups(path)


@pytest.mark.parametrize("content,match", [
    ("sent0,sent1,hard_neg\na,b,c\na,b\n", r"t\.csv:3: expected 3 columns"),
    ("sent0,sent1,hard_neg\na,b,c\n,b,c\n", r"t\.csv:3: every row needs a non-empty 'sentence'"),
    ("sent0,sent1,hard_neg\na,b,c\nx,y,\n", r"t\.csv:3: this group has the levels \['level5'\]"),
    ("sent0,positive,negative\na,b,c\n", r"t\.csv:1: header .* unknown columns \['positive', 'negative'\]"),
    ("sent1,hard_neg\na,b\n", r"t\.csv:1: header .* one sentence column"),
    ("sent0,sent1,5\na,b,c\n", r"t\.csv:1: header .*each level once"),
    ("", r"t\.csv:1: empty file"),
])
def test_graded_groups_bad_csv_names_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "t.csv", content)
    with pytest.raises(DataFormatError, match=match):
        N.read_graded_groups(path)


def test_graded_groups_unsupported_suffix_and_empty_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.parquet"):
        N.read_graded_groups(_write(tmp_path / "g.parquet", b"x"))
    with pytest.raises(DataFormatError, match=r"e\.jsonl: no rows"):
        N.read_graded_groups(_write(tmp_path / "e.jsonl", "\n"))


def test_graded_groups_read_the_records_cselab_generate_writes(tmp_path):
    from cselab import llm_data as L

    sts = L.make_record(L.STS_V1, "7", "A dog runs .", {"paraphrase": "A dog is running .", "intermediate":
                        "An animal moves .", "dissimilar": "A cat sleeps ."}, {"model": "m"})
    nli = L.make_record(L.NLI_V1, "8", "A man cooks .", {"entailment": "Someone cooks .",
                        "contradiction": "Nobody cooks ."}, {"model": "m"})
    for record, want in ((sts, _graded(sent0="A dog runs .", level5="A dog is running .", level4="An animal moves .",
                                       level3="A cat sleeps .")),
                         (nli, _graded(sent0="A man cooks .", level5="Someone cooks .", level4="Nobody cooks ."))):
        path = _write(tmp_path / f"{record['pattern']}.jsonl", json.dumps(record) + "\n")
        assert N.read_graded_groups(path) == [want] and N.is_graded_jsonl(path)


def test_training_text_prefers_real_data_then_the_shipped_files(tmp_path):
    from cselab.data import COURSE_DATA_DIR, training_text

    assert training_text("unlabeled", tmp_path / "absent") == (COURSE_DATA_DIR / "toy_corpus.tsv",
                                                                "the course's toy corpus (shipped)")
    (tmp_path / "unsup").mkdir()
    (tmp_path / "unsup" / "wiki1m_for_simcse.txt").write_text("a\n")
    assert training_text("unlabeled", tmp_path)[0] == tmp_path / "unsup" / "wiki1m_for_simcse.txt"
    (tmp_path / "unsup" / "wiki_sample.txt").write_text("b\n")  # the sample comes first
    assert training_text("unlabeled", tmp_path)[0] == tmp_path / "unsup" / "wiki_sample.txt"
    assert training_text("nli", tmp_path)[0] == COURSE_DATA_DIR / "toy_nli.csv"
    with pytest.raises(ValueError, match="choose one of"):
        training_text("docs", tmp_path)


def test_scored_pairs_subset_is_fixed_random_and_in_order():
    import numpy as np

    from cselab.data import ScoredPairs

    pairs = ScoredPairs([f"a{i}" for i in range(50)], [f"b{i}" for i in range(50)], np.arange(50.0), "toy")
    sub = pairs.subset(10)
    keep = np.sort(np.random.default_rng(0).choice(50, size=10, replace=False))  # the documented draw
    assert sub.sentences1 == [f"a{i}" for i in keep] and sub.scores.tolist() == keep.tolist()
    assert sub.sentences2 == [f"b{i}" for i in keep] and sub.source == "toy (10-pair subset)"
    assert pairs.subset(10).scores.tolist() == sub.scores.tolist() and pairs.subset(10, seed=1).scores.tolist() != \
        sub.scores.tolist()
    assert pairs.subset(50) is pairs and pairs.subset(99) is pairs
    assert sub.subset(4).source == "toy (4-pair subset)"
    with pytest.raises(ValueError, match="at least 2"):
        pairs.subset(1)


def test_labeled_pairs_subset_draws_like_scored_pairs():
    from cselab.data import LabeledPairs

    pairs = LabeledPairs([f"a{i}" for i in range(40)], [f"b{i}" for i in range(40)], np.arange(40) % 2, "mrpc")
    sub = pairs.subset(7, seed=3)
    keep = np.sort(np.random.default_rng(3).choice(40, size=7, replace=False))  # the documented draw
    assert sub.sentences1 == [f"a{i}" for i in keep] and sub.sentences2 == [f"b{i}" for i in keep]
    assert sub.labels.tolist() == (keep % 2).tolist() and sub.source == "mrpc (7-pair subset)"
    assert sub.subset(3).source == "mrpc (3-pair subset)" and pairs.subset(40) is pairs
    with pytest.raises(ValueError, match="at least 1"):
        pairs.subset(0)
