"""Run profiles: one definition of what ``ci``, ``laptop`` and ``full`` mean.

Every notebook's ``parameters`` cell sets ``PROFILE`` (default: :func:`default_profile`);
the config cell then calls :func:`resolve_profile` and derives every size from the
returned :class:`Profile`. Nothing after the config cell hard-codes a size.

- ``ci``: fully offline; the tiny randomly initialised encoder ``cselab/tiny`` and the data
  shipped in ``data/`` (plus ``CSELAB_DATA_DIR`` when set). About a minute per notebook on
  2 CPU cores.
- ``laptop``: a small real pretrained model from the hub (4-layer BERT), minutes on a CPU.
- ``full``: the papers' models and settings on one CUDA GPU.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from urllib.parse import urlparse

PROFILE_ENV = "CSELAB_PROFILE"
STEP_CAP_ENV = "CSELAB_MAX_STEPS"  # test-only: see step_cap()
HUB_URL_ENV = "HF_ENDPOINT"
DEFAULT_HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class Profile:
    """Everything a chapter derives from the profile name.

    Attributes:
        name: ``"ci"``, ``"laptop"`` or ``"full"``.
        model: encoder to load with :meth:`cselab.SentenceEncoder.from_pretrained`.
        device: ``"cpu"`` or ``"cuda"``.
        needs_hub: whether ``model`` must come from the Hugging Face hub.
        eval_batch_size: batch size for :func:`cselab.evaluate_sts` (SentEval uses 128).
        toy_steps: optimisation steps for the toy experiments of chapter 01.
        anisotropy_sentences: sentences sampled to measure anisotropy in chapter 02.
        description: one line for printing.
    """

    name: str
    model: str
    device: str
    needs_hub: bool
    eval_batch_size: int
    toy_steps: int
    anisotropy_sentences: int
    description: str

    def with_overrides(self, **changes) -> "Profile":
        """A copy with some fields replaced (unknown field names raise ``TypeError``)."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        model="cselab/tiny",
        device="cpu",
        needs_hub=False,
        eval_batch_size=128,
        toy_steps=150,
        anisotropy_sentences=400,
        description="offline: course encoders (SmolLM2 blocks, tiny random BERT), real or shipped data",
    ),
    "laptop": Profile(
        name="laptop",
        model="google/bert_uncased_L-4_H-256_A-4",
        device="cpu",
        needs_hub=True,
        eval_batch_size=128,
        toy_steps=400,
        anisotropy_sentences=1000,
        description="small pretrained BERT (4 layers, 256 hidden) from the hub on a CPU",
    ),
    "full": Profile(
        name="full",
        model="bert-base-uncased",
        device="cuda",
        needs_hub=True,
        eval_batch_size=128,
        toy_steps=1000,
        anisotropy_sentences=2000,
        description="the papers' models and settings on one CUDA GPU",
    ),
}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def default_profile() -> str:
    """``$CSELAB_PROFILE`` if set, else ``"full"`` when CUDA is available, else ``"laptop"``."""
    name = os.environ.get(PROFILE_ENV, "").strip()
    if name:
        return name
    return "full" if _cuda_available() else "laptop"


def step_cap() -> int | None:
    """The test-only cap ``$CSELAB_MAX_STEPS`` on every training run's optimiser steps and every local LLM
    generation's new tokens, else None.

    The course's tests set it to run the ``laptop`` chapters end to end in minutes (tests/test_laptop_chapters.py)
    without the chapters branching on it: :func:`cselab.train.train` and
    :class:`cselab.llm_backends.TransformersChatBackend` apply it and print one line when they do. Students never
    need it.
    """
    text = os.environ.get(STEP_CAP_ENV, "").strip()
    if not text:
        return None
    try:
        cap = int(text)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ValueError(f"${STEP_CAP_ENV}={text!r}: set a positive whole number of steps, or unset it.")
    return cap


def hub_reachable(timeout: float = 3.0, url: str | None = None) -> bool:
    """True if a TCP connection to the Hugging Face hub opens within ``timeout`` seconds.

    ``HF_HUB_OFFLINE=1`` counts as unreachable. A TCP probe is used because
    transformers retries for about 25 s before giving up on a missing network.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    parsed = urlparse(url or os.environ.get(HUB_URL_ENV) or DEFAULT_HUB_URL)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def model_is_cached(model: str) -> bool:
    """True if ``model`` is a local directory or its config is in the local hub cache."""
    if model.startswith("cselab/") or os.path.isdir(model):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def resolve_profile(name: str | None = None, *, check_hub: bool = True, **overrides) -> Profile:
    """Return the :class:`Profile` called ``name`` (default: :func:`default_profile`).

    If the profile needs the hub, its model is not cached and the hub cannot be reached,
    print one line saying so and fall back to ``ci``. Keyword ``overrides`` replace
    profile fields (e.g. ``eval_batch_size=64``).

    Raises:
        ValueError: unknown profile name (the message lists the valid ones).
    """
    name = (name or default_profile()).strip()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r} (from the PROFILE parameter or ${PROFILE_ENV}); "
            f"choose one of {sorted(PROFILES)}."
        )
    profile = PROFILES[name]
    if profile.device == "cuda" and not _cuda_available():
        print(f"Profile {name!r} expects a CUDA GPU but none is available: running it on the CPU (slow).")
        profile = profile.with_overrides(device="cpu")
    if check_hub and profile.needs_hub and not model_is_cached(profile.model) and not hub_reachable():
        print(
            f"Hugging Face hub unreachable and {profile.model!r} is not cached: "
            f"falling back to the offline 'ci' profile."
        )
        profile = PROFILES["ci"]
    return profile.with_overrides(**overrides) if overrides else profile
