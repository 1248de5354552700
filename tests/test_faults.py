"""Fault suite: what a run guarantees when the machine, the disk, the numbers or the network fail.

New here:

- kill -9 at seeded random moments (inside a training step's forward, or half-way through writing a
  checkpoint), then ``resume=True``: the same history, best model and final weights as an
  uninterrupted run (CPU, tiny model, 12 steps);
- a full disk (``os.write`` raising ``ENOSPC`` in the output directory's write probe) fails before
  any model or data is loaded, and the message says the disk is full and names the folder;
- a NaN or infinite loss stops the run with :class:`cselab.train.NonFiniteLossError` naming the first
  bad step; nothing is written for it, the last good checkpoint stays intact and loadable, and resuming
  from it reproduces the uninterrupted run;
- a download cut off mid-stream (connection reset, or fewer bytes than ``Content-Length``) leaves no
  partial file and no folder behind.

Already tested elsewhere (not repeated here):

- kill -9 at a fixed step, polled from the parent:
  ``tests/test_train.py::test_resume_after_kill_9_equals_uninterrupted``; in-process interrupt:
  ``tests/test_train.py::test_resume_after_interrupt_equals_uninterrupted``, across epochs:
  ``tests/test_train.py::test_resume_across_epochs``, stateful methods:
  ``tests/test_train.py::test_resume_of_stateful_methods_equals_uninterrupted``;
- unwritable output directory / a file in its path fails before training:
  ``tests/test_train.py::test_unwritable_output_dir_fails_before_training``,
  ``tests/test_train.py::test_output_dir_under_a_file_fails_before_training``; a failed start leaves the
  folder usable: ``tests/test_train.py::test_failed_start_does_not_block_the_directory``;
- a disk full *while* writing a checkpoint, or an interrupt during it, keeps the previous checkpoint:
  ``tests/test_checkpoints.py::test_failed_save_leaves_previous_checkpoint``,
  ``tests/test_checkpoints.py::test_interrupt_during_save_leaves_previous_checkpoint``;
- corrupt checkpoint detected by its SHA-256 with a message naming the file:
  ``tests/test_checkpoints.py::test_corrupted_file_is_detected``; missing files / bad ``latest.json``:
  ``tests/test_checkpoints.py::test_missing_files_are_detected``, ``tests/test_checkpoints.py::test_bad_latest_pointer``;
- downloads: HTTP error and checksum mismatch leave nothing:
  ``tests/test_data.py::test_download_http_error_leaves_nothing``,
  ``tests/test_data.py::test_download_checksum_mismatch_leaves_nothing``,
  ``tests/test_data.py::test_download_checksum_mismatch_archive_leaves_nothing``,
  ``tests/test_data.py::test_forced_download_with_bad_checksum_keeps_old_target``; interrupted document
  preprocessing: ``tests/test_data.py::test_write_documents_leaves_no_partial_file``;
- an interrupted LLM generation resumes and cuts a torn last line:
  ``tests/test_llm_data.py::test_cli_generate_killed_and_resumed``,
  ``tests/test_llm_data.py::test_resume_cuts_a_torn_last_line``.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cselab.data as D
import cselab.train as T
from cselab.checkpoints import latest_checkpoint
from cselab.configs import resolve_config

from test_train import CKPT_FILES, assert_same_best, assert_same_final_weights, assert_same_result, read_jsonl

SETTINGS = dict(max_steps=12, save_steps=3, eval_steps=4, log_steps=2)
# Seeded choice of kill moments: (step during which the process dies, where). Set CSELAB_FAULT_SEED to
# draw others; the default seed keeps CI reproducible.
_rng = random.Random(int(os.environ.get("CSELAB_FAULT_SEED", "8")))
KILLS = [(_rng.randint(1, 12), "forward"), (_rng.choice([3, 6, 9]), "checkpoint")]


pytestmark = pytest.mark.usefixtures("datasets_cache")  # conftest.py: a cache per module


def config():
    return resolve_config("unsup-simcse-tiny", **SETTINGS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, datasets_cache):
    return T.train(config(), tmp_path_factory.mktemp("uninterrupted") / "run", progress=False)


# ------------------------------------------------------------------ kill -9 at random moments
KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import cselab.checkpoints as C
    import cselab.train as T
    from cselab.configs import resolve_config

    out, kill_step, where, settings = sys.argv[1], int(sys.argv[2]), sys.argv[3], eval(sys.argv[4])
    calls = {"loss": 0, "save": 0}
    real_build, real_save_file = T.build_method, C.save_file

    def build(cfg, encoder):
        method = real_build(cfg, encoder)
        real_loss = method.loss

        def loss(encoder, rows):
            calls["loss"] += 1  # the loss of step n is the n-th call
            if where == "forward" and calls["loss"] == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_loss(encoder, rows)

        method.loss = loss
        return method

    def save_file(tensors, path, *args, **kwargs):
        real_save_file(tensors, path, *args, **kwargs)
        # model.safetensors of the checkpoint of kill_step is on disk, the rest is not
        if where == "checkpoint" and calls["loss"] == kill_step and path.endswith("model.safetensors"):
            os.kill(os.getpid(), signal.SIGKILL)

    T.build_method, C.save_file = build, save_file
    T.train(resolve_config("unsup-simcse-tiny", **settings), out, progress=False)
""")


@pytest.mark.slow  # kept out of `make test-fast` (seconds of training or subprocesses)
@pytest.mark.parametrize("kill_step,where", KILLS, ids=[f"step{s}-{w}" for s, w in KILLS])
def test_kill_9_at_a_random_moment_then_resume_equals_uninterrupted(tmp_path, uninterrupted, kill_step, where):
    out = tmp_path / "killed"
    env = dict(os.environ, CI="1", TOKENIZERS_PARALLELISM="false")
    log = tmp_path / "child.log"
    with open(log, "wb") as sink:
        proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(out), str(kill_step), where, repr(SETTINGS)],
                              cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    ckpt = latest_checkpoint(out)
    newest_complete = (kill_step - 1) // 3 * 3  # the checkpoint being written when killed does not count
    assert (ckpt.name if ckpt else None) == (f"ckpt-{newest_complete}" if newest_complete else None)
    if ckpt is not None:
        assert {p.name for p in ckpt.iterdir()} == CKPT_FILES
    half_written = [p for p in out.iterdir() if p.name.startswith(f".ckpt-{kill_step}.")]
    assert len(half_written) == (where == "checkpoint")  # killed mid-write: only a temporary folder

    resumed = T.train(config(), out, resume=True, progress=False)
    assert_same_result(resumed, uninterrupted)
    assert read_jsonl(out / "metrics.jsonl") == resumed.history
    assert_same_final_weights(out, uninterrupted.output_dir)
    assert_same_best(out / "best", uninterrupted.best_dir)


# ------------------------------------------------------------------ full disk
def test_full_disk_fails_before_training_naming_the_folder(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("training started although the disk is full")

    monkeypatch.setattr(T.SentenceEncoder, "from_pretrained", forbidden)
    monkeypatch.setattr(T, "load_training_data", forbidden)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    out = tmp_path / "run"
    with pytest.raises(OSError) as info:
        T.train(config(), out, progress=False)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "disk is full" in message and str(out) in message and "Free some space" in message
    assert list(out.iterdir()) == []  # no probe, no config: nothing claims the folder


# ------------------------------------------------------------------ NaN / inf loss
def poisoned_method(monkeypatch, bad_step: int, value: float):
    real_build = T.build_method
    calls = {"n": 0}

    def build(cfg, encoder):
        method = real_build(cfg, encoder)
        real_loss = method.loss

        def loss(encoder, rows):
            calls["n"] += 1
            result = real_loss(encoder, rows)
            return result * value if calls["n"] >= bad_step else result  # once bad, stays bad

        method.loss = loss
        return method

    monkeypatch.setattr(T, "build_method", build)


@pytest.mark.parametrize("bad_step,value,checked_at,good_ckpt", [(5, math.nan, 6, 3), (7, math.inf, 8, 6)],
                         ids=["nan", "inf"])
@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch, uninterrupted, bad_step, value, checked_at, good_ckpt):
    out = tmp_path / "run"
    poisoned_method(monkeypatch, bad_step, value)
    with pytest.raises(T.NonFiniteLossError) as info:
        T.train(config(), out, progress=False)
    message = str(info.value)
    assert f"NaN or infinite at step {bad_step}" in message and f"stopped at step {checked_at}" in message
    ckpt = latest_checkpoint(out)
    assert ckpt.name == f"ckpt-{good_ckpt}" and str(ckpt) in message and "resume" in message
    assert sorted(p.name for p in out.glob("ckpt-*")) == [f"ckpt-{good_ckpt}"]
    weights = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[-1]["step"] < bad_step and all(math.isfinite(r.get("loss", 0.0)) for r in rows)
    assert not (out / T.RESULT_FILE).exists()

    monkeypatch.undo()  # the real loss again
    resumed = T.train(config(), out, resume=True, progress=False)  # loads (SHA-256 checked) and finishes
    assert_same_result(resumed, uninterrupted)
    assert_same_final_weights(out, uninterrupted.output_dir)


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """Finite loss but weights broken by the update (e.g. an overflowing optimizer state)."""
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(math.inf)
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    out = tmp_path / "run"
    with pytest.raises(T.NonFiniteLossError, match=r"weights became NaN or infinite at step (2|3)"):
        T.train(resolve_config("unsup-simcse-tiny", max_steps=6, save_steps=1, eval_steps=6, log_steps=6), out,
                progress=False)
    assert latest_checkpoint(out).name == "ckpt-1"


# ------------------------------------------------------------------ interrupted download
class _Response(io.BytesIO):
    def __init__(self, body: bytes, length: int, fail_after: int | None):
        super().__init__(body)
        self.headers = {"Content-Length": str(length)}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        return super().read(min(size, 1000) if size and size > 0 else size)


@pytest.mark.parametrize("length,fail_after,match", [(5000, 2000, "reset"), (5000, None, "interrupted: got 3000 of 5000")],
                         ids=["connection-reset", "short-body"])
def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch, length, fail_after, match):
    body = b"x" * 3000
    monkeypatch.setattr(D.urllib.request, "urlopen", lambda url, timeout=None: _Response(body, length, fail_after))
    dest = tmp_path / "root"
    with pytest.raises(OSError, match=match):
        D.download("wiki1m", dest, url="http://example.invalid/wiki1m.txt", progress=False)
    assert not dest.exists() or not any(dest.rglob("*"))  # no target, no .part file, no folder it made
