"""cselab.distributed.gather_with_grad in a real 2-process gloo group on CPU (reference/methods.md §4).

Two processes each hold their slice (B_local = 3, dim 8, float64) of one global batch, gather
with gradient, and compute ``cselab.losses.info_nce`` over the global batch. The parent compares
every rank's loss and local gradients with one process computing the same loss on the
concatenated batch:

- every rank computes the *same* global loss;
- each rank's gradient on its local rows equals the single-process gradient of the global loss
  on those rows (the local rows reach the loss through their own logit rows and, as negatives,
  through the columns inside the other rank's rows; the other rank's copy is a constant);
- a parameter shared by both ranks (a linear layer applied before the gather) gets, on each
  rank, only the part of the gradient that flows through the local rows. DDP all-reduces and
  *averages* over the N = 2 ranks, so the update is (1/N) x the single-process gradient -- the
  1/N scale of SimCSE that DeCLUTR's ``scale_fix`` (loss x world_size) undoes.

The expectations come from plain single-process autograd on the concatenated batch
(``gather_with_grad`` is the identity there).
"""
from __future__ import annotations

import math
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch

WORLD = 2
B_LOCAL = 3
DIM = 8
IN_DIM = 5
TAU = 0.05
# (name, uses hard negatives, hard_negative_weight)
CASES = [("unsup", False, 0.0), ("sup", True, 0.0), ("sup_log2", True, math.log(2.0)), ("sup_neg", True, -1.5)]
JOIN_TIMEOUT_S = 60


def _global_data():
    g = torch.Generator().manual_seed(1234)
    b = WORLD * B_LOCAL
    return {
        "anchors": torch.randn(b, DIM, generator=g, dtype=torch.float64),
        "positives": torch.randn(b, DIM, generator=g, dtype=torch.float64),
        "negatives": torch.randn(b, DIM, generator=g, dtype=torch.float64),
        # raw inputs of the shared-linear-layer case
        "x_anchors": torch.randn(b, IN_DIM, generator=g, dtype=torch.float64),
        "x_positives": torch.randn(b, IN_DIM, generator=g, dtype=torch.float64),
        "x_negatives": torch.randn(b, IN_DIM, generator=g, dtype=torch.float64),
    }


def _linear() -> torch.nn.Linear:
    """The same weights on every rank and in the single-process reference (as after DDP's broadcast)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        return torch.nn.Linear(IN_DIM, DIM).double()


def _loss(a, p, n, sup: bool, weight: float):
    from cselab.losses import info_nce

    if sup:
        return info_nce(a, p, temperature=TAU, negatives=n, hard_negative_weight=weight)
    return info_nce(a, p, temperature=TAU)


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One rank: runs every case in the process group and writes its results with torch.save."""
    import torch.distributed as dist

    from cselab.distributed import gather_with_grad, is_distributed
    from cselab.distributed import rank as dist_rank
    from cselab.distributed import world_size

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30))
    try:
        results = {"is_distributed": is_distributed(), "rank": dist_rank(), "world_size": world_size()}
        data = _global_data()
        rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        for name, sup, weight in CASES:
            a = data["anchors"][rows].clone().requires_grad_()
            p = data["positives"][rows].clone().requires_grad_()
            n = data["negatives"][rows].clone().requires_grad_()
            ga, gp = gather_with_grad(a), gather_with_grad(p)
            gn = gather_with_grad(n) if sup else None
            loss = _loss(ga, gp, gn, sup, weight)
            loss.backward()
            results[name] = {
                "gathered_shape": tuple(ga.shape),
                "gathered": (ga.detach(), gp.detach()),
                "loss": loss.detach(),
                "grad_a": a.grad, "grad_p": p.grad, "grad_n": n.grad if sup else None,
            }
            # a shared layer before the gather: local (per-rank) parameter gradients, with and without
            # scale_fix (loss x world_size), before any all-reduce
            for scale_fix in (False, True):
                lin = _linear()
                za = lin(data["x_anchors"][rows])
                zp = lin(data["x_positives"][rows])
                zn = lin(data["x_negatives"][rows]) if sup else None
                lin_loss = _loss(gather_with_grad(za), gather_with_grad(zp),
                                 gather_with_grad(zn) if sup else None, sup, weight)
                if scale_fix:
                    lin_loss = lin_loss * world_size()
                lin_loss.backward()
                key = "linear_scaled" if scale_fix else "linear"
                results[name][key] = {"loss": lin_loss.detach(), "weight": lin.weight.grad.clone(),
                                      "bias": lin.bias.grad.clone()}
                # what DDP does: all-reduce (sum) and divide by the world size
                averaged = [lin.weight.grad.clone(), lin.bias.grad.clone()]
                for t in averaged:
                    dist.all_reduce(t)
                    t /= world_size()
                results[name][key + "_allreduced"] = averaged
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    """Spawn 2 gloo processes once; returns [results of rank 0, results of rank 1]."""
    import torch.multiprocessing as mp

    out_dir = tmp_path_factory.mktemp("ddp")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out_dir)), daemon=True) for r in range(WORLD)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(timeout=JOIN_TIMEOUT_S)
    finally:
        hung = [p for p in procs if p.is_alive()]
        for proc in hung:
            proc.terminate()
            proc.join(timeout=5)
    assert not hung, f"distributed workers did not finish within {JOIN_TIMEOUT_S}s"
    assert [p.exitcode for p in procs] == [0] * WORLD, f"worker exit codes {[p.exitcode for p in procs]}"
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _single_process(name: str, sup: bool, weight: float):
    """The whole batch in one process: loss, gradients of every row, and of the shared linear layer."""
    data = _global_data()
    a = data["anchors"].clone().requires_grad_()
    p = data["positives"].clone().requires_grad_()
    n = data["negatives"].clone().requires_grad_()
    loss = _loss(a, p, n if sup else None, sup, weight)
    loss.backward()
    lin = _linear()
    lin_loss = _loss(lin(data["x_anchors"]), lin(data["x_positives"]),
                     lin(data["x_negatives"]) if sup else None, sup, weight)
    lin_loss.backward()
    return {"loss": loss.detach(), "grad_a": a.grad, "grad_p": p.grad, "grad_n": n.grad if sup else None,
            "lin_loss": lin_loss.detach(), "lin_weight": lin.weight.grad, "lin_bias": lin.bias.grad}


def _close(x, y, tol=1e-10):
    return torch.allclose(x, y, rtol=tol, atol=tol)


def test_workers_ran_in_a_process_group(rank_results):
    for r, res in enumerate(rank_results):
        assert res["is_distributed"] and res["rank"] == r and res["world_size"] == WORLD


@pytest.mark.parametrize("name,sup,weight", CASES, ids=[c[0] for c in CASES])
def test_gather_builds_the_global_batch(rank_results, name, sup, weight):
    data = _global_data()
    for res in rank_results:
        assert res[name]["gathered_shape"] == (WORLD * B_LOCAL, DIM)
        ga, gp = res[name]["gathered"]
        assert torch.equal(ga, data["anchors"]) and torch.equal(gp, data["positives"])  # rank order


@pytest.mark.parametrize("name,sup,weight", CASES, ids=[c[0] for c in CASES])
def test_every_rank_computes_the_global_loss(rank_results, name, sup, weight):
    ref = _single_process(name, sup, weight)
    for res in rank_results:
        assert abs(res[name]["loss"].item() - ref["loss"].item()) < 1e-10
        assert abs(res[name]["linear"]["loss"].item() - ref["lin_loss"].item()) < 1e-10
    # a rank's slice alone would give a different (local-negatives-only) loss
    data = _global_data()
    local = _loss(data["anchors"][:B_LOCAL], data["positives"][:B_LOCAL],
                  data["negatives"][:B_LOCAL] if sup else None, sup, weight)
    assert abs(local.item() - ref["loss"].item()) > 1e-3


@pytest.mark.parametrize("name,sup,weight", CASES, ids=[c[0] for c in CASES])
def test_local_gradients_are_the_global_loss_gradients_of_local_rows(rank_results, name, sup, weight):
    ref = _single_process(name, sup, weight)
    keys = ("grad_a", "grad_p", "grad_n") if sup else ("grad_a", "grad_p")
    for r, res in enumerate(rank_results):
        rows = slice(r * B_LOCAL, (r + 1) * B_LOCAL)
        for key in keys:
            got = res[name][key]
            assert got is not None and got.shape == (B_LOCAL, DIM)
            assert _close(got, ref[key][rows]), (name, r, key)
            assert got.abs().max() > 0
    # Each rank's optimizer sees these gradients only after DDP's all-reduce *average* over the 2
    # ranks; for a weight shared by the ranks that is (1/2) x the single-process gradient (reference
    # §4), checked on a real shared layer below.


@pytest.mark.parametrize("name,sup,weight", CASES, ids=[c[0] for c in CASES])
def test_ddp_average_of_shared_layer_is_half_the_single_process_gradient(rank_results, name, sup, weight):
    ref = _single_process(name, sup, weight)
    w0, w1 = (res[name]["linear"]["weight"] for res in rank_results)
    b0, b1 = (res[name]["linear"]["bias"] for res in rank_results)
    # each rank holds the part of the gradient that flows through its own rows: they sum to the full one
    assert _close(w0 + w1, ref["lin_weight"]) and _close(b0 + b1, ref["lin_bias"])
    assert not _close(w0, ref["lin_weight"], 1e-3)
    # DDP averages: (1/N) x the single-process gradient (SimCSE's behaviour)
    assert _close((w0 + w1) / WORLD, ref["lin_weight"] / 2) and _close((b0 + b1) / WORLD, ref["lin_bias"] / 2)
    for res in rank_results:  # the real all_reduce / world_size, as in cselab.train
        aw, ab = res[name]["linear_allreduced"]
        assert _close(aw, ref["lin_weight"] / 2) and _close(ab, ref["lin_bias"] / 2)


@pytest.mark.parametrize("name,sup,weight", CASES, ids=[c[0] for c in CASES])
def test_scale_fix_restores_the_single_process_gradient(rank_results, name, sup, weight):
    ref = _single_process(name, sup, weight)
    for res in rank_results:
        scaled = res[name]["linear_scaled"]
        assert abs(scaled["loss"].item() - WORLD * ref["lin_loss"].item()) < 1e-9
        aw, ab = res[name]["linear_scaled_allreduced"]
        assert _close(aw, ref["lin_weight"]) and _close(ab, ref["lin_bias"])


def test_gather_with_grad_is_identity_outside_a_process_group():
    import torch.distributed as dist

    from cselab.distributed import gather_with_grad, is_distributed, rank, world_size

    assert not (dist.is_available() and dist.is_initialized())
    assert not is_distributed() and world_size() == 1 and rank() == 0
    z = torch.randn(4, DIM, requires_grad=True)
    out = gather_with_grad(z)
    assert out is z
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
