"""ESimCSE's momentum contrast: an EMA copy of the encoder and a FIFO queue of its embeddings.

Official code: ``caskcsg/sentemb``, ``ESimCSE/esimcse/models.py`` (``BertForCL.__init__``,
``cl_forward``) and ``esimcse/trainers.py`` (``compute_loss``); reference/methods.md §5.2,
§5.4 and §14 item 4. Per step: loss with the queue as extra negatives, EMA update
(momentum 0.995), encode the *original* sentences with the momentum encoder (dropout off),
enqueue them (FIFO of 160); the queue is reset at each epoch start.
"""
from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

__all__ = ["EmbeddingQueue", "MomentumEncoder"]


def _fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """Same architecture as ``model``, freshly initialised from ``seed`` (global RNG untouched)."""
    from transformers import PreTrainedModel

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: CUDA generators are not touched either
        if isinstance(model, PreTrainedModel):
            from .encoders import adapt_truncated_decoder

            fresh = type(model)(model.config)  # what ESimCSE does: BertModel(config)
            adapt_truncated_decoder(fresh)  # e.g. cselab/smollm2-2l: the same skipped norm and dropout as the online model
            if hasattr(model, "pooler") and model.pooler is None:  # a checkpoint loaded without pooler weights
                fresh.pooler = None
        else:
            fresh = copy.deepcopy(model)
            for name, module in fresh.named_modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                elif any(True for _ in module.parameters(recurse=False)):
                    raise ValueError(
                        f"init='random' cannot re-initialise {name or 'the model'} ({type(module).__name__}): "
                        "it has parameters but no reset_parameters(); use init='copy'."
                    )
    reference = next(model.parameters(), None)
    if reference is not None:
        fresh = fresh.to(device=reference.device, dtype=reference.dtype)
    return fresh


def _check_same(kind: str, ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                hint: str = "Pass the same architecture the MomentumEncoder was built from.") -> None:
    if ours.keys() != theirs.keys():
        missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
        raise ValueError(
            f"the model's {kind} do not match the momentum encoder's: the model lacks {missing[:5]} "
            f"and has extra {unexpected[:5]}. {hint}"
        )
    for name, tensor in ours.items():
        if tensor.shape != theirs[name].shape:
            raise ValueError(
                f"{kind[:-1]} {name!r} has shape {tuple(theirs[name].shape)} in the model but "
                f"{tuple(tensor.shape)} in the momentum encoder. {hint}"
            )


class MomentumEncoder(nn.Module):
    """An exponential-moving-average (EMA) copy of an encoder, never trained by gradients.

    ``update`` applies ``theta_m <- m * theta_m + (1 - m) * theta`` (ESimCSE ``cl_forward``;
    m = 0.995 in ``run.sh``). Its parameters never require grad and it always stays in eval
    mode (dropout off, as ESimCSE encodes the queue entries with ``model.eval()``), even after
    ``.train()``.

    ``init="copy"`` (default) starts from a deep copy of the online weights. ``init="random"``
    reproduces the official behaviour (§5.2, §14 item 4): ESimCSE builds
    ``momentum_model = BertModel(config)`` before the pretrained weights are loaded, so it starts
    from random init and the random part decays as ``m**t`` (0.995**500 = 0.08, 0.995**1000 =
    0.007). For a Hugging Face model this is ``type(model)(model.config)`` built under
    ``torch.random.fork_rng`` with the CPU generator seeded by ``seed`` (the global RNG state is
    unchanged); other modules are deep-copied and every submodule's ``reset_parameters()`` is
    called under the same seeding.

    Args:
        model: the online encoder (typically a transformers ``BertModel``).
        momentum: m in [0, 1]; 0 copies the online weights at each update, 1 freezes.
        init: ``"copy"`` or ``"random"``.
        seed: seed of the random init (ignored for ``"copy"``).
    """

    def __init__(self, model: nn.Module, momentum: float = 0.995, init: str = "copy", seed: int = 0) -> None:
        super().__init__()
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or math.isnan(momentum) \
                or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1] (ESimCSE: 0.995), got {momentum!r}.")
        if init not in ("copy", "random"):
            raise ValueError(f"init must be 'copy' or 'random', got {init!r}.")
        self.momentum = float(momentum)
        self.init = init
        self.model = copy.deepcopy(model) if init == "copy" else _fresh_copy(model, seed)
        # e.g. BertModel(config, add_pooling_layer=False) is rebuilt with a pooler by type(model)(config)
        _check_same("parameters", dict(self.model.named_parameters()), dict(model.named_parameters()),
                    hint=f"init={init!r} could not rebuild {type(model).__name__}; use init='copy' for "
                         "a model that its config alone does not describe.")
        self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "MomentumEncoder":
        """Ignore ``mode``: the momentum encoder always runs in eval mode (dropout off)."""
        return super().train(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s parameters; buffers are copied.

        Raises:
            ValueError: when parameter or buffer names or shapes differ.
        """
        ours, theirs = dict(self.model.named_parameters()), dict(model.named_parameters())
        _check_same("parameters", ours, theirs)
        our_buffers, their_buffers = dict(self.model.named_buffers()), dict(model.named_buffers())
        _check_same("buffers", our_buffers, their_buffers)
        m = self.momentum
        for name, param in ours.items():
            param.mul_(m).add_(theirs[name].detach().to(param.dtype), alpha=1.0 - m)
        for name, buffer in our_buffers.items():
            buffer.copy_(their_buffers[name])

    def forward(self, *args, **kwargs):
        """Run the EMA model without building a graph (same call signature as the model)."""
        with torch.no_grad():
            return self.model(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, init={self.init!r}"


class EmbeddingQueue(nn.Module):
    """FIFO of the last ``size`` embeddings (ESimCSE: 160 momentum embeddings, §5.2).

    A ring buffer kept in persistent buffers (``queue`` (size, dim), ``count``, ``ptr``), so
    ``state_dict`` saves it and a resumed run continues exactly; ``.to()`` moves and casts it.
    Stored rows are detached: the queue is constant in the loss, gradient flows only
    through the anchors. ``size = 0`` means no queue (plain in-batch negatives).
    As a container, an empty queue is falsy (``len(queue) == 0``).

    Args:
        size: capacity M >= 0.
        dim: embedding dimension.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an integer >= 0 (0 = no queue; ESimCSE: 160), got {size!r}.")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer (the embedding size), got {dim!r}.")
        self.size, self.dim = size, dim
        self.register_buffer("queue", torch.zeros(size, dim))  # (size, dim)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # rows filled, <= size
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to write

    def __len__(self) -> int:
        return int(self.count)

    def reset(self) -> None:
        """Empty the queue (ESimCSE does it at each epoch start)."""
        self.queue.zero_()
        self.count.zero_()
        self.ptr.zero_()

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor) -> None:
        """Append the rows of ``z`` (n, dim), detached; beyond ``size`` the oldest rows drop out."""
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (n, {self.dim}) (the queue's dim), got {tuple(z.shape)}.")
        n = z.shape[0]
        if self.size == 0 or n == 0:
            return
        z = z.detach().to(device=self.queue.device, dtype=self.queue.dtype)
        if n >= self.size:
            self.queue.copy_(z[-self.size:])
            self.ptr.zero_()
            self.count.fill_(self.size)
            return
        start = int(self.ptr)
        rows = (start + torch.arange(n, device=self.queue.device)) % self.size
        self.queue[rows] = z
        self.ptr.fill_((start + n) % self.size)
        self.count.fill_(min(int(self.count) + n, self.size))

    def embeddings(self) -> torch.Tensor | None:
        """The stored rows oldest first, a new (count, dim) tensor, or None when empty."""
        count = int(self.count)
        if count == 0:
            return None
        if count < self.size:
            return self.queue[:count].clone()  # not wrapped yet: ptr == count
        return torch.roll(self.queue, shifts=-int(self.ptr), dims=0)
