"""Small shared helpers: seeding, device choice, quiet transformers loads."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a notebook run repeats exactly on CPU."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def quiet_datasets():
    """No ``datasets`` progress bars ("Generating train split", "Tokenising", a method's map) for the block:
    reading a course training file takes seconds, and in a notebook every state of a bar stays in the output."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def quiet_transformers(gguf: bool = False):
    """No "Loading weights"/"Writing model shards" bars and no LOAD REPORT tables for one load or save; with
    ``gguf``, no GGUF de-quantising bar either (a plain tqdm).

    A hub BERT checkpoint carries MLM/NSP heads that ``AutoModel`` leaves unused, reported on every load;
    cselab checks the missing weights that matter itself (:func:`cselab.encoders.check_loaded_weights`).
    """
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    module, original = None, None
    if gguf:
        import functools

        from transformers import modeling_gguf_pytorch_utils as module
        original = module.tqdm
        module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if module is not None:
            module.tqdm = original
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
