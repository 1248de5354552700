"""fp32 equality guard for speed work: 20 unsup SimCSE steps on CPU must reproduce the committed losses.

``tests/reference_losses.json`` was produced by the trainer before any speed work (its ``made_with``
says how); a change that alters the arithmetic of a training step (fused kernels, a different
loss formulation, reordered reductions) shows up here as a difference above 1e-6.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cselab.configs import resolve_config
from cselab.train import train

REFERENCE = Path(__file__).with_name("reference_losses.json")


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")


def test_twenty_fp32_cpu_steps_equal_the_committed_losses(tmp_path, datasets_cache):
    reference = json.loads(REFERENCE.read_text("utf-8"))
    config = resolve_config(reference["config"]["preset"],
                            **{k: v for k, v in reference["config"].items() if k != "preset"})
    result = train(config, tmp_path / "run", progress=False)
    losses = [row["loss"] for row in result.history if "loss" in row]
    assert len(losses) == len(reference["losses"]) == 20
    for step, (got, want) in enumerate(zip(losses, reference["losses"]), start=1):
        assert got == pytest.approx(want, rel=0, abs=reference["tolerance"]), f"step {step}"
