"""Resumable checkpoints: safetensors for tensors, JSON for everything else, atomic writes.

A checkpoint is a folder ``ckpt-<step>/`` holding

- ``model.safetensors``: the trainable modules' state (encoder + method heads);
- ``optimizer.safetensors``: the optimizer's per-parameter tensors (AdamW moments, step);
- ``rng.safetensors``: torch CPU (and CUDA) generator states;
- ``state.json``: step, epoch, position in the epoch's data order, optimizer param groups,
  scheduler state, Python/NumPy RNG states, the configuration, and a SHA-256 of each file.

The folder is written under a temporary name, flushed, and only then renamed; the file
``latest.json`` (replaced atomically) names the newest complete checkpoint. A crash at any
moment therefore leaves the previous checkpoint intact and ``latest.json`` pointing to it.
No pickled objects are written or read.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

LATEST = "latest.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(directory: str | os.PathLike, *, modules: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, step: int, epoch: int, position: int, extra: dict | None = None,
                    keep: int = 1) -> Path:
    """Write ``directory/ckpt-<step>`` atomically and point ``latest.json`` at it.

    Older checkpoints beyond the newest ``keep`` are removed after the new one is complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".ckpt-{step}.", dir=directory))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in modules.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"torch_cuda_{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        np_state = np.random.get_state()
        sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        meta = {
            "step": step, "epoch": epoch, "position": position,
            "optimizer": opt_meta, "scheduler": sched,
            "python_random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "extra": extra or {},
            "sha256": {name: _sha256(tmp / name) for name in ("model.safetensors", "optimizer.safetensors",
                                                              "rng.safetensors")},
        }
        with open(tmp / "state.json", "w", encoding="utf-8") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(directory / LATEST, {"checkpoint": final.name, "step": step})
    older = sorted((p for p in directory.glob("ckpt-*") if p != final), key=lambda p: int(p.name.split("-")[1]))
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint folder ``latest.json`` names, or None if there is none."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text("utf-8"))["checkpoint"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{pointer} is unreadable ({exc}); delete it to start over.") from None
    path = Path(directory) / name
    if not path.is_dir():
        raise CheckpointError(f"{pointer} names {path}, which does not exist.")
    return path


def load_checkpoint(path: str | os.PathLike, *, modules: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler) -> dict:
    """Restore modules, optimizer, scheduler and RNG states; return the JSON state."""
    path = Path(path)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise CheckpointError(f"{state_file} is missing: {path} is not a complete checkpoint.")
    meta = json.loads(state_file.read_text("utf-8"))
    for name, digest in meta["sha256"].items():
        if not (path / name).is_file() or _sha256(path / name) != digest:
            raise CheckpointError(f"{path / name} is missing or corrupt (SHA-256 mismatch); "
                                  "resume from an earlier checkpoint or start over.")
    modules.load_state_dict(load_file(str(path / "model.safetensors")))
    _restore_optimizer(optimizer, load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    sched = dict(meta["scheduler"])
    if hasattr(scheduler, "lr_lambdas"):  # functions are not saved; LambdaLR keeps its own
        sched.setdefault("lr_lambdas", [None] * len(scheduler.lr_lambdas))
    scheduler.load_state_dict(sched)
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(k for k in rng if k.startswith("torch_cuda_"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = meta["python_random"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy_random"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return meta
