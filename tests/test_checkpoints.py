"""Resumable checkpoints (cselab.checkpoints): exact round trips, atomicity, integrity, no pickle."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cselab import checkpoints as C
from cselab.checkpoints import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint

FILES = {"model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"}
TOTAL = 20


def make_scheduler(kind: str, optimizer):
    if kind == "lambda":  # what cselab.train uses: linear decay to 0 without warm-up
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (TOTAL - s) / TOTAL))
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=TOTAL)


def make_run(kind: str = "lambda", seed: int = 0):
    """A small module + AdamW + scheduler; different seeds give different weights."""
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    return module, optimizer, make_scheduler(kind, optimizer)


def train_step(module, optimizer, scheduler) -> None:
    """One step whose input comes from the global torch RNG (so RNG restoration matters)."""
    x = torch.randn(5, 4)
    loss = module(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def save(directory, run, step, **kwargs):
    module, optimizer, scheduler = run
    return save_checkpoint(directory, modules=module, optimizer=optimizer, scheduler=scheduler, step=step,
                           epoch=0, position=step, **kwargs)


def jsonable(value):
    """param_groups after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(value))


def snapshot_rng():
    return torch.get_rng_state().clone(), random.getstate(), np.random.get_state()


def restore_rng(states) -> None:
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """These tests play with the global RNGs; leave them as they found them."""
    states = snapshot_rng()
    yield
    restore_rng(states)


@pytest.mark.parametrize("kind", [
    "lambda",
    "linear",
])
def test_round_trip_restores_everything_exactly(tmp_path, kind):
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    run = make_run(kind, seed=0)
    for _ in range(3):
        train_step(*run)
    ckpt = save(tmp_path, run, step=3, extra={"note": "hello", "history": [{"step": 1, "loss": 0.5}]})
    module, optimizer, scheduler = run
    params = {k: v.clone() for k, v in module.state_dict().items()}
    opt_state = {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                 for i, s in optimizer.state_dict()["state"].items()}
    groups = jsonable(optimizer.state_dict()["param_groups"])
    last_epoch, last_lr = scheduler.last_epoch, scheduler.get_last_lr()
    rng = snapshot_rng()
    expected_draws = (torch.rand(4), random.random(), np.random.rand(3))
    restore_rng(rng)
    train_step(*run)  # the step an uninterrupted run takes next
    expected_next = {k: v.clone() for k, v in module.state_dict().items()}

    # move everything on, then restore into fresh objects with other weights
    for _ in range(2):
        train_step(*run)
    torch.manual_seed(999)
    random.seed(999)
    np.random.seed(999)
    fresh = make_run(kind, seed=1)
    assert not torch.equal(fresh[0][0].weight, params["0.weight"])
    meta = load_checkpoint(ckpt, modules=fresh[0], optimizer=fresh[1], scheduler=fresh[2])
    assert (meta["step"], meta["epoch"], meta["position"]) == (3, 0, 3)
    assert meta["extra"] == {"note": "hello", "history": [{"step": 1, "loss": 0.5}]}

    module2, optimizer2, scheduler2 = fresh
    for k, v in module2.state_dict().items():
        assert torch.equal(v, params[k]), k
    state2 = optimizer2.state_dict()
    assert set(state2["state"]) == set(opt_state)
    for i, values in opt_state.items():
        assert set(state2["state"][i]) == set(values)
        for name, value in values.items():
            got = state2["state"][i][name]
            if torch.is_tensor(value):
                assert got.dtype == value.dtype and torch.equal(got, value), (i, name)
            else:
                assert got == value, (i, name)
    assert jsonable(state2["param_groups"]) == groups
    assert optimizer2.param_groups[0]["lr"] == last_lr[0]
    assert scheduler2.last_epoch == last_epoch == 3
    assert scheduler2.get_last_lr() == last_lr

    # RNG: the next draws are those that followed the save
    t, p, n = torch.rand(4), random.random(), np.random.rand(3)
    assert torch.equal(t, expected_draws[0])
    assert p == expected_draws[1]
    assert np.array_equal(n, expected_draws[2])

    # and the continued run takes exactly the uninterrupted run's next step
    restore_rng(rng)
    train_step(*fresh)
    for k, v in module2.state_dict().items():
        assert torch.equal(v, expected_next[k]), k
    assert scheduler2.last_epoch == 4


def test_latest_points_to_newest_and_keep(tmp_path):
    run = make_run("linear")
    assert latest_checkpoint(tmp_path) is None
    for step in (8, 9, 10, 11):  # 10 and 11 sort before 8 and 9 as strings
        train_step(*run)
        final = save(tmp_path, run, step, keep=2)
        assert final == tmp_path / f"ckpt-{step}"
        assert latest_checkpoint(tmp_path) == final
        assert json.loads((tmp_path / "latest.json").read_text()) == {"checkpoint": f"ckpt-{step}", "step": step}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-10", "ckpt-11", "latest.json"]
    save(tmp_path, run, 12)  # keep=1 (the trainer's default): only the newest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-12", "latest.json"]
    save(tmp_path, run, 12)  # saving the same step again replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-12", "latest.json"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-12"


def test_only_safetensors_and_json(tmp_path):
    run = make_run("linear")
    train_step(*run)
    ckpt = save(tmp_path, run, 1, extra={"config": {"method": "unsup-simcse"}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1", "latest.json"]
    assert {p.name for p in ckpt.iterdir()} == FILES
    assert all(p.is_file() for p in ckpt.iterdir())
    for name in FILES - {"state.json"}:
        assert load_file(str(ckpt / name))  # plain safetensors, no pickle
        assert not (ckpt / name).read_bytes().startswith(b"\x80")  # not a pickle stream
    state = json.loads((ckpt / "state.json").read_text("utf-8"))
    assert set(state["sha256"]) == FILES - {"state.json"}
    assert state["extra"] == {"config": {"method": "unsup-simcse"}}
    json.loads((tmp_path / "latest.json").read_text("utf-8"))


def test_corrupted_file_is_detected(tmp_path):
    run = make_run("linear")
    train_step(*run)
    ckpt = save(tmp_path, run, 1)
    target = ckpt / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) - 3] ^= 0xFF  # a weight byte: safetensors itself would still load it
    target.write_bytes(bytes(data))
    fresh = make_run("linear", seed=1)
    before = {k: v.clone() for k, v in fresh[0].state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt, modules=fresh[0], optimizer=fresh[1], scheduler=fresh[2])
    assert str(target) in str(info.value) and "SHA-256" in str(info.value)
    for k, v in fresh[0].state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])


def test_missing_files_are_detected(tmp_path):
    run = make_run("linear")
    train_step(*run)
    ckpt = save(tmp_path, run, 1)
    fresh = make_run("linear", seed=1)
    (ckpt / "rng.safetensors").unlink()
    with pytest.raises(CheckpointError, match="rng.safetensors"):
        load_checkpoint(ckpt, modules=fresh[0], optimizer=fresh[1], scheduler=fresh[2])
    (ckpt / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(ckpt, modules=fresh[0], optimizer=fresh[1], scheduler=fresh[2])


def test_bad_latest_pointer(tmp_path):
    run = make_run("linear")
    save(tmp_path, run, 1)
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "ckpt-7", "step": 7}))
    with pytest.raises(CheckpointError, match="ckpt-7"):
        latest_checkpoint(tmp_path)
    (tmp_path / "latest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="latest.json"):
        latest_checkpoint(tmp_path)


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    run = make_run("linear")
    train_step(*run)
    first = save(tmp_path, run, 2)
    pointer = (tmp_path / "latest.json").read_bytes()
    files = {p.name: p.read_bytes() for p in first.iterdir()}

    real_save_file = C.save_file

    def failing(tensors, filename, *args, **kwargs):
        if filename.endswith("optimizer.safetensors"):
            raise OSError("disk full (simulated)")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(C, "save_file", failing)
    train_step(*run)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, run, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2", "latest.json"]  # no temporary folder
    assert (tmp_path / "latest.json").read_bytes() == pointer
    assert {p.name: p.read_bytes() for p in first.iterdir()} == files
    assert latest_checkpoint(tmp_path) == first
    fresh = make_run("linear", seed=1)
    assert load_checkpoint(first, modules=fresh[0], optimizer=fresh[1], scheduler=fresh[2])["step"] == 2

    monkeypatch.setattr(C, "save_file", real_save_file)  # and the next save works
    assert save(tmp_path, run, 4) == tmp_path / "ckpt-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-4", "latest.json"]


def test_interrupt_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    """KeyboardInterrupt (Ctrl-C) while writing state.json: same guarantees."""
    run = make_run("linear")
    first = save(tmp_path, run, 2)
    pointer = (tmp_path / "latest.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(C.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, run, 4)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2", "latest.json"]
    assert (tmp_path / "latest.json").read_bytes() == pointer
    assert latest_checkpoint(tmp_path) == first
