"""ESimCSE (Wu et al. 2022): word repetition for the positive view + a momentum-contrast queue.

Views (§3.1; official ``--dup_type bpe``, reference §5.1): view 0 is the sentence, view 1 is the
sentence with a few subword tokens repeated in place (:func:`cselab.augment.word_repetition`,
``dup_rate`` 0.32), so a positive pair no longer has equal lengths and length stops being a
shortcut. Like the official code, the repetition is drawn **once** when the data is prepared
(:meth:`ESimCSE.prepare_dataset`, cached by ``datasets``) and reused.

Loss (§3.2, official ``cl_forward``/``compute_loss``, reference §5.2): SimCSE's one-directional
InfoNCE over the two views (both through the encoder with dropout, one forward pass), with the
queue's M embeddings as extra negatives of every row::

    S = [cos(z1_i, z2_j) / τ  (B × B)  |  cos(z1_i, q_m) / τ  (B × M)],   L = CE(S, arange(B))

After the loss: an EMA step of the momentum encoder (m = 0.995), then the momentum encoder
embeds view 0 with dropout off, passes it through the *online* MLP, and the result is enqueued
(FIFO, 160): the current batch is a negative only from the next step on. The queue is emptied at
each epoch start. The queue and the EMA weights are buffers/parameters of this module, so the
trainer's checkpoints carry them and a resumed run continues exactly.

Choices documented (reference §14 item 4): the official momentum encoder starts from *random*
weights (it is built before the pretrained weights are loaded); here ``momentum_init="copy"``
(a copy of the online encoder) is the default and ``"random"`` reproduces the official run.
Under ``torchrun`` z1/z2 are gathered like SimCSE's; each process keeps its own queue.
Kept different on purpose: ``avg_first_last`` averages ``hidden_states[1]`` and the last layer, as
SimCSE does, so that a pooler name means one thing in cselab; the official ESimCSE code (forked
from an older SimCSE) takes ``hidden_states[0]``, the embeddings. No preset uses that pooler.
"""
from __future__ import annotations

import torch

from ..augment import repeat_batch
from ..configs import CI_PRETRAINED, CI_TINY, COURSE_DATA, LAPTOP, TrainConfig, register_presets
from ..distributed import gather_with_grad
from ..encoders import SentenceEncoder
from ..losses import info_nce
from ..memory import EmbeddingQueue, MomentumEncoder
from .base import initializer_range, register
from .simcse import SimCSE, forward_and_pool


def _repeat_column(batch: dict, indices: list[int], dup_rate: float, seed: int, special_ids: list[int]) -> dict:
    # one generator per map batch, seeded by the batch's first row: the same rows get the same repetition
    return {"sent1": repeat_batch(batch["sent0"], dup_rate, seed=seed * 1_000_003 + indices[0],
                                  special_ids=special_ids)}


class ESimCSE(SimCSE):
    """ESimCSE's training head: word-repeated positives, momentum encoder and queue.

    Args:
        encoder: the encoder being trained (the momentum encoder copies its architecture).
        temperature: τ (0.05).
        dup_rate: fraction of tokens that may be repeated (BERT 0.32, RoBERTa 0.30).
        queue_size: M, the number of queued negatives (160); 0 turns the queue off.
        momentum: EMA coefficient m of the momentum encoder (0.995).
        momentum_init: ``"copy"`` (default) or ``"random"`` (official behaviour).
        seed: seed of the word repetition; a random momentum encoder uses ``seed + 1``.
        pooler_type, initializer_range: as :class:`SimCSE`.
    """

    def __init__(self, encoder: SentenceEncoder, temperature: float = 0.05, dup_rate: float = 0.32,
                 queue_size: int = 160, momentum: float = 0.995, momentum_init: str = "copy", seed: int = 0,
                 pooler_type: str = "cls", initializer_range: float = 0.02) -> None:
        hidden = encoder.model.config.hidden_size
        super().__init__(hidden, supervised=False, temperature=temperature, initializer_range=initializer_range,
                         pooler_type=pooler_type)
        if not 0.0 <= dup_rate <= 1.0:  # also NaN
            raise ValueError(f"dup_rate={dup_rate} must be in [0, 1] (ESimCSE: 0.32).")
        self.dup_rate = dup_rate
        self.seed = seed
        self.queue = EmbeddingQueue(queue_size, hidden)
        # seed + 1: a random-init online encoder (cselab/tiny) is drawn from `seed`, and the same seed
        # would make the "random" momentum encoder an exact copy of it
        self.momentum_encoder = MomentumEncoder(encoder.model, momentum=momentum, init=momentum_init, seed=seed + 1)

    @property
    def columns(self) -> tuple[str, ...]:
        return ("sent0",)

    def prepare_dataset(self, dataset, tokenizer):
        """Add column ``sent1``: view 0's token ids with repeated tokens (drawn once, deterministic).

        Positions come from ``range(1, L - 1)`` as in the official code: the first and last tokens
        ([CLS], [SEP]) are never repeated, a special token inside the sentence (e.g. [UNK]) may be."""
        return dataset.map(_repeat_column, batched=True, with_indices=True, desc="Word repetition",
                           fn_kwargs={"dup_rate": self.dup_rate, "seed": self.seed, "special_ids": []})

    def on_epoch_start(self, epoch: int) -> None:
        self.queue.reset()  # official trainers.py: the queue starts empty every epoch

    def views(self, rows: dict[str, list[list[int]]]) -> list[list[list[int]]]:
        return [rows["sent0"], rows["sent1"]]

    def momentum_embed(self, encoder: SentenceEncoder, ids: list[list[int]]) -> torch.Tensor:
        """View 0 through the momentum encoder (dropout off) and the online MLP, no grad. (n, H)."""
        with torch.no_grad():
            return forward_and_pool(self.momentum_encoder, encoder.collate(ids), self.pooler_type, self.mlp)

    def loss(self, encoder: SentenceEncoder, rows: dict[str, list[list[int]]]) -> torch.Tensor:
        b = len(rows["sent0"])
        z = self.embed(encoder, rows["sent0"] + rows["sent1"])  # (2B, H), one forward pass
        z1, z2 = (gather_with_grad(part) for part in z.split(b))
        loss = info_nce(z1, z2, temperature=self.temperature, queue=self.queue.embeddings())
        if self.queue.size > 0:  # without a queue the momentum encoder has nothing to feed
            self.momentum_encoder.update(encoder.model)
            self.queue.enqueue(self.momentum_embed(encoder, rows["sent0"]))  # used from the next step on
        return loss


def check_config(config) -> list[str]:
    """Problems with ESimCSE's fields (ranges of the paper's knobs)."""
    problems = []
    if not 0 <= config.dup_rate <= 1:
        problems.append(f"dup_rate={config.dup_rate} (must be in [0, 1])")
    if config.queue_size < 0:
        problems.append(f"queue_size={config.queue_size} (must be >= 0; 0 = no queue)")
    if not 0 <= config.momentum <= 1:
        problems.append(f"momentum={config.momentum} (must be in [0, 1])")
    if config.momentum_init not in ("copy", "random"):
        problems.append(f"momentum_init={config.momentum_init!r} (choose 'copy' or 'random')")
    return problems


@register("esimcse", fields=("dup_rate", "queue_size", "momentum", "momentum_init"), check=check_config)
def build_esimcse(config, encoder: SentenceEncoder) -> ESimCSE:
    return ESimCSE(encoder, temperature=config.temperature, dup_rate=config.dup_rate, queue_size=config.queue_size,
                   momentum=config.momentum, momentum_init=config.momentum_init, seed=config.seed,
                   pooler_type=config.pooler_type, initializer_range=initializer_range(encoder))


# ------------------------------------------------------------------ presets
# ESimCSE/run.sh: batch 64, 1 epoch, len 32, tau 0.05, momentum 0.995, queue 160, eval 125, fp16;
# momentum_init="random" is what the official code does (its published numbers), see the module docstring.
# ci: the paper's repetition rate, queue and momentum on the pretrained offline encoder, data and budget of
# unsup-simcse-ci; "-tiny" and laptop as for SimCSE.
PRESETS = {
    "esimcse-bert-base": TrainConfig(method="esimcse", model="bert-base-uncased", train_file="wiki1m",
                                     batch_size=64, learning_rate=3e-5, dup_rate=0.32, queue_size=160,
                                     momentum=0.995, momentum_init="random"),
    "esimcse-roberta-base": TrainConfig(method="esimcse", model="roberta-base", train_file="wiki1m",
                                        batch_size=64, learning_rate=1e-5, dup_rate=0.30, queue_size=160,
                                        momentum=0.995, momentum_init="random"),
    "esimcse-tiny": TrainConfig(method="esimcse", train_file=str(COURSE_DATA / "toy_corpus.tsv"), **CI_TINY),
    "esimcse-laptop": TrainConfig(method="esimcse", train_file="wiki1m", learning_rate=5e-5, **LAPTOP),
    "esimcse-ci": TrainConfig(method="esimcse", train_file="text:unlabeled", dup_rate=0.32, queue_size=160,
                              momentum=0.995, **CI_PRETRAINED),
}
register_presets(PRESETS)
