"""NGCSE (Li et al., AAAI-24, "Narrowing the Gap between Supervised and Unsupervised Sentence
Representation Learning with Large Language Model"): InfoNCE + a hierarchical triplet loss over
LLM-generated groups of graded similarity. Reference §8 (official ``ngcse/models.py``).

Data (reference §8.1). Two kinds of rows share one batch:

- *aigen* groups of K sentences ``[s, s_p, s_m, s_n]``, most similar first: NGCSE's keys
  ``sentence, '5', '4', '3'`` are our columns ``sent0, level5, level4, level3`` (STS pattern,
  K = 4); the NLI pattern is ``sent0, level5, level4`` = (premise, entailment, contradiction), K = 3.
- *other* rows: only ``sent0``; the sentence is duplicated and dropout makes the two views
  (unsupervised SimCSE). A row is *other* when all its level cells are empty (the trainer turns
  missing cells into " ": only special tokens for BERT, plus one space token for byte-level BPE
  tokenizers such as RoBERTa's and SmolLM2's); a row with some levels empty is an error.

The trainer reads the training file with :meth:`NGCSE.read_training_file`
(:func:`read_graded_groups`: NGCSE's ``.jsonl``, a ``sent0,sent1,hard_neg`` ``.csv`` as
K = 3 groups, ``.txt``/``.tsv`` sentences as *other* rows) and :meth:`NGCSE.prepare_dataset`
narrows :attr:`NGCSE.levels` to the levels that data fills, so one configuration trains on K = 4,
K = 3 or unsupervised data.

Objective (reference §8.3, official ``_ng_forward`` with ``--use_native_loss --use_loss3``)::

    anchors    a = [ O[:, 0] ; A[:, 0] ]           candidates c = [ O[:, 1] ; A[:, p] ]
    L1 = CE( cos(a_i, c_j) / tau , target i )      (in-batch negatives shared by both kinds)
    L3 = hierarchical_triplet_loss(A[:, 0], A[:, 1:], margins)        (aigen groups, K >= 3)
    L  = L1 + beta * L3                            ((1 - beta2) L1 + beta L3 with beta2 = 0)

where p = ``positive_index``, by default the official ``2 if K > 3 else 1``: for K = 4 the
InfoNCE positive is the *intermediate* level ``'4'`` (reference §14 item 7), and the last level
never enters the InfoNCE denominator while the HT loss is on. All views go through the encoder
in **one** forward pass (aigen groups example-major, then the other pairs), as the official code.

Pooling (reference §8.2). ``pooler_type="mask"`` is the official setting: each sentence is
wrapped in PromptBERT's template ``[CLS] this sentence : " x " means [MASK] [SEP]``
(:class:`cselab.encoders.PromptTemplate`, built from the tokenizer's own tokens, after the
trainer's truncation) and the embedding is the last hidden state at ``[MASK]``; the second view of
an *other* pair uses the official pair template ``this sentence of " x " means [MASK]``. The
official data-domain runs used ``cls``; any of SimCSE's poolers works. The training head is a bare
``nn.Linear(H, H)`` initialised N(0, 6e-3) (weight and bias, official ``custom_param_init``), over
``[MASK]`` or ``[CLS]`` only (the official ``avg`` path has none), and dropped at evaluation: the
evaluation encoder returns the raw ``[MASK]`` (:class:`cselab.encoders.PromptEncoder`) or
``[CLS]`` (``cls_before_pooler``) vector.

``freeze_embeddings=True`` (official, reference §8.2): the encoder's embedding layer (word,
position, token-type embeddings and their LayerNorm) gets ``requires_grad=False``, so the trainer
does not optimise it.

Batches (reference §8.1, official ``OurDataCollatorWithPadding``, the active path with
``combine_training=True``): :meth:`NGCSE.compose_batches` keeps the *aigen* rows of each drawn
batch aside until at least ``aigen_batch_size`` (48) are waiting, then sends all of them in one
step together with that step's *other* rows; other steps carry only *other* rows. So with many
unsupervised rows and few generated groups, the HT loss is active on some steps only, each time
over >= 48 groups. One difference, for exact resumption: the official cache is a class attribute
that lives across epochs; here the groups still waiting at the end of an epoch join its last step.

The official code has no multi-GPU path; neither has this one (it raises under torchrun).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ... import distributed as dist_utils
from ...configs import CI_PRETRAINED, CI_TINY, COURSE_DATA, LAPTOP, TrainConfig, register_presets
from ...encoders import (MASK_POOLER, TRAIN_POOLERS, PromptEncoder, PromptTemplate, SentenceEncoder, eval_pooling,
                        mask_pool)
from ...losses import hierarchical_triplet_loss, info_nce
from ..base import Method, register
from ..simcse import forward_and_pool
from .groups import GRADED_LEVELS, GRADED_SPLITS, graded_levels, is_graded_jsonl, read_graded_groups
from .rfd import RFD_TERMS, rfd, rfd_from_history, rfd_terms, rfd_tracker, rfd_training_data

LEVEL_COLUMNS = ("level5", "level4", "level3")  # NGCSE's keys '5', '4', '3' (STS pattern)
NLI_LEVEL_COLUMNS = ("level5", "level4")  # NLI pattern: '5' entailment, '4' contradiction
NGCSE_POOLER_TYPES = (*TRAIN_POOLERS, MASK_POOLER)


def ngcse_head(hidden_size: int, std: float = 6e-3) -> nn.Linear:
    """NGCSE's training head: a bare Linear(H, H), weight and bias ~ N(0, std) (official ``custom_param_init``)."""
    linear = nn.Linear(hidden_size, hidden_size)
    nn.init.normal_(linear.weight, 0.0, std)
    nn.init.normal_(linear.bias, 0.0, std)
    return linear


def compose_aigen_batches(batches: Sequence[Sequence[int]], is_aigen: Sequence[bool],
                          aigen_batch_size: int) -> list[list[int]]:
    """The official collator's batches: aigen rows wait until ``aigen_batch_size`` are cached (§8.1).

    ``batches`` are the row indices the trainer drew for each step of an epoch; ``is_aigen[i]``
    says whether row ``i`` is a generated group. Step ``j`` gets every *other* row of drawn batch
    ``j``, plus the whole cache of aigen rows once it holds >= ``aigen_batch_size`` (cached rows
    first, as the official ``features = aigen_cache + other_cache``). The last step also takes
    whatever is still cached. Returns one list per drawn batch.
    """
    composed, cache = [], []
    for j, batch in enumerate(batches):
        others = [i for i in batch if not is_aigen[i]]
        cache += [i for i in batch if is_aigen[i]]
        if cache and (len(cache) >= aigen_batch_size or j == len(batches) - 1):
            composed.append(cache + others)
            cache = []
        else:
            composed.append(others)
        if not composed[-1]:
            raise ValueError(f"step {j} of the epoch would be empty: its {len(batch)} rows are all generated groups "
                             f"and fewer than aigen_batch_size={aigen_batch_size} are cached. Use a batch_size >= "
                             f"aigen_batch_size, or lower aigen_batch_size.")
    return composed


def default_positive_index(k: int) -> int:
    """The official InfoNCE positive of a K-sentence group: ``2 if K > 3 else 1`` (reference §8.3)."""
    return 2 if k > 3 else 1


class NGCSE(Method):
    """NGCSE's training head and loss (reference §8; the official ``--use_native_loss --use_loss3`` run).

    Args:
        encoder: the encoder being trained (its tokenizer builds the prompt template; its
            embedding layer is frozen when ``freeze_embeddings``).
        levels: the graded columns after ``sent0``, most similar first (default
            ``("level5", "level4", "level3")``, K = 4; ``NLI_LEVEL_COLUMNS`` for K = 3;
            ``()`` for unsupervised rows only).
        temperature: tau of InfoNCE (0.05).
        margins: HT margins per adjacent pair of levels, the last one reused (Wiki.STS_HT
            (5e-3, 5e-2); NLI.STS_HT (5e-3, 1e-1)).
        beta: weight of the HT loss (1).
        positive_index: which level of an aigen group is the InfoNCE positive, 1-based into the
            group (1 = ``levels[0]``); default the official ``2 if K > 3 else 1``.
        pooler_type: ``"mask"`` (official final runs) or one of SimCSE's poolers (default ``"cls"``).
        freeze_embeddings: freeze the embedding layer (official: True).
        pair_template: with ``mask`` pooling, wrap the second view of an *other* pair in the
            official pair template (``of`` instead of ``:``); False uses the main template for both.
        head_std: std of the Linear head's normal initialisation (6e-3).
        aigen_batch_size: generated groups are held back until this many can go in one step
            (official 48; 0 or 1 = send them as drawn). See :meth:`compose_batches`.
    """

    def __init__(self, encoder: SentenceEncoder, levels: Sequence[str] = LEVEL_COLUMNS, temperature: float = 0.05,
                 margins: Sequence[float] = (5e-3, 5e-2), beta: float = 1.0, positive_index: int | None = None,
                 pooler_type: str = "cls", freeze_embeddings: bool = True, pair_template: bool = True,
                 head_std: float = 6e-3, aigen_batch_size: int = 48) -> None:
        super().__init__()
        if isinstance(aigen_batch_size, bool) or not isinstance(aigen_batch_size, int) or aigen_batch_size < 0:
            raise ValueError(f"aigen_batch_size must be an integer >= 0, got {aigen_batch_size!r}.")
        self.aigen_batch_size = aigen_batch_size
        self._aigen_rows: tuple[int, list[bool]] | None = None  # (id of the dataset, is_aigen per row)
        if pooler_type not in NGCSE_POOLER_TYPES:
            raise ValueError(f"pooler_type={pooler_type!r}; choose one of {list(NGCSE_POOLER_TYPES)}.")
        if isinstance(levels, str):
            raise TypeError(f"levels must be a sequence of column names, not the string {levels!r}.")
        levels = tuple(levels)
        if len(set(levels)) != len(levels) or "sent0" in levels or not all(isinstance(c, str) and c for c in levels):
            raise ValueError(f"levels={levels} must be distinct non-empty column names other than 'sent0'.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta}.")
        margins = tuple(float(m) for m in margins)
        if not margins or not all(math.isfinite(m) and m >= 0 for m in margins):
            raise ValueError(f"margins must be a non-empty sequence of finite values >= 0, got {margins}.")
        if not head_std > 0:
            raise ValueError(f"head_std must be > 0, got {head_std}.")
        self._positive_index_arg = positive_index
        self._set_levels(levels)
        self.temperature = temperature
        self.margins = margins
        self.beta = beta
        self.pooler_type = pooler_type
        hidden = encoder.model.config.hidden_size
        self.head = ngcse_head(hidden, head_std) if pooler_type in ("cls", "mask") else None
        self.template = self.pair_template = None
        if pooler_type == "mask":
            self.template = PromptTemplate(encoder.tokenizer)
            self.pair_template = (PromptTemplate(encoder.tokenizer, PromptTemplate.PAIR_PREFIX) if pair_template
                                  else self.template)
        self._special_ids = frozenset(encoder.tokenizer.all_special_ids)
        # what an empty cell tokenises to besides special tokens: nothing for BERT's WordPiece, but a
        # space token for byte-level BPE (RoBERTa, SmolLM2), since the trainer writes a missing cell as " "
        self._blank = self._content(encoder.tokenizer(" ")["input_ids"])
        if freeze_embeddings:
            freeze_embedding_layer(encoder)

    def _set_levels(self, levels: tuple[str, ...]) -> None:
        k, positive_index = 1 + len(levels), self._positive_index_arg
        if positive_index is None:
            positive_index = default_positive_index(k) if levels else None
        elif not levels:
            raise ValueError("positive_index needs graded levels; with levels=() every row is an unsupervised pair.")
        elif not 1 <= positive_index <= k - 1:
            raise ValueError(f"positive_index={positive_index} must be in 1..{k - 1} (K = {k}: 1 = {levels[0]!r}).")
        self.levels, self.k, self.positive_index = levels, k, positive_index

    @property
    def columns(self) -> tuple[str, ...]:
        """Training-data columns: ``sent0`` and the graded levels."""
        return ("sent0", *self.levels)

    # ------------------------------------------------------------------ trainer hooks
    @staticmethod
    def read_training_file(path) -> list[dict]:
        """The trainer's reader for NGCSE: :func:`read_graded_groups` (``.jsonl`` NGCSE rows,
        ``.csv`` triplets/level tables, ``.txt``/``.tsv`` sentences); absent levels are None."""
        return read_graded_groups(path)

    def prepare_dataset(self, dataset, tokenizer=None):
        """Keep the levels the tokenised training data fills (official: the first row's non-empty keys).

        The trainer reads every level column; a K = 3 file (NLI pattern, SimCSE's triplets) leaves
        ``level3`` empty in every row, unsupervised text leaves all of them empty. Those columns are
        dropped from :attr:`levels` (and K, the default ``positive_index`` follow); an explicit
        ``positive_index`` is checked against the new K. Returns ``dataset`` unchanged.
        """
        present = []
        for column in self.levels:
            batches = dataset.select_columns([column]).iter(batch_size=4096)
            if any(not self._is_empty(ids) for batch in batches for ids in batch[column]):
                present.append(column)
        if tuple(present) != self.levels:
            self._set_levels(tuple(present))
        return dataset

    def compose_batches(self, batches: list[list[int]], dataset) -> list[list[int]]:
        """The trainer's hook: regroup one epoch's drawn batches as the official collator does."""
        if not self.levels or self.aigen_batch_size <= 1:
            return batches
        if self._aigen_rows is None or self._aigen_rows[0] != id(dataset):
            column = self.levels[0]  # split_rows checks, per batch, that a row has all levels or none
            flags = [not self._is_empty(ids) for batch in dataset.select_columns([column]).iter(batch_size=4096)
                     for ids in batch[column]]
            self._aigen_rows = (id(dataset), flags)
        return compose_aigen_batches(batches, self._aigen_rows[1], self.aigen_batch_size)

    # ------------------------------------------------------------------ rows -> groups
    def _content(self, ids: Sequence[int]) -> list[int]:
        return [t for t in ids if t not in self._special_ids]

    def _is_empty(self, ids: Sequence[int]) -> bool:
        """A cell the trainer filled with " " (or ""): special tokens only, or the tokenizer's blank."""
        content = self._content(ids)
        return not content or content == self._blank

    def split_rows(self, rows: dict[str, list[list[int]]]) -> tuple[list[int], list[int]]:
        """Indices of the aigen rows (every level present) and of the other rows (no level present)."""
        missing = [c for c in self.columns if c not in rows]
        if missing:
            raise ValueError(f"NGCSE needs columns {list(self.columns)}; the batch lacks {missing}.")
        n = len(rows["sent0"])
        if n == 0:
            raise ValueError("NGCSE.loss got an empty batch.")
        bad = [c for c in self.levels if len(rows[c]) != n]
        if bad:
            raise ValueError(f"columns {bad} do not have one entry per row ({n} rows).")
        if not self.levels:  # unsupervised data only: every row is a dropout pair
            return [], list(range(n))
        aigen, other = [], []
        for i in range(n):
            empty = [c for c in self.levels if self._is_empty(rows[c][i])]
            if not empty:
                aigen.append(i)
            elif len(empty) == len(self.levels):
                other.append(i)
            else:
                present = [c for c in self.levels if c not in empty]
                raise ValueError(f"row {i}: levels {empty} are empty but {present} are not; an NGCSE row has all "
                                 f"{len(self.levels)} levels (an aigen group) or none (an unsupervised sentence).")
        return aigen, other

    # ------------------------------------------------------------------ embeddings
    def embed(self, encoder: SentenceEncoder, ids: list[list[int]],
              templates: list[PromptTemplate] | None = None) -> torch.Tensor:
        """One forward pass over ``ids``; the training embedding (head over [MASK]/[CLS], or the pooler). (n, H)."""
        if self.pooler_type != "mask":
            return forward_and_pool(encoder.model, encoder.collate(ids), self.pooler_type, self.head)
        wrapped = [t.apply(x) for t, x in zip(templates, ids)]
        longest = max(len(x) for x in wrapped)
        if longest > encoder.max_length:
            raise ValueError(f"a sentence with its prompt template has {longest} tokens, more than the model's "
                             f"{encoder.max_length}; lower max_length by {len(self.template)}.")
        batch = encoder.collate(wrapped)
        out = encoder.model(**batch, return_dict=True)
        return self.head(mask_pool(out.last_hidden_state, batch["attention_mask"]))  # (n, H)

    def parts(self, encoder: SentenceEncoder, rows: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
        """``{"infonce": L1, "ht": L3 (0 without aigen groups of K >= 3), "loss": L1 + beta * L3}``."""
        if dist_utils.world_size() > 1:
            raise NotImplementedError("NGCSE has no multi-process path (the official code raises under DDP too): "
                                      "train it on one process.")
        aigen, other = self.split_rows(rows)
        sent0 = rows["sent0"]
        seqs: list[list[int]] = []
        templates: list[PromptTemplate] = []
        for i in aigen:  # example-major, as the official (abs, K, L) -> (abs * K, L) reshape
            seqs += [sent0[i]] + [rows[c][i] for c in self.levels]
            templates += [self.template] * self.k
        for i in other:
            seqs += [sent0[i], sent0[i]]  # dropout positives
            templates += [self.template, self.pair_template]
        z = self.embed(encoder, seqs, templates if self.pooler_type == "mask" else None)  # one forward
        n_a, dim = len(aigen) * self.k, z.shape[-1]
        a_z = z[:n_a].reshape(len(aigen), self.k, dim)  # (abs, K, H)
        o_z = z[n_a:].reshape(len(other), 2, dim)  # (obs, 2, H)
        anchors = torch.cat([o_z[:, 0], a_z[:, 0]])  # (n, H): other rows first, as the official code
        positives = [o_z[:, 1]] + ([a_z[:, self.positive_index]] if aigen else [])
        l1 = info_nce(anchors, torch.cat(positives), temperature=self.temperature)
        if aigen and self.k >= 3:
            l3 = hierarchical_triplet_loss(a_z[:, 0], a_z[:, 1:], self.margins)
        else:  # official: loss3 stays 0 for K = 2, and is absent without aigen rows
            l3 = l1.new_zeros(())
        return {"infonce": l1, "ht": l3, "loss": l1 + self.beta * l3}

    def loss(self, encoder: SentenceEncoder, rows: dict[str, list[list[int]]]) -> torch.Tensor:
        """The NGCSE loss of one batch, ``rows`` = column -> token ids of B rows."""
        return self.parts(encoder, rows)["loss"]

    def eval_encoder(self, encoder: SentenceEncoder) -> SentenceEncoder:
        """Evaluation encoder sharing the weights: raw [MASK] (PromptEncoder), raw [CLS], or the pooler; no head."""
        if self.pooler_type == "mask":
            return PromptEncoder(encoder.model, encoder.tokenizer, self.template, name=encoder.name)
        return SentenceEncoder(encoder.model, encoder.tokenizer, eval_pooling(self.pooler_type), name=encoder.name)


def freeze_embedding_layer(encoder: SentenceEncoder) -> list[str]:
    """``requires_grad=False`` on the encoder's embedding layer (NGCSE ``custom_param_init``). Returns the names."""
    embeddings = getattr(encoder.model, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        raise ValueError(f"{type(encoder.model).__name__} has no `.embeddings` module to freeze; "
                         "pass freeze_embeddings=False.")
    names = []
    for name, param in embeddings.named_parameters():
        param.requires_grad_(False)
        names.append(f"embeddings.{name}")
    return names


def check_config(config) -> list[str]:
    """Problems with NGCSE's fields (``margins`` is checked, and made a tuple, by TrainConfig itself)."""
    problems = []
    if isinstance(config.beta, bool) or not isinstance(config.beta, (int, float)) or not (
            math.isfinite(config.beta) and config.beta >= 0):
        problems.append(f"beta={config.beta!r} (must be finite and >= 0)")
    if config.positive_index is not None and (isinstance(config.positive_index, bool) or not isinstance(
            config.positive_index, int) or config.positive_index < 1):
        problems.append(f"positive_index={config.positive_index!r} (must be an integer >= 1, 1 = level '5', "
                        "or None for the official 2 if K > 3 else 1)")
    if isinstance(config.aigen_batch_size, bool) or not isinstance(config.aigen_batch_size, int) or \
            config.aigen_batch_size < 0:
        problems.append(f"aigen_batch_size={config.aigen_batch_size!r} (must be an integer >= 0: generated groups "
                        "held back until this many go in one step, 0 = as drawn)")
    return problems


@register("ngcse", fields=("margins", "beta", "positive_index", "freeze_embeddings", "pair_template",
                           "aigen_batch_size"), mask_pooling=True, check=check_config)
def build_ngcse(config, encoder: SentenceEncoder) -> NGCSE:
    """The levels narrow to those of the training data (:meth:`NGCSE.prepare_dataset`)."""
    return NGCSE(encoder, levels=LEVEL_COLUMNS, temperature=config.temperature, margins=config.margins,
                 beta=config.beta, positive_index=config.positive_index, pooler_type=config.pooler_type,
                 freeze_embeddings=config.freeze_embeddings, pair_template=config.pair_template,
                 aigen_batch_size=config.aigen_batch_size)


# ------------------------------------------------------------------ presets
# NGCSE scripts/train_{bert,roberta}_{wiki,nli}_sts.sh (reference §8.4; appendix Table 6): lr 1e-5, batch 256,
# len 32, tau 0.05, beta 1, --pooler_type mask, --use_native_loss --use_loss3 (InfoNCE + HT), eval/save/log every
# 125 steps, no --fp16; embeddings frozen, bare Linear head (custom_param_init). Wiki.STS_HT: data/wiki_sts.jsonl,
# 1 epoch, margins '[[5e-3, 5e-2], []]'; NLI.STS_HT: data/nli_sts.jsonl, 3 epochs, margins (5e-3, 1e-1); the
# collator holds generated groups back until aigen_batch_size = 48 can go in one step (compose_batches).
_NGCSE = dict(method="ngcse", learning_rate=1e-5, batch_size=256, epochs=1, max_length=32, temperature=0.05,
              margins=(5e-3, 5e-2), beta=1.0, positive_index=None, pooler_type="mask", freeze_embeddings=True,
              pair_template=True, aigen_batch_size=48, eval_steps=125, save_steps=125, log_steps=125, precision="fp32")
_NGCSE_NLI = {**_NGCSE, "epochs": 3, "margins": (5e-3, 1e-1)}
PRESETS = {}
for _backbone, _model in (("bert-base", "bert-base-uncased"), ("roberta-base", "roberta-base")):
    PRESETS[f"ngcse-wiki-sts-ht-{_backbone}"] = TrainConfig(model=_model, train_file="ngcse-wiki-sts", **_NGCSE)
    PRESETS[f"ngcse-nli-sts-ht-{_backbone}"] = TrainConfig(model=_model, train_file="ngcse-nli-sts", **_NGCSE_NLI)
# "-tiny": the shipped NLI triplets as K = 3 groups (premise, entailment -> '5', contradiction -> '4'), NLI.STS_HT's
# margins and frozen embeddings, the tiny budget (96 steps) and mean pooling: a random encoder's [CLS] or prompt
# [MASK] state summarises little (PromptBERT's [MASK] pooling relies on a pre-trained MLM). Measured on the shipped
# pairs, seed 42, 96 steps: avg (no head) 54.67 -> 80.35; mask 15.83 -> 23.06; mask without freezing the embeddings
# 15.83 -> 45.52; cls 50.95 -> 50.72. aigen_batch_size scaled with the batch (48 of 256 -> 16 of 32): the toy
# triplets are all generated-style groups, so every drawn batch holds 32 of them and goes out as drawn.
PRESETS["ngcse-tiny"] = TrainConfig(**{**_NGCSE_NLI, **CI_TINY, "train_file": str(COURSE_DATA / "toy_nli.csv"),
                                       "aigen_batch_size": 16})
# ci: the pretrained cselab/smollm2-2l (mean pooling; its embeddings are already frozen by the cut) on the SNLI
# triplets as K = 3 groups (else the toy triplets), NLI.STS_HT's margins, the SimCSE ci budget; every batch of 32
# groups goes out as drawn (aigen_batch_size = batch size).
PRESETS["ngcse-ci"] = TrainConfig(**{**_NGCSE_NLI, **CI_PRETRAINED, "train_file": "text:nli", "aigen_batch_size": 32,
                                     "freeze_embeddings": False})
# laptop: the small BERT on NLI.STS_HT's data, 500 steps; lr 5e-5 = the top of the paper's grid {1e-5, 3e-5,
# 5e-5} (a 4-layer model, like the other laptop presets' raised rates; not tuned).
PRESETS["ngcse-laptop"] = TrainConfig(**{**_NGCSE_NLI, **LAPTOP, "train_file": "ngcse-nli-sts", "learning_rate": 5e-5,
                                         "log_steps": 10})
register_presets(PRESETS)


__all__ = ["LEVEL_COLUMNS", "NGCSE", "NGCSE_POOLER_TYPES", "NLI_LEVEL_COLUMNS", "default_positive_index",
           "freeze_embedding_layer", "ngcse_head"]
