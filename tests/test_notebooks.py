"""Chapter notebooks: structure checks, then execution in the `ci` profile with papermill.

Executed copies go to build/notebooks/ci/ (ignored by git); the committed notebooks stay output-free.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from cselab.course import chapters, exercise_labels, parameters_cell, read_notebook, run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = chapters(REPO / "notebooks")
EXPECTED = ["01_contrastive_basics", "02_sentence_embeddings_and_sts", "03_unsup_simcse", "04_sup_simcse",
            "05_esimcse", "06_diffcse", "07_declutr", "08_llm_generated_data", "09_comparison", "10_frontiers"]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_expected_chapters_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names[: len(EXPECTED)] == EXPECTED, names
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", n) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_outputs(path):
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cell_ids_are_unique(path):  # nbformat renames a duplicate at every load, so a copied cell shows up here
    ids = [c.get("id") for c in load(path)["cells"]]
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids {sorted({i for i in ids if ids.count(i) > 1})}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_structure(path):
    cells = load(path)["cells"]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    params = source(cells[tagged[0]])
    assert re.search(r"^PROFILE\s*=", params, re.M), f"{path.name}: parameters cell must set PROFILE"
    assert re.search(r"^SEED\s*=", params, re.M), f"{path.name}: parameters cell must set SEED"
    assert "default_profile()" in params, f"{path.name}: PROFILE must default to cselab.default_profile()"
    after = "".join(source(c) for c in cells[tagged[0] + 1:] if c["cell_type"] == "code")
    assert "resolve_profile(PROFILE" in after, f"{path.name}: a config cell must call cselab.resolve_profile(PROFILE)"
    markdown = [source(c) for c in cells if c["cell_type"] == "markdown"]
    assert markdown and markdown[0].lstrip().startswith("# "), f"{path.name}: must start with a title"
    for heading in ("Summary", "Exercises", "References"):
        assert any(re.search(rf"^#+ .*{heading}", m, re.M) for m in markdown), f"{path.name}: no '{heading}' section"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_have_solutions_and_checks(path):
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    solutions = [i for i, c in enumerate(cells) if "### BEGIN SOLUTION" in source(c)]
    assert len(solutions) >= 3, f"{path.name}: needs at least 3 exercises with solution regions"
    for i in solutions:
        assert "### END SOLUTION" in source(cells[i]), f"{path.name}: unterminated solution region"
        follow = source(cells[i + 1]) if i + 1 < len(cells) else ""
        assert "cselab.exercises.check_" in follow or re.search(r"\bcheck_\w+\(", follow), (
            f"{path.name}: the cell after a solution must call a cselab.exercises check"
        )
    # each solution has its own "### Exercise N.M" heading above it, numbered N.1, N.2, ... in chapter N
    labels = list(exercise_labels(read_notebook(path), path.name).values())  # ValueError names a missing one
    chapter = int(path.name[:2])
    assert labels == [f"Exercise {chapter}.{k}" for k in range(1, len(labels) + 1)], f"{path.name}: {labels}"
    assert len(labels) == len(solutions)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_in_ci_profile(path):
    start = time.perf_counter()
    out = run_notebook(path, REPO / "build" / "notebooks" / "ci", profile="ci")
    elapsed = time.perf_counter() - start
    executed = load(out)
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    print(f"{path.name}: executed in {elapsed:.1f} s -> {out}")
    if "RECORD_ABLATION" in source(parameters_cell(load(path))) and os.environ.get("CSELAB_DATA_DIR"):
        check_recorded_ablation(executed, path.name)


def check_recorded_ablation(executed: dict, name: str, tolerance: float = 1.0) -> None:
    """A chapter that reads recorded ablation seeds used them, and its live seed ends within ``tolerance``
    points of its recorded twin: a recording made by older code, or another setting, fails here."""
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    found = re.findall(r"other seeds recorded .*?ends within ([0-9.]+) points of its recorded run", text)
    assert found, f"{name}: the ablation did not use its recording (make ablations re-records it):\n" + \
        "\n".join(line for line in text.splitlines() if "seed" in line and "live" in line)
    assert all(float(x) <= tolerance for x in found), f"{name}: live seed vs recording differs by {found} points"
