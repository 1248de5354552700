"""SimCSE (Gao et al. 2021): how the views are built, and the loss. Everything else is generic.

Unsupervised (§3): each sentence is encoded twice in one forward pass over the stacked
batch ``[x; x]``; dropout (p = 0.1) is the only noise, so the two copies are two views. The
loss is one-directional in-batch InfoNCE (Eq. 1) over ``MLP([CLS])``, where the MLP is
``Linear(H, H) + Tanh``, randomly initialised (footnote 9) and used **only in training**:
evaluation uses the raw ``[CLS]`` vector (``cls_before_pooler``, Table 6).

Supervised (§4): ``(premise, entailment, contradiction)`` are stacked into one forward pass
of 3B sequences; the entailments are the positives, and every row's denominator holds all
B contradictions too, with ``hard_negative_weight`` = log(alpha) on the row's own one
(Eq. 8). The MLP is kept at evaluation (``cls`` with the MLP as projector).

``pooler_type`` follows the official ``--pooler_type``: ``cls`` (the default above) puts
the MLP over [CLS]; any other pooler (``cls_before_pooler``, ``avg``, ``avg_top2``,
``avg_first_last``) is used as is, with no MLP, in training and evaluation alike, as the
official ``cl_forward`` does. The ``ci`` presets use ``avg``: a randomly initialised encoder
has no trained [CLS] summary (BERT learns one in pre-training), so a [CLS] objective first
has to teach attention to aggregate, and in a 32-step budget it only loses score.

Under ``torchrun`` the embeddings of all processes are gathered with gradient on the local
slice (:func:`cselab.distributed.gather_with_grad`), as in the official ``cl_forward``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import CI_PRETRAINED, CI_TINY, COURSE_DATA, LAPTOP, TrainConfig, register_presets
from ..distributed import gather_with_grad
from ..encoders import TRAIN_POOLERS, SentenceEncoder, pool
from ..losses import info_nce
from .base import Method, initializer_range, register


def simcse_mlp(hidden_size: int, initializer_range: float = 0.02) -> nn.Sequential:
    """SimCSE's ``MLPLayer``: Linear(H, H) + Tanh, initialised like BERT's own layers."""
    linear = nn.Linear(hidden_size, hidden_size)
    nn.init.normal_(linear.weight, std=initializer_range)  # BertPreTrainedModel._init_weights
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.Tanh())


POOLER_TYPES = TRAIN_POOLERS  # the poolers SimCSE-style methods train with (cselab.encoders)


def forward_and_pool(model: nn.Module, batch: dict[str, torch.Tensor], pooler_type: str,
                     mlp: nn.Module | None) -> torch.Tensor:
    """One forward pass, then ``mlp([CLS])`` (pooler_type ``cls``) or the pooler itself (official
    ``cl_forward``: the MLP only for ``cls``). Shared by SimCSE, ESimCSE's momentum path and DiffCSE.
    Returns (n, H)."""
    layers = pooler_type in ("avg_top2", "avg_first_last")
    out = model(**batch, output_hidden_states=layers, return_dict=True)
    if mlp is not None:
        return mlp(out.last_hidden_state[:, 0])  # (n, H) from (n, seq, H)
    return pool(pooler_type, batch["attention_mask"], out.last_hidden_state, out.hidden_states if layers else None)


class SimCSE(Method):
    """SimCSE's training head and loss. ``supervised`` picks the variant.

    Args:
        hidden_size: the encoder's hidden size H.
        supervised: NLI triplets with hard negatives (True) or dropout views (False).
        temperature: tau of InfoNCE (0.05).
        hard_negative_weight: log(alpha) added to each row's own hard-negative logit.
        initializer_range: std of the MLP's normal initialisation (BERT: 0.02).
        pooler_type: ``cls`` (MLP over [CLS]) or a pooler used without MLP (see the module doc).
    """

    def __init__(self, hidden_size: int, supervised: bool = False, temperature: float = 0.05,
                 hard_negative_weight: float = 0.0, initializer_range: float = 0.02,
                 pooler_type: str = "cls") -> None:
        super().__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(f"pooler_type={pooler_type!r}; choose one of {list(POOLER_TYPES)}.")
        self.supervised = supervised
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        self.pooler_type = pooler_type
        self.mlp = simcse_mlp(hidden_size, initializer_range) if pooler_type == "cls" else None

    @property
    def columns(self) -> tuple[str, ...]:
        """Training-data columns the method reads (SimCSE's csv/txt conventions)."""
        return ("sent0", "sent1", "hard_neg") if self.supervised else ("sent0",)

    def embed(self, encoder: SentenceEncoder, ids: list[list[int]]) -> torch.Tensor:
        """MLP([CLS]) (or the pooled vector) of every sequence in one forward pass. Returns (len(ids), H)."""
        return forward_and_pool(encoder.model, encoder.collate(ids), self.pooler_type, self.mlp)

    def views(self, rows: dict[str, list[list[int]]]) -> list[list[list[int]]]:
        """The token-id lists of each view: unsup [x, x]; sup [x, x+, x-]."""
        if self.supervised:
            return [rows["sent0"], rows["sent1"], rows["hard_neg"]]
        return [rows["sent0"], rows["sent0"]]

    def loss(self, encoder: SentenceEncoder, rows: dict[str, list[list[int]]]) -> torch.Tensor:
        """The SimCSE loss of one batch, ``rows`` = column -> token ids of B examples."""
        views = self.views(rows)
        batch = len(views[0])
        z = self.embed(encoder, [ids for view in views for ids in view])  # (num_views * B, H), one forward
        z = [gather_with_grad(part) for part in z.split(batch)]  # each (world * B, H)
        if self.supervised:
            return info_nce(z[0], z[1], temperature=self.temperature, negatives=z[2],
                            hard_negative_weight=self.hard_negative_weight)
        return info_nce(z[0], z[1], temperature=self.temperature)

    def eval_encoder(self, encoder: SentenceEncoder) -> SentenceEncoder:
        """The encoder used for evaluation and export (shares the weights)."""
        if self.mlp is None:
            return SentenceEncoder(encoder.model, encoder.tokenizer, self.pooler_type, name=encoder.name)
        if self.supervised:
            return SentenceEncoder(encoder.model, encoder.tokenizer, "cls", projector=self.mlp, name=encoder.name)
        return SentenceEncoder(encoder.model, encoder.tokenizer, "cls_before_pooler", name=encoder.name)


@register("unsup-simcse")
def build_unsup_simcse(config, encoder: SentenceEncoder) -> SimCSE:
    """Unsupervised SimCSE (§3): two dropout views of each sentence."""
    return SimCSE(encoder.model.config.hidden_size, supervised=False, temperature=config.temperature,
                  initializer_range=initializer_range(encoder), pooler_type=config.pooler_type)


@register("sup-simcse", fields=("hard_negative_weight",), mlp_at_eval=True)
def build_sup_simcse(config, encoder: SentenceEncoder) -> SimCSE:
    """Supervised SimCSE (§4): NLI entailments as positives, contradictions as hard negatives."""
    return SimCSE(encoder.model.config.hidden_size, supervised=True, temperature=config.temperature,
                  hard_negative_weight=config.hard_negative_weight, initializer_range=initializer_range(encoder),
                  pooler_type=config.pooler_type)


# ------------------------------------------------------------------ presets
# SimCSE Table A.1 / run_unsup_example.sh: batch 64, lr 3e-5, 1 epoch, len 32, tau 0.05, fp16; Table A.1:
# RoBERTa-base batch 512, lr 1e-5. run_sup_example.sh: global batch 512 (4 GPUs x 128), lr 5e-5, 3 epochs, tau 0.05,
# hard negative weight 0. laptop: the small BERT, 500 steps (lr raised for 4 layers, not tuned). ci: the pretrained
# offline encoder on the wiki1m sample / the SNLI triplets; "-tiny": the random cselab/tiny on the shipped toy files
# (chapter 09's shared encoder in ci, and a fast preset for tests).
PRESETS = {
    "unsup-simcse-bert-base": TrainConfig(method="unsup-simcse", model="bert-base-uncased", train_file="wiki1m",
                                          batch_size=64, learning_rate=3e-5),
    "unsup-simcse-roberta-base": TrainConfig(method="unsup-simcse", model="roberta-base", train_file="wiki1m",
                                             batch_size=512, learning_rate=1e-5),
    "sup-simcse-bert-base": TrainConfig(method="sup-simcse", model="bert-base-uncased", train_file="nli",
                                        batch_size=512, learning_rate=5e-5, epochs=3),
    "sup-simcse-roberta-base": TrainConfig(method="sup-simcse", model="roberta-base", train_file="nli",
                                           batch_size=512, learning_rate=5e-5, epochs=3),
    "unsup-simcse-tiny": TrainConfig(method="unsup-simcse", train_file=str(COURSE_DATA / "toy_corpus.tsv"), **CI_TINY),
    "unsup-simcse-laptop": TrainConfig(method="unsup-simcse", train_file="wiki1m", learning_rate=5e-5, **LAPTOP),
    "sup-simcse-tiny": TrainConfig(method="sup-simcse", train_file=str(COURSE_DATA / "toy_nli.csv"), **CI_TINY),
    "sup-simcse-laptop": TrainConfig(method="sup-simcse", train_file="nli", learning_rate=1e-4, **LAPTOP),
    "unsup-simcse-ci": TrainConfig(method="unsup-simcse", train_file="text:unlabeled", **CI_PRETRAINED),
    "sup-simcse-ci": TrainConfig(method="sup-simcse", train_file="text:nli", **CI_PRETRAINED),
}
register_presets(PRESETS)
