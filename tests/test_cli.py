"""The `cselab` command line (eval, download) and the notebook runner's argument handling."""
from __future__ import annotations

import json

import pytest

from cselab import cli, course


def test_eval_prints_table_and_json(shared_data_dir, capsys):
    assert cli.main(["eval", "cselab/tiny", "--pooling", "avg", "--tasks", "STSBenchmark", "SICKRelatedness",
                     "--split", "dev", "--data-dir", str(shared_data_dir), "--json", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "------ dev ------" in out and "STSBenchmark" in out and "SICKRelatedness" in out
    scores = json.loads(out[out.index("{"):])
    assert set(scores) == {"STSBenchmark", "SICKRelatedness", "avg"}
    assert scores["avg"] == pytest.approx((scores["STSBenchmark"] + scores["SICKRelatedness"]) / 2)


def test_eval_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cli.main(["eval", str(tmp_path / "no" / "such" / "model"), "--device", "cpu"])


def test_eval_missing_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="cselab download senteval"):
        cli.main(["eval", "cselab/tiny", "--data-dir", str(tmp_path / "missing"), "--device", "cpu"])


@pytest.mark.parametrize("argv", [["download", "imagenet"], ["eval", "cselab/tiny", "--pooling", "max"],
                                  ["eval", "cselab/tiny", "--tasks", "STS17"], ["frobnicate"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_course_runner_rejects_unknown_chapter(tmp_path, capsys):
    with pytest.raises(SystemExit):
        course.main(["run", str(tmp_path), "--only", "99"])
    assert "no chapter matches" in capsys.readouterr().err


def test_course_subcommand_and_the_others_parse():
    parser = cli.build_parser()
    for argv in (["course", "student", "out"], ["course", "solutions", "out"], ["course", "slides", "out"],
                 ["course", "run", "out", "--profile", "ci", "--only", "01"], ["course", "mark-slides"]):
        args = parser.parse_args(argv)
        assert args.command == "course" and args.course_command == argv[1]
    # the existing subcommands are unchanged
    assert parser.parse_args(["eval", "cselab/tiny"]).command == "eval"
    assert parser.parse_args(["download", "senteval"]).command == "download"
    assert parser.parse_args(["train", "--preset", "unsup-simcse-ci", "--dry-run"]).dry_run


def test_cselab_course_needs_a_subcommand_and_checks_chapters(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["course"])
    assert exc.value.code == 2 and "student" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["course", "run", str(tmp_path), "--only", "99"])
    assert "no chapter matches" in capsys.readouterr().err


def test_cselab_course_solutions_writes_every_chapter(tmp_path, capsys):
    assert cli.main(["course", "solutions", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in course.chapters()]
    assert capsys.readouterr().out.count("wrote ") == len(course.chapters())
