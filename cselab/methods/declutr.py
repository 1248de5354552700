"""DeCLUTR (Giorgi et al. 2021): positives are nearby spans of the same document, plus MLM.

Views (§2, official ``sample_anchor_positive_pairs``, reference §7.1): from each document of the
batch, :func:`cselab.augment.sample_spans` draws ``num_anchors`` anchor spans (long, disjoint)
and ``num_positives`` positive spans per anchor (short, overlapping, adjacent to or inside the
anchor). A batch of B documents gives N = B * num_anchors anchors. Spans are drawn afresh every
time a document is seen, from a generator seeded by (seed, process rank, number of draws so
far); the draw counter is a buffer, so a resumed run draws the same spans.

Static shapes (``TrainConfig.static_shapes``) work but change the draws: the MLM masks are drawn over
the padded batch, so another padding width masks other tokens (same 15 % rate); spans longer than
the largest listed length keep their own length, so long-span runs get little from the option.

Loss (§2.2, ``DeCLUTR.forward``, reference §7.2)::

    e_i   = mean-pool(encoder(mask(anchor_i)))          # the MLM-masked anchor, (N, H)
    ē_i   = mean_k mean-pool(encoder(positive_ik))      # positives averaged per anchor, (N, H)
    L_con = NT-Xent(e, ē; τ = 0.05)                     # symmetric: 2N rows, 2N - 2 negatives each
    L     = L_con + mlm_weight * L_MLM                  # 1 : 1 in the paper

NT-Xent is :func:`cselab.losses.info_nce` with ``symmetric=True`` (pytorch-metric-learning's
``NTXentLoss`` with labels ``cat(r, r)``: every ordered positive pair, mean over the 2N).
``L_MLM`` is the cross-entropy of the MLM head on the masked anchor tokens (15 %, BERT's
80/10/10, :func:`cselab.augment.mask_tokens`); the anchor embedding comes from the same masked
forward pass, as in the official code. Mean pooling averages every non-pad token, the special
tokens included (AllenNLP ``BagOfEmbeddingsEncoder(averaged=True)``); there is no projection head,
so training and evaluation use the same embedding.

One forward pass runs over the masked anchors and the positives together. The official code
joins a span's subword tokens to text and tokenises it again (max 510 + 2 special tokens); here
the span's token ids are used directly with the special tokens added, which gives the same ids
up to the tokenizer's normalisation. The MLM head uses the encoder's input embedding matrix as
its output layer (tied, as BERT's and RoBERTa's heads are); its other weights come from the
pretrained checkpoint when it has them (:func:`load_mlm_head`).

``ci`` on ``cselab/smollm2-2l``: a decoder has no MLM head nor [MASK] token, so that preset runs the
official contrastive-only ablation (``mlm_weight=0``: no MLM loss, anchors unmasked).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..augment import mask_tokens, sample_spans
from ..configs import CI_PRETRAINED, CI_TINY, COURSE_DATA, LAPTOP, TrainConfig, register_presets
from ..distributed import gather_with_grad, rank, world_size
from ..encoders import TINY_PRESET, SentenceEncoder, masked_mean
from ..losses import info_nce
from .base import Method, register


class MLMHead(nn.Module):
    """BERT/RoBERTa's masked-LM head: dense -> GELU -> LayerNorm -> tied decoder + bias.

    ``forward(hidden, embeddings)`` returns logits (n, vocab) for hidden states (n, H), with the
    decoder weight taken from ``embeddings`` (the encoder's input word embeddings, (vocab, H)).
    """

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.dense.weight, std=initializer_range)
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(hidden)))  # (n, H)
        return F.linear(x, embeddings, self.bias)  # (n, vocab)


# where the head's weights live in the masked-LM checkpoints DeCLUTR and the course use
_HEAD_LAYOUTS = (  # (dense, layer norm, bias) attribute paths
    ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias"),  # RoBERTa, DistilRoBERTa
    ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias"),  # BERT
    ("vocab_transform", "vocab_layer_norm", "vocab_projector.bias"),  # DistilBERT
)


def _attr(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def mlm_head_from(masked_lm: nn.Module, head: MLMHead) -> bool:
    """Copy a transformers masked-LM model's head weights into ``head``; False if no layout fits."""
    for dense, norm, bias in _HEAD_LAYOUTS:
        parts = [_attr(masked_lm, p) for p in (dense, norm, bias)]
        if all(p is not None for p in parts):
            with torch.no_grad():
                head.dense.load_state_dict(parts[0].state_dict())
                head.layer_norm.load_state_dict(parts[1].state_dict())
                head.bias.copy_(parts[2])
            return True
    return False


def load_mlm_head(name_or_path: str, encoder: SentenceEncoder) -> MLMHead:
    """The MLM head for ``encoder``: pretrained weights from ``name_or_path`` when it has them.

    ``cselab/tiny`` (random weights) gets a random head. Otherwise the checkpoint is loaded with
    ``AutoModelForMaskedLM`` (local directory or Hugging Face cache first, then the hub); if it
    has no MLM head (e.g. a sentence-transformers export), the head starts random with a warning.
    """
    config = encoder.model.config
    head = MLMHead(config.hidden_size, encoder.model.get_input_embeddings().weight.shape[0],
                   getattr(config, "layer_norm_eps", 1e-12), getattr(config, "initializer_range", 0.02))
    if name_or_path == TINY_PRESET:
        return head
    from transformers import AutoModelForMaskedLM

    from ..utils import quiet_transformers  # no LOAD REPORT table: the missing keys are checked below

    try:
        with quiet_transformers():
            masked_lm, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True,
                                                                   trust_remote_code=False)
        masked_lm = masked_lm.float()  # a float16 checkpoint: compute in fp32
    except (OSError, ValueError) as exc:
        warnings.warn(f"DeCLUTR: no masked-LM checkpoint at {name_or_path!r} ({exc}); the MLM head starts "
                      "from random weights.", stacklevel=2)
        return head
    missing = [k for k in info.get("missing_keys", []) if any(s in k for s in ("lm_head", "predictions", "vocab_"))]
    if not mlm_head_from(masked_lm, head) or missing:
        warnings.warn(f"DeCLUTR: {name_or_path!r} has no pretrained MLM head (missing {missing[:3]}); the head "
                      "starts from random weights.", stacklevel=2)
        return MLMHead(config.hidden_size, head.bias.shape[0], head.layer_norm.eps,
                       getattr(config, "initializer_range", 0.02))
    return head


@functools.lru_cache(maxsize=8)  # called every training step: tokenise the probe once per tokenizer
def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence (e.g. [CLS] / [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    raise ValueError(f"{type(tokenizer).__name__}: cannot find where a sequence goes between its special tokens.")


class DeCLUTR(Method):
    """DeCLUTR's training head: span views, symmetric NT-Xent and MLM on the anchors.

    Args:
        encoder: the encoder being trained (its tokenizer adds special tokens and masks).
        mlm_head: from :func:`load_mlm_head` (None: a random head of the right size).
        temperature: τ of NT-Xent (0.05).
        num_anchors, num_positives: spans per document / positives per anchor (2, 2).
        min_span_length, max_span_length: span limits in subword tokens (32, 512).
        sampling: positive sampling strategy of :func:`cselab.augment.sample_spans` (None = official).
        scale_spans: shrink the span limits for short documents instead of raising.
        mlm_probability: share of anchor tokens masked for the MLM loss (0.15).
        mlm_weight: weight of the MLM loss (1; 0 turns it off and leaves the anchors unmasked, the
            official ``contrastive_only.jsonnet`` ablation, and the setting for a decoder without an MLM).
        max_length: longest encoder input, special tokens included (DeCLUTR: 512).
        seed: seed of the span draws.
        scale_fix: multiply the contrastive loss (not the MLM loss) by the number of processes,
            undoing DDP's 1/N gradient scale of the gathered negatives (``DeCLUTR.forward``).
    """

    columns = ("text",)
    keep_columns = ("title",)  # kept untokenised so errors can name the document

    def __init__(self, encoder: SentenceEncoder, mlm_head: MLMHead | None = None, temperature: float = 0.05,
                 num_anchors: int = 2, num_positives: int = 2, min_span_length: int = 32,
                 max_span_length: int = 512, sampling: str | None = None, scale_spans: bool = False,
                 mlm_probability: float = 0.15, mlm_weight: float = 1.0, max_length: int = 512,
                 seed: int = 0, scale_fix: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}.")
        if not mlm_weight >= 0:
            raise ValueError(f"mlm_weight must be >= 0, got {mlm_weight}.")
        if max_length < 3:
            raise ValueError(f"max_length={max_length}: an input needs its special tokens and one span token.")
        if mlm_head is None:
            config = encoder.model.config
            mlm_head = MLMHead(config.hidden_size, encoder.model.get_input_embeddings().weight.shape[0],
                               getattr(config, "layer_norm_eps", 1e-12), getattr(config, "initializer_range", 0.02))
        self.mlm_head = mlm_head
        self.temperature = temperature
        self.num_anchors, self.num_positives = num_anchors, num_positives
        self.min_span_length, self.max_span_length = min_span_length, max_span_length
        self.sampling, self.scale_spans = sampling, scale_spans
        self.mlm_probability, self.mlm_weight = mlm_probability, mlm_weight
        self.max_length, self.seed = max_length, seed
        self.scale_fix = scale_fix
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # checkpointed: resume redraws alike
        self.last_stats: dict[str, torch.Tensor] = {}

    def scale_for_world(self, loss: torch.Tensor, world: int) -> torch.Tensor:
        """``scale_fix`` is applied inside :meth:`loss`, to the contrastive part only (official)."""
        return loss

    @property
    def tokenize_kwargs(self) -> dict:
        """How the trainer tokenises documents: whole, without special tokens (spans get them later)."""
        return {"add_special_tokens": False, "truncation": False, "verbose": False}

    @property
    def min_document_length(self) -> int:
        """The official rule: a document needs ``num_anchors * max_span_length * 2`` tokens."""
        return self.num_anchors * self.max_span_length * 2

    def prepare_dataset(self, dataset, tokenizer):
        """Check every document against the minimum length before training starts."""
        lengths = [len(ids) for ids in dataset["text"]]
        titles = dataset["title"] if "title" in dataset.column_names else [""] * len(lengths)
        floor = 2 * self.num_anchors if self.scale_spans else self.min_document_length
        short = [i for i, n in enumerate(lengths) if n < floor]
        if short:
            i = short[0]
            name = f"document {i + 1}" + (f" ({titles[i]!r})" if titles[i] else "")
            fix = ("use longer documents or fewer anchors" if self.scale_spans else
                   "drop shorter documents (DeCLUTR keeps only documents of >= 2048 tokens, see "
                   "cselab.data.write_documents), lower max_span_length, or set scale_spans=True")
            raise ValueError(f"{len(short)} of {len(lengths)} training documents are shorter than the "
                             f"{floor} tokens DeCLUTR's sampler needs; the first is {name} with {lengths[i]} "
                             f"tokens. To fix: {fix}.")
        return dataset

    def spans(self, documents: list[list[int]], titles: list[str] | None = None):
        """Draw anchors and positives for a batch of tokenised documents (advances the draw counter).

        Returns ``(anchors, positives)``: N id lists and N * num_positives id lists (anchor-major).
        """
        rng = np.random.default_rng([self.seed, rank(), int(self.draws)])
        self.draws += 1
        anchors, positives = [], []
        for i, ids in enumerate(documents):
            sample = sample_spans(ids, self.num_anchors, self.num_positives, self.min_span_length,
                                  self.max_span_length, self.sampling, rng, scale_to_document=self.scale_spans,
                                  document=repr(titles[i]) if titles and titles[i] else f"document {i} of the batch")
            anchors += sample.anchors
            for group in sample.positives:
                positives += group
        return anchors, positives

    def _inputs(self, tokenizer, spans: list[list[int]]) -> list[list[int]]:
        """``[CLS] span [SEP]`` / ``<s> span </s>``: the tokenizer's own single-sequence template."""
        prefix, suffix = special_tokens_around(tokenizer)
        room = self.max_length - len(prefix) - len(suffix)
        return [prefix + list(ids[:room]) + suffix for ids in spans]

    def loss(self, encoder: SentenceEncoder, rows: dict) -> torch.Tensor:
        anchors, positives = self.spans(rows["text"], rows.get("title"))
        return self.loss_on_spans(encoder, anchors, positives)

    def loss_on_spans(self, encoder: SentenceEncoder, anchors: list[list[int]],
                      positives: list[list[int]]) -> torch.Tensor:
        """The DeCLUTR loss for N anchor spans and N * num_positives positive spans (anchor-major)."""
        n, k = len(anchors), self.num_positives
        if len(positives) != n * k:
            raise ValueError(f"{len(positives)} positives for {n} anchors; expected {n} * {k}.")
        tokenizer = encoder.tokenizer
        batch = encoder.collate(self._inputs(tokenizer, anchors) + self._inputs(tokenizer, positives))
        labels = torch.full_like(batch["input_ids"][:n], -100)  # (N, seq)
        if self.mlm_weight > 0:  # contrastive_only.jsonnet (weight 0) masks nothing
            masked, labels = mask_tokens(batch["input_ids"][:n], tokenizer, self.mlm_probability,
                                         batch["attention_mask"][:n])
            batch["input_ids"] = torch.cat([masked, batch["input_ids"][n:]])  # only the anchors are masked
        hidden = encoder.model(**batch, return_dict=True).last_hidden_state  # (N + N*k, seq, H)
        pooled = masked_mean(hidden, batch["attention_mask"])  # special tokens included, as official
        anchor_emb = pooled[:n]  # (N, H), from the masked anchors
        positive_emb = pooled[n:].view(n, k, -1).mean(dim=1)  # (N, H): positives averaged per anchor
        contrastive = info_nce(gather_with_grad(anchor_emb), gather_with_grad(positive_emb),
                               temperature=self.temperature, symmetric=True)
        if self.scale_fix:  # official: only the contrastive loss is multiplied by the world size
            contrastive = contrastive * world_size()
        selected = labels != -100  # (N, seq)
        if self.mlm_weight > 0:
            logits = self.mlm_head(hidden[:n][selected], encoder.model.get_input_embeddings().weight)
            # sum / count, not mean: a batch without a masked token gives 0, not NaN
            mlm = F.cross_entropy(logits.float(), labels[selected], reduction="sum") / selected.sum().clamp(min=1)
        else:
            mlm = contrastive.new_zeros(())
        self.last_stats = {"contrastive": contrastive.detach(), "mlm": mlm.detach(),
                           "masked_tokens": selected.sum().detach()}
        return contrastive + self.mlm_weight * mlm

    def eval_encoder(self, encoder: SentenceEncoder) -> SentenceEncoder:
        """Mean pooling, no head: the same embedding as in training."""
        return SentenceEncoder(encoder.model, encoder.tokenizer, "avg", name=encoder.name)


SPAN_SAMPLINGS = (None, "subsuming", "adjacent")  # None = DeCLUTR's own; the other two are its ablations


def check_config(config) -> list[str]:
    """Problems with DeCLUTR's fields (span counts and lengths, the sampling rule, the MLM part)."""
    problems = []
    for name in ("num_anchors", "num_positives", "min_span_length", "max_span_length"):
        if getattr(config, name) < 1:
            problems.append(f"{name}={getattr(config, name)} (must be >= 1)")
    if config.min_span_length > config.max_span_length:
        problems.append(f"min_span_length={config.min_span_length} > max_span_length={config.max_span_length}")
    if config.span_sampling not in SPAN_SAMPLINGS:
        problems.append(f"span_sampling={config.span_sampling!r} (choose None, 'subsuming' or 'adjacent')")
    if not 0 < config.masking_ratio < 1:
        problems.append(f"masking_ratio={config.masking_ratio} (must be in (0, 1))")
    if not config.mlm_weight >= 0 or config.mlm_weight == float("inf"):
        problems.append(f"mlm_weight={config.mlm_weight} (must be finite and >= 0)")
    return problems


@register("declutr", fields=("num_anchors", "num_positives", "min_span_length", "max_span_length", "span_sampling",
                             "scale_spans", "masking_ratio", "mlm_weight"), check=check_config)
def build_declutr(config, encoder: SentenceEncoder) -> DeCLUTR:
    head = load_mlm_head(config.model, encoder) if config.mlm_weight > 0 else None  # unused at weight 0
    return DeCLUTR(encoder, head, temperature=config.temperature,
                   num_anchors=config.num_anchors, num_positives=config.num_positives,
                   min_span_length=config.min_span_length, max_span_length=config.max_span_length,
                   sampling=config.span_sampling, scale_spans=config.scale_spans,
                   mlm_probability=config.masking_ratio, mlm_weight=config.mlm_weight,
                   max_length=config.max_length, seed=config.seed, scale_fix=config.scale_fix)


# ------------------------------------------------------------------ presets
# DeCLUTR training_config/declutr.jsonnet (reference §7.3): 4 documents per step (8 anchors, 16
# positives), 1 epoch, lr 5e-5, AdamW eps 1e-6, weight decay 0.1 (not on bias/LayerNorm), grad norm 1,
# slanted triangular schedule, AMP, tau 0.05, spans 32-512, MLM 15 %, mean pooling. DeCLUTR selects no
# checkpoint; here STS-B dev is still evaluated every 1000 steps and OUTPUT/best kept (the final model
# is the result's final_score). correct_bias=False of AllenNLP's AdamW has no torch equivalent.
_DECLUTR = dict(method="declutr", train_file="openwebtext", batch_size=4, learning_rate=5e-5, epochs=1,
                max_length=512, temperature=0.05, pooler_type="avg", weight_decay=0.1, adam_epsilon=1e-6,
                lr_schedule="slanted_triangular", num_anchors=2, num_positives=2, min_span_length=32,
                max_span_length=512, masking_ratio=0.15, mlm_weight=1.0, eval_steps=1000, save_steps=1000)
PRESETS = {
    "declutr-small": TrainConfig(model="distilroberta-base", **_DECLUTR),
    "declutr-base": TrainConfig(model="roberta-base", **_DECLUTR),
    # "-tiny": the course's 96 toy stories (data/toy_docs.jsonl, 111-436 tokens), spans of 8-32 tokens scaled
    # down for the shortest stories, 8 stories per step, 8 epochs = 96 steps like the other "-tiny" presets.
    "declutr-tiny": TrainConfig(**{**_DECLUTR, "min_span_length": 8, "max_span_length": 32, "max_length": 64,
                                   **CI_TINY, "train_file": str(COURSE_DATA / "toy_docs.jsonl"), "batch_size": 8,
                                   "epochs": 8, "scale_spans": True}),
    # laptop: a small pretrained BERT on the 60 WikiText articles of `cselab download wikitext-docs`
    # (433-13,916 words): spans of 32-128 tokens, scaled down for the shortest articles, 500 steps.
    "declutr-laptop": TrainConfig(**{**_DECLUTR, **LAPTOP, "train_file": "wikitext-docs", "batch_size": 4,
                                     "min_span_length": 32, "max_span_length": 128, "max_length": 130,
                                     "scale_spans": True, "epochs": 100, "eval_steps": 100, "save_steps": 100}),
    # ci: the WikiText-2 test articles (else the toy stories), 8 documents a step, spans of 16-64 tokens (scaled
    # down for short documents); the decoder has no MLM head, so this is the official contrastive_only ablation.
    "declutr-ci": TrainConfig(**{**_DECLUTR, **CI_PRETRAINED, "train_file": "text:documents", "batch_size": 8,
                                 "min_span_length": 16, "max_span_length": 64, "max_length": 66,
                                 "scale_spans": True, "mlm_weight": 0.0, "epochs": 100}),
}
register_presets(PRESETS)
