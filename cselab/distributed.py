"""Negatives across processes, as official SimCSE does under DDP (reference §4).

``gather_with_grad(z)`` all-gathers the (batch, dim) embeddings of every process and puts
the local tensor, which carries gradient, back into this process's slot. Every process then
computes the same global loss over ``world_size * batch`` rows, so the negatives span the
global batch. Gradients reach only local embeddings (from the local rows and from the local
columns inside other processes' rows).

The 1/N scale: DDP averages gradients over the N processes, so the update is
``(1/N) * grad(global mean loss)``, not the gradient of the global loss. SimCSE keeps this;
DeCLUTR calls it a bug and multiplies the loss by N (``scale_fix``). Under Adam the scale
mostly cancels, but it interacts with gradient clipping and eps. ``TrainConfig.scale_fix``
offers the corrected scaling.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """(batch, dim) local -> (world_size * batch, dim) global, gradient kept on the local slice.

    Outside a process group this returns ``z`` unchanged. All processes must pass the same
    batch size (the trainer drops the last incomplete global batch under DDP).
    """
    if not is_distributed():
        return z
    gathered = [torch.zeros_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, z.detach().contiguous())
    gathered[dist.get_rank()] = z  # the copy that carries gradient
    return torch.cat(gathered, dim=0)
