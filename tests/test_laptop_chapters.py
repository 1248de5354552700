"""The ``laptop`` and ``full`` chapters, executed offline against a Hugging Face cache of stand-ins.

Every hub id the presets and profiles name (tests/hub_standins.py:hub_ids, so a new preset is covered
automatically), plus the chapters' LLM (``HuggingFaceTB/SmolLM2-135M-Instruct``), gets a tiny random
checkpoint of the right architecture in a temporary ``HF_HOME``; ``HF_HUB_OFFLINE=1``. The data root is
the shared data, with the registry files the ``laptop`` presets would download stood in for by shared files
of the same format (:func:`hub_standins.laptop_data_root`).

- ``laptop``: every chapter runs whole with ``PROFILE="laptop"``. ``$CSELAB_MAX_STEPS=2`` (test-only,
  :func:`cselab.profiles.step_cap`) caps every training run and every local LLM generation inside cselab, so
  the chapters run their own laptop code unchanged. Chapters 08 and 10 get the stand-in LLM through their
  ``LLM`` parameter.
- ``full``: every chapter's cells up to its first training run execute with ``PROFILE="full"`` (on the CPU);
  chapters 01 and 02 train nothing and run whole. The paper presets' training itself is covered by
  tests/test_hub_standins.py (2 steps each through the CLI).

What this proves: the laptop/full code paths (hub ids, presets, data registry, chapter branches) run. What it
does not: real weights, real scores, real runtimes. Executed copies go to build/notebooks/{laptop,full}/.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

from cselab.course import chapters, run_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_standins as H  # noqa: E402

REPO = H.REPO
NOTEBOOKS = chapters(REPO / "notebooks")
TRAINING_CALL = re.compile(r"run_or_load\(|load_or_train\(|train\.train\(")
FALLBACK = "falling back to"  # resolve_profile's and the chapters' one-line fallback messages


@pytest.fixture(scope="module")
def offline_hub(tmp_path_factory, shared_data_dir):
    """A stand-in hub cache + laptop data root, and the environment the chapters' kernels inherit."""
    shared = shared_data_dir.resolve()
    tmp = tmp_path_factory.mktemp("offline_hub")
    H.build_hub_cache(tmp / "home")
    with tempfile.TemporaryDirectory() as staging:
        H.add_to_cache(tmp / "home", H.CHAT_LM, H.write_chat_standin(Path(staging) / "chat"))
    data = H.laptop_data_root(tmp / "data", shared)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in H.offline_env(tmp / "home").items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT", "CSELAB_PROFILE"):
            mp.delenv(key, raising=False)
        mp.setenv("CSELAB_DATA_DIR", str(data))
        mp.setenv("HF_DATASETS_CACHE", str(tmp / "datasets"))
        mp.setenv("CSELAB_MAX_STEPS", "2")
        yield tmp


def parameters_of(nb: dict) -> str:
    return next("".join(c["source"]) for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))


def chapter_parameters(nb: dict, runs: Path, stem: str) -> dict:
    """RUN_DIR into the test's folder, LLM = the stand-in chat model, where the chapter has these parameters."""
    params = parameters_of(nb)
    out = {}
    if re.search(r"^RUN_DIR\s*=", params, re.M):
        out["RUN_DIR"] = str(runs / stem)
    if re.search(r"^LLM\s*=", params, re.M):
        out["LLM"] = H.CHAT_LM
    return out


def outputs(nb: dict) -> tuple[str, list[dict]]:
    """(all stream/text output, error outputs) of an executed notebook."""
    text, errors = [], []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if o.get("output_type") == "error":
                errors.append(o)
            text.append("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(text), errors


def until_first_training(nb: dict) -> tuple[dict, int]:
    """A copy of ``nb`` without the code cell that first trains and everything after it; (copy, cells kept)."""
    cells = nb["cells"]
    cut = next((i for i, c in enumerate(cells) if c["cell_type"] == "code" and TRAINING_CALL.search("".join(c["source"]))),
               len(cells))
    return {**nb, "cells": cells[:cut]}, cut


def test_until_first_training_cuts_at_the_training_call():
    def cell(kind, text):
        return {"cell_type": kind, "metadata": {}, "source": [text]}

    nb = {"cells": [cell("code", "x = 1"), cell("markdown", "call run_or_load(...) below"),
                    cell("code", "run = cselab.train.run_or_load(config)"), cell("code", "print(run)")]}
    assert until_first_training(nb)[1] == 2
    assert until_first_training({"cells": nb["cells"][:2]})[1] == 2  # nothing trains: the whole notebook


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_in_laptop_profile_offline(offline_hub, path):
    nb = json.loads(path.read_text("utf-8"))
    executed = run_notebook(path, REPO / "build" / "notebooks" / "laptop", profile="laptop",
                            **chapter_parameters(nb, offline_hub / "runs", path.stem))
    text, errors = outputs(json.loads(executed.read_text("utf-8")))
    assert not errors, errors
    assert FALLBACK not in text, f"{path.name} fell back instead of running the laptop profile:\n{text[:3000]}"
    assert re.search(r"profile\W+laptop", text), f"{path.name} does not print its profile:\n{text[:2000]}"
    for noise in ("LOAD REPORT", "Loading weights"):  # transformers' per-load tables and bars, on hub checkpoints
        assert noise not in text, f"{path.name} prints {noise!r}:\n{text[text.find(noise) - 500:][:1500]}"
    if TRAINING_CALL.search(json.dumps(nb)):  # every training run went through the (capped) trainer
        assert "$CSELAB_MAX_STEPS=2: stopping after 2 of" in text, text[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_full_chapter_runs_until_its_first_training(offline_hub, path, tmp_path):
    nb = json.loads(path.read_text("utf-8"))
    head, kept = until_first_training(nb)
    assert kept > 4, f"{path.name}: trains before its configuration cells?"
    copy = tmp_path / path.name
    copy.write_text(json.dumps(head), "utf-8")
    executed = run_notebook(copy, REPO / "build" / "notebooks" / "full", profile="full",
                            **chapter_parameters(nb, offline_hub / "runs-full", path.stem))
    text, errors = outputs(json.loads(executed.read_text("utf-8")))
    assert not errors, errors
    assert FALLBACK not in text, f"{path.name} fell back instead of running the full profile:\n{text[:3000]}"
    assert re.search(r"profile\W+full", text), text[:2000]
