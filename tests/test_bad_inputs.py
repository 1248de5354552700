"""Bad-input suite: malformed files, configurations, CLI arguments and notebook parameters each give ONE
clear message that names the place (file:line, argument or key) and the fix — or, for harmless variants
(a BOM, CRLF line ends), are accepted and parse exactly like the clean file.

New here (28 cases): the training-file readers of :func:`cselab.train.load_training_data` (``.txt``,
``.csv``, ``.tsv``): BOM + CRLF accepted and parsed right; empty lines skipped with a warning; rows with
more or fewer fields than the header (pandas used to shift them silently into an index column or pad
them); duplicate header names; an empty file; latin-1 bytes; the course's scored pairs and toy corpus
with BOM + CRLF, NaN/inf gold scores; ``max_length`` 0 (one message, not two); negative or zero step
counts; an empty ``train_file``; ``cselab train`` with an unknown key, a bad value and a preset typo.

Already tested elsewhere (113 collected cases in 70 tests, some holding several inputs; not repeated here; node ids,
parametrisations counted):

- SentEval readers (tests/test_data.py): ``test_sts_reader_tolerates_bom_at_file_start``,
  ``test_stsb_reader_tolerates_bom_and_crlf``, ``test_sts_reader_tolerates_crlf``,
  ``test_sick_reader_tolerates_crlf``, ``test_empty_gold_lines_drop_their_pairs``,
  ``test_nli_triplets_with_bom_and_crlf``, ``test_nli_quoted_newline_is_kept_and_line_numbers_stay_physical``,
  ``test_read_sentences_skips_blank_lines_with_warning``, ``test_read_sentences_empty_file``,
  ``test_missing_data_root``, ``test_missing_file_inside_existing_root``,
  ``test_missing_subset_file_inside_year_folder``, ``test_sts_input_line_with_three_fields``,
  ``test_sts_gold_line_not_numeric``, ``test_sts_gold_not_finite`` (NaN gold scores),
  ``test_sts_input_gold_line_count_mismatch``, ``test_stsb_csv_with_five_columns``,
  ``test_stsb_csv_comma_separated_is_rejected``, ``test_sick_with_two_columns``,
  ``test_sick_score_not_numeric``, ``test_nli_wrong_header``, ``test_nli_empty_file``,
  ``test_nli_row_with_two_columns``, ``test_documents_invalid_json_line``,
  ``test_documents_without_text_field``, ``test_latin1_bytes_in_sts_input``,
  ``test_non_utf8_after_bom_names_the_right_line_and_byte``, ``test_read_lines_missing_file``,
  ``test_shipped_format_readers_reject_bad_header_and_rows``, ``test_unknown_sts_year``,
  ``test_unknown_split``, ``test_sts12_has_no_dev_split``, ``test_download_unknown_name``,
  ``test_mrpc_synthetic_bom_crlf_and_normalisation``, ``test_mrpc_label_not_binary``,
  ``test_mrpc_malformed_row``, ``test_mrpc_empty_sentence``, ``test_mrpc_wrong_header``,
  ``test_mrpc_unknown_split_and_missing_file``, ``test_read_labeled_pairs_errors``;
- configurations (tests/test_configs.py): ``test_unknown_key_is_rejected_by_name`` (unknown config keys),
  ``test_unknown_keyword_is_rejected_by_name``, ``test_override_without_equals_sign_is_rejected``,
  ``test_bad_values_are_rejected_naming_the_key`` (22 values: negative sizes, NaN, typos),
  ``test_nan_grad_clip_is_rejected``, ``test_non_finite_hard_negative_weight_is_rejected``,
  ``test_unknown_preset_lists_the_presets``, ``test_config_from_dict_rejects_unknown_keys``,
  ``test_config_from_dict_validates_values``;
- CLI (tests/test_cli.py): ``test_eval_missing_model_directory``, ``test_eval_missing_data_root``,
  ``test_bad_arguments_exit_with_usage``, ``test_course_runner_rejects_unknown_chapter``;
  tests/test_llm_data.py::``test_cli_generate_bad_arguments``;
- notebook parameters (tests/test_profiles.py): ``test_unknown_profile_lists_valid_ones`` (profile name
  typos), ``test_unknown_override_raises_type_error``;
- models (tests/test_encoders.py): ``test_nonexistent_local_path``, ``test_directory_without_config``,
  ``test_directory_without_tokenizer_files`` (a model directory without tokenizer),
  ``test_hub_id_not_cached_and_hub_unreachable``, ``test_unknown_pooler_lists_poolers``,
  ``test_sentence_transformers_dir_with_unsupported_pooling``;
- training data and runs (tests/test_train.py): ``test_load_csv_two_and_three_columns`` (missing
  ``hard_neg``), ``test_load_errors``, ``test_load_jsonl_documents_whole_with_titles`` (bad JSON line),
  ``test_short_training_documents_fail_before_training``, ``test_resume_with_other_config_names_the_key``;
- generated data (tests/test_llm_data.py): ``test_read_generated_names_file_and_line`` (duplicate ids,
  missing fields), ``test_resume_refuses_a_file_of_another_prompt_or_a_bad_middle_line``,
  ``test_read_sources_ids_are_line_numbers``.

(Argument validation of the library functions — losses, augmentations, memory, encode — is tested in
their own modules and not counted here.)
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from cselab import cli
from cselab.configs import resolve_config
from cselab.data import DataFormatError, read_scored_pairs, read_toy_corpus
from cselab.train import load_training_data

BOM = b"\xef\xbb\xbf"


pytestmark = pytest.mark.usefixtures("datasets_cache")  # conftest.py: a cache per module


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return tiny_encoder.tokenizer


def load(path: Path, tokenizer, method: str = "unsup-simcse"):
    columns = {"unsup-simcse": ("sent0",), "sup-simcse": ("sent0", "sent1", "hard_neg")}[method]
    config = resolve_config(f"{method}-ci", train_file=str(path))
    ds = load_training_data(config, tokenizer, columns)
    return [[tokenizer.decode(row[c], skip_special_tokens=True) for c in columns] for row in ds]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ accepted: BOM and CRLF parse right
@pytest.mark.parametrize("name,clean,method", [
    ("t.txt", b"A dog runs.\nA cat sleeps.\n", "unsup-simcse"),
    ("t.tsv", b"sentence\nA dog runs.\nA \"quoted\" cat.\n", "unsup-simcse"),
    ("t.csv", b'sent0,sent1,hard_neg\n"A man, outside.",A man is outdoors.,A man sleeps.\nA,"B ""b""",C\n', "sup-simcse"),
], ids=["txt", "tsv", "csv"])
def test_training_file_with_bom_and_crlf_parses_like_the_clean_file(tmp_path, tokenizer, name, clean, method):
    want = load(write(tmp_path, "clean_" + name, clean), tokenizer, method)
    got = load(write(tmp_path, "bom_crlf_" + name, BOM + clean.replace(b"\n", b"\r\n")), tokenizer, method)
    assert got == want and len(got) == 2
    raw = (tmp_path / ("bom_crlf_" + name))
    if name.endswith(".txt"):  # the BOM is not part of the first sentence's text
        import datasets

        ds = datasets.load_dataset("text", data_files=str(raw), split="train", encoding="utf-8-sig")
        assert ds[0]["text"] == "A dog runs."


def test_training_txt_empty_lines_are_skipped_with_a_warning(tmp_path, tokenizer):
    path = write(tmp_path, "gaps.txt", b"A dog runs.\n\n   \nA cat sleeps.\n")
    with pytest.warns(UserWarning, match=re.escape(f"{path}: skipped 2 empty line(s)")):
        rows = load(path, tokenizer)
    assert rows == [["a dog runs."], ["a cat sleeps."]]


def test_scored_pairs_and_toy_corpus_accept_bom_and_crlf(tmp_path):
    pairs = read_scored_pairs(write(tmp_path, "p.tsv", BOM + b"score\tsentence1\tsentence2\r\n4.5\tA b.\tA c.\r\n"))
    assert (pairs.sentences1, pairs.sentences2, pairs.scores.tolist()) == (["A b."], ["A c."], [4.5])
    sentences, ids = read_toy_corpus(write(tmp_path, "c.tsv", BOM + b"meaning_id\tsentence\r\n3\tA b.\r\n"))
    assert sentences == ["A b."] and np.array_equal(ids, [3])


# ------------------------------------------------------------------ rejected: one message, file:line and fix
TRAINING_FILE_ERRORS = [
    ("extra-field-csv", "x.csv", b"sent0,sent1\nA,B\nC,D,E\n", "sup-simcse",
     r"x.csv:3: 3 comma-separated fields, but the header \['sent0', 'sent1'\] has 2 \(put fields that contain "
     r"commas in double quotes\)"),
    ("short-row-csv", "x.csv", b"sent0,sent1,hard_neg\nA,B,C\nD,E\n", "sup-simcse",
     r"x.csv:3: 2 comma-separated fields, but the header .* has 3"),
    ("extra-tab-tsv", "x.tsv", b"sentence\nA dog\truns.\n", "unsup-simcse",
     r"x.tsv:2: 2 tab-separated fields, but the header \['sentence'\] has 1 \(a tab inside a sentence splits it"),
    ("duplicate-columns-csv", "x.csv", b"sent0,sent0\nA,B\n", "unsup-simcse",
     r"x.csv:1: column name\(s\) \['sent0'\] appear more than once .* rename them"),
    ("empty-csv", "x.csv", b"", "unsup-simcse", r"x.csv:1: empty header line; the first line must name the columns"),
    ("empty-header-tsv", "x.tsv", b"\nA dog.\n", "unsup-simcse", r"x.tsv:1: empty header line"),
    ("latin1-csv", "x.csv", b"sent0,sent1\nCaf\xe9,B\n", "unsup-simcse",
     r"x.csv:2: not valid UTF-8 \(byte 0xe9\)\. Re-save the file as UTF-8\."),
    ("latin1-txt", "x.txt", b"A dog.\nA cat.\nCaf\xe9 au lait.\n", "unsup-simcse",
     r"x.txt:3: not valid UTF-8 \(byte 0xe9\)"),
    ("latin1-tsv-after-bom", "x.tsv", BOM + b"sentence\r\nna\xefve\r\n", "unsup-simcse",
     r"x.tsv:2: not valid UTF-8 \(byte 0xef\)"),
]


@pytest.mark.parametrize("name,data,method,match", [c[1:] for c in TRAINING_FILE_ERRORS],
                         ids=[c[0] for c in TRAINING_FILE_ERRORS])
def test_malformed_training_file_names_file_line_and_fix(tmp_path, tokenizer, name, data, method, match):
    path = write(tmp_path, name, data)
    with pytest.raises(DataFormatError, match=match) as info:
        load(path, tokenizer, method)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_scored_pairs_non_finite_gold_score_names_the_line(tmp_path, score):
    path = write(tmp_path, "p.tsv", f"score\tsentence1\tsentence2\n1.0\tA.\tB.\n{score}\tC.\tD.\n".encode())
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:3: gold score '{score}' is not a finite number; "
                                                        "fix or remove that line.")):
        read_scored_pairs(path)


def test_toy_corpus_non_integer_id_names_the_line(tmp_path):
    path = write(tmp_path, "c.tsv", b"meaning_id\tsentence\n1\tA.\nx\tB.\n")
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:3: expected '<integer id><TAB><sentence>'.")):
        read_toy_corpus(path)


# ------------------------------------------------------------------ configurations
def test_max_length_zero_gives_one_message():
    with pytest.raises(ValueError) as info:
        resolve_config("unsup-simcse-tiny", max_length=0)
    message = str(info.value)
    assert message.count("max_length") == 1 and "must be >= 2" in message


@pytest.mark.parametrize("key,text", [("max_steps", "-1"), ("save_steps", "-2"), ("eval_steps", "0"),
                                      ("log_steps", "0"), ("batch_size", "-1"), ("train_file", "")])
def test_negative_or_empty_values_name_the_key(key, text):
    with pytest.raises(ValueError, match=rf"Invalid training configuration: {key}=") as info:
        resolve_config("unsup-simcse-tiny", [f"{key}={text}"])
    assert str(info.value).count(f"{key}=") == 1


# ------------------------------------------------------------------ CLI
@pytest.mark.parametrize("argv,message", [
    (["--set", "batchsize=32"], "batchsize"),
    (["--set", "max_length=0"], "max_length=0 (must be >= 2"),
])
def test_cli_train_bad_setting_exits_with_usage_before_any_work(argv, message, capsys, monkeypatch):
    import cselab.train as T

    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--preset", "unsup-simcse-tiny", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_train_preset_typo_lists_the_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--preset", "unsup-simcse-cl", "--dry-run"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unsup-simcse-cl" in err and "unsup-simcse-tiny" in err
