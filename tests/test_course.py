"""cselab.course: student copies (solution regions stubbed) and the chapter list."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cselab.exercises
from cselab.course import STUB, chapters, stub_solutions, student_copy

REPO = Path(__file__).resolve().parents[1]


def test_stub_keeps_the_indentation_and_the_rest_of_the_cell():
    source = ("def f(x):\n"
              "    \"\"\"doc\"\"\"\n"
              "    ### BEGIN SOLUTION\n"
              "    y = x + 1\n"
              "    return y\n"
              "    ### END SOLUTION\n"
              "\n"
              "print('after')\n")
    want = ("def f(x):\n"
            "    \"\"\"doc\"\"\"\n"
            "    raise NotImplementedError  # your solution here\n"
            "\n"
            "print('after')\n")
    assert stub_solutions(source) == want


def test_two_regions_and_top_level_region():
    source = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n  ### BEGIN SOLUTION\n  c\n  ### END SOLUTION\n"
    assert stub_solutions(source) == f"{STUB}\nb = 2\n  {STUB}\n"


def test_cell_without_region_is_unchanged():
    source = "x = 1  # ### BEGIN SOLUTION is only a marker on its own line\nprint(x)"
    assert stub_solutions(source) == source


@pytest.mark.parametrize("source,message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "line 2"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "line 2"),
])
def test_unbalanced_markers_name_the_place(source, message):
    with pytest.raises(ValueError, match=message) as info:
        stub_solutions(source, "07_x.ipynb cell 3")
    assert "07_x.ipynb cell 3" in str(info.value)


def _code(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_student_copy_hides_every_solution_and_the_checks_say_not_implemented(path, tmp_path):
    original = json.loads(path.read_text("utf-8"))["cells"]
    copy = json.loads(student_copy(path, tmp_path).read_text("utf-8"))["cells"]
    assert len(copy) == len(original)
    solved = [i for i, c in enumerate(original) if "### BEGIN SOLUTION" in _code(c)]
    assert solved, f"{path.name} has no exercise"
    for i, (before, after) in enumerate(zip(original, copy)):
        if before["cell_type"] != "code":
            assert after == before
            continue
        text = _code(after)
        assert after["outputs"] == [] and after["execution_count"] is None
        if i not in solved:
            assert text == _code(before)
            continue
        assert "SOLUTION" not in text and STUB in text
        ast.parse(text)  # still valid Python
        # the hidden lines are gone: none of the solution's own lines survives
        body = _code(before).split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        for line in body.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                assert line not in text.splitlines(), (path.name, i, line)
        # the learner's function now raises, and the chapter's own check says so
        check = re.search(r"(?:cselab\.exercises\.)?\b(check_\w+)\((\w+)\)", _code(copy[i + 1]))
        assert check, f"{path.name} cell {i + 1}: no check call"
        namespace: dict = {}
        exec(compile(text, f"{path.name} cell {i}", "exec"), namespace)
        with pytest.raises(AssertionError, match="not implemented yet"):
            getattr(cselab.exercises, check.group(1))(namespace[check.group(2)])


def test_course_student_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cselab.course", "student", str(tmp_path / "student")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [p.name for p in chapters()]
    assert (REPO / "notebooks").is_dir() and all(
        "### BEGIN SOLUTION" in p.read_text("utf-8") for p in chapters())  # originals untouched


def test_run_notebook_makes_a_relative_data_dir_absolute(tmp_path, monkeypatch):
    """The kernel's working directory is notebooks/: a relative CSELAB_DATA_DIR must not change meaning."""
    import papermill

    import cselab.course as course

    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CSELAB_DATA_DIR", "some/data")
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.update(env=os.environ["CSELAB_DATA_DIR"]))
    course.run_notebook(chapters()[0], tmp_path / "out", profile="ci")
    assert seen["env"] == str(tmp_path / "some" / "data")
