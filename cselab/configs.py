"""Training configurations and the registry of presets.

A :class:`TrainConfig` holds everything a run needs; :data:`PRESETS` names the papers'
settings (SimCSE Table A.1 and the official run scripts; reference §2.3, §3.3) plus
``laptop``, ``ci`` and ``-tiny`` variants that only swap the model, the data and the budget
(:data:`LAPTOP`, :data:`CI_PRETRAINED`, :data:`CI_TINY`). Each method module defines its own
presets and registers them (:func:`register_presets`).
``resolve_config(name, overrides)`` applies ``key=value`` overrides with type checks, so a
bad key or value fails before any work starts.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .encoders import MASK_POOLER, SMOLLM2_PRESET, TINY_PRESET, TRAIN_POOLERS, eval_pooling

COURSE_DATA = Path(__file__).resolve().parents[1] / "data"
LR_SCHEDULES = ("linear", "slanted_triangular")


EVAL_DATA_NAMES = {"stsb-dev": "STS-B dev", "sample": "the shipped scored pairs (data/sts_sample.tsv)",
                   "auto": "STS-B dev (the shipped scored pairs when the data root lacks it)"}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are unsupervised SimCSE-BERT-base (SimCSE Table A.1).

    Attributes:
        method: ``unsup-simcse``, ``sup-simcse``, ``esimcse``, ``diffcse``, ``declutr`` or
            ``ngcse`` (:mod:`cselab.methods`).
        model: hub id, local directory, or ``cselab/tiny``.
        train_file: a registry name (``wiki1m``, ``nli``) or a path: ``.txt`` one sentence per
            line, ``.csv`` with ``sent0,sent1[,hard_neg]``, ``.tsv`` with a ``sentence`` column,
            ``.jsonl`` documents ``{"title", "text"}`` (DeCLUTR; registry name ``openwebtext``).
            NGCSE reads its graded groups (:func:`cselab.methods.ngcse.read_graded_groups`): ``.jsonl``
            rows ``{"split", "sentence", "5", "4", "3"}`` (registry ``ngcse-wiki-sts``,
            ``ngcse-nli-sts``), a ``.csv`` ``sent0,sent1,hard_neg`` as K = 3 groups (sentence,
            entailment -> ``level5``, contradiction -> ``level4``), or ``.txt``/``.tsv`` sentences
            as unsupervised rows.
        max_train_samples: use only the first N training examples (None = all).
        batch_size: examples per step on each process (SimCSE: per device; DeCLUTR: documents).
        learning_rate: AdamW peak learning rate.
        weight_decay: AdamW weight decay, never on biases and LayerNorm weights (SimCSE: 0,
            DeCLUTR: 0.1).
        adam_epsilon: AdamW epsilon (HF Trainer: 1e-8, DeCLUTR: 1e-6).
        lr_schedule: ``linear`` (decay to 0 without warm-up, HF Trainer) or ``slanted_triangular``
            (Howard & Ruder 2018, AllenNLP's default cut_frac 0.1 and ratio 32; DeCLUTR).
        epochs: passes over the data.
        max_steps: stop after this many steps (None = ``epochs`` full passes).
        max_length: truncation length in tokens (SimCSE: 32).
        temperature: InfoNCE temperature tau (SimCSE: 0.05).
        hard_negative_weight: log(alpha) for supervised SimCSE (SimCSE's best: 0, alpha = 1).
        pooler_type: SimCSE's ``--pooler_type``: ``cls`` = MLP over [CLS] in training (unsup:
            raw [CLS] at evaluation, sup: MLP kept); ``cls_before_pooler``, ``avg``, ``avg_top2``,
            ``avg_first_last`` = that pooler, no MLP, in training and evaluation. NGCSE also takes
            ``mask``: PromptBERT's template and the hidden state at ``[MASK]`` (official), its
            bare Linear head over ``[MASK]``/``[CLS]`` in training only.
        dropout: hidden and attention dropout of the encoder (the only noise of unsup SimCSE).
        eval_steps: evaluate and keep the best checkpoint every N steps (SimCSE scripts: 125).
        eval_data: ``stsb-dev`` (SimCSE's model selection), ``sample`` (the shipped pairs) or ``auto``
            (STS-B dev when the data root has it, else the shipped pairs).
        eval_max_pairs: evaluate on a fixed random subset of this many pairs
            (:meth:`cselab.data.ScoredPairs.subset`, seed 0) instead of all; None = all.
        save_steps: write a resumable checkpoint every N steps.
        log_steps: print/record the running loss every N steps.
        seed: seed of initialisation, data order and dropout (HF Trainer default 42).
        grad_clip: max gradient norm (HF default 1.0).
        precision: ``auto`` (bf16 autocast on CUDA if supported, else fp16; fp32 on CPU),
            ``fp32``, ``bf16`` or ``fp16`` (the last two need CUDA).
        scale_fix: multiply the loss by the world size under DDP, undoing the 1/N gradient
            scale of the official gather (reference §4); False reproduces SimCSE.
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda``.
        dup_rate: ESimCSE: share of tokens that may be repeated in the positive view (0.32).
        queue_size: ESimCSE: momentum-queue length M (160); 0 = no queue.
        momentum: ESimCSE: EMA coefficient of the momentum encoder (0.995).
        momentum_init: ESimCSE: ``copy`` of the online encoder, or ``random`` (official code).
        generator: DiffCSE: the frozen MLM generator (hub id, directory, or ``cselab/tiny-mlm``).
        lambda_weight: DiffCSE: weight of the replaced-token-detection loss (0.005).
        masking_ratio: DiffCSE: masking probability of the generator's input (0.30); DeCLUTR: MLM
            masking probability of the anchors (0.15).
        batchnorm: DiffCSE: BatchNorm projector (True) or SimCSE's Linear + Tanh MLP.
        rtd_include_padding: DiffCSE: average the RTD loss over padding too (official: True).
        num_anchors: DeCLUTR: anchor spans per document (2).
        num_positives: DeCLUTR: positive spans per anchor, averaged into one (2).
        min_span_length: DeCLUTR: shortest span in subword tokens (32).
        max_span_length: DeCLUTR: longest span (512); documents need 2 * num_anchors * this tokens.
        span_sampling: DeCLUTR: ``None`` (official), ``subsuming`` or ``adjacent`` positives.
        scale_spans: DeCLUTR: shrink the span limits for documents shorter than the rule needs
            (:func:`cselab.augment.sample_spans` ``scale_to_document``); False raises instead.
        mlm_weight: DeCLUTR: weight of the MLM loss (1; 0 = contrastive only).
        margins: NGCSE: hierarchical-triplet margins per adjacent pair of levels, the last one
            reused (Wiki.STS_HT (5e-3, 5e-2), NLI.STS_HT (5e-3, 1e-1)); ``--set margins=0.005,0.05``.
        beta: NGCSE: weight of the hierarchical triplet loss, L = InfoNCE + beta * HT (1).
        positive_index: NGCSE: which level of a generated group is the InfoNCE positive, 1-based
            (1 = ``'5'``); None = the official ``2 if K > 3 else 1`` (``'4'`` for STS groups).
        freeze_embeddings: NGCSE: freeze the encoder's embedding layer (official: True).
        pair_template: NGCSE with ``mask`` pooling: the second view of an unsupervised pair uses
            the official pair template (``this sentence of "x" means [MASK]``; True).
        aigen_batch_size: NGCSE: generated groups wait until this many go in one step with that step's
            unsupervised rows (official collator, 48; 0 = as drawn).
        length_bucketing: speed option, 0 = off (the official order). N > 0: each pool of N global
            batches of the shuffled order is sorted by token length, cut into batches, and the
            batches of a pool shuffled (:func:`cselab.train.length_bucketed_order`), so a batch pads
            to little more than its own length. It changes which sentences are in-batch negatives
            (similar lengths), hence the results: README "Speed options" gives the measured effect.
        compile: speed option: ``torch.compile`` the encoder's forward (dynamic shapes). Same
            weights and checkpoints; the first steps are slower while it compiles, and dropout masks
            come from inductor's generator, not eager mode's. Measured no faster for BERT-base at
            64 x 32 on an H200 (README "Benchmarks"); tested with SimCSE, not with DiffCSE's hook.
        static_shapes: speed option for CUDA graphs, () = off. Pad every training batch to the
            smallest of these lengths that holds its longest row (e.g. ``(16, 32)``), so shapes
            repeat; a longer row keeps its own length. Padding is masked, so without dropout the
            losses equal the dynamic path's (tested to 1e-6) except where a method reads padding
            (DiffCSE's RTD loss with ``rtd_include_padding``; DeCLUTR's MLM masks, drawn over the
            padded batch). With ``compile`` it compiles for static shapes in ``compile_mode``.
        compile_mode: ``torch.compile`` mode with ``compile``: ``"default"`` or ``"reduce-overhead"``
            (CUDA graphs: forward and backward replayed without per-kernel launches; needs
            ``static_shapes``).
    """

    method: str = "unsup-simcse"
    model: str = "bert-base-uncased"
    train_file: str = "wiki1m"
    max_train_samples: int | None = None
    batch_size: int = 64
    learning_rate: float = 3e-5
    epochs: int = 1
    max_steps: int | None = None
    max_length: int = 32
    temperature: float = 0.05
    hard_negative_weight: float = 0.0
    pooler_type: str = "cls"
    dropout: float = 0.1
    eval_steps: int = 125
    eval_data: str = "stsb-dev"
    eval_max_pairs: int | None = None
    save_steps: int = 125
    log_steps: int = 10
    seed: int = 42
    grad_clip: float = 1.0
    precision: str = "auto"
    scale_fix: bool = False
    device: str = "auto"
    dup_rate: float = 0.32
    queue_size: int = 160
    momentum: float = 0.995
    momentum_init: str = "copy"
    generator: str = "distilbert-base-uncased"
    lambda_weight: float = 0.005
    masking_ratio: float = 0.30
    batchnorm: bool = True
    rtd_include_padding: bool = True
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    lr_schedule: str = "linear"
    num_anchors: int = 2
    num_positives: int = 2
    min_span_length: int = 32
    max_span_length: int = 512
    span_sampling: str | None = None
    scale_spans: bool = False
    mlm_weight: float = 1.0
    margins: tuple[float, ...] = (5e-3, 5e-2)
    beta: float = 1.0
    positive_index: int | None = None
    freeze_embeddings: bool = True
    pair_template: bool = True
    aigen_batch_size: int = 48
    length_bucketing: int = 0
    compile: bool = False
    static_shapes: tuple[int, ...] = ()
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        problems = self._generic_problems() + self._method_problems() + self._speed_problems()
        if problems:
            raise ValueError("Invalid training configuration: " + "; ".join(problems) + ".")

    def _generic_problems(self) -> list[str]:
        """The loop's, data's and model's fields (every method reads them)."""
        problems = []
        margins = self.margins
        if isinstance(margins, (list, tuple)) and all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                                      for m in margins):
            object.__setattr__(self, "margins", tuple(float(m) for m in margins))  # JSON gives a list back
            if not self.margins or not all(math.isfinite(m) and m >= 0 for m in self.margins):
                problems.append(f"margins={self.margins} (must be one or more finite values >= 0)")
        else:
            problems.append(f"margins={margins!r} (must be a tuple of numbers, e.g. (0.005, 0.05))")
        from .methods.base import REGISTRY  # here, not at import: the method modules import this module

        if self.method not in REGISTRY:  # the methods registered by cselab.methods (and any the user adds)
            problems.append(f"method={self.method!r} (choose one of {list(REGISTRY)})")
        for name in ("batch_size", "epochs", "eval_steps", "save_steps", "log_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.max_length < 2:  # one message: room for [CLS] and [SEP] at least
            problems.append(f"max_length={self.max_length} (must be >= 2: the special tokens alone take 2)")
        if not str(self.train_file).strip():
            problems.append("train_file='' (give a registry name such as 'wiki1m' or 'nli', or a file path)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps={self.max_steps} (must be >= 1 or None)")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            problems.append(f"max_train_samples={self.max_train_samples} (must be >= 1 or None)")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate={self.learning_rate} (must be > 0)")
        if not self.temperature > 0:
            problems.append(f"temperature={self.temperature} (must be > 0)")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout} (must be in [0, 1))")
        if not self.hard_negative_weight == self.hard_negative_weight or self.hard_negative_weight == float("inf"):
            problems.append(f"hard_negative_weight={self.hard_negative_weight} (must be finite, or -inf for alpha = 0)")
        if not self.grad_clip > 0:
            problems.append(f"grad_clip={self.grad_clip} (must be > 0)")
        prompting = [name for name, spec in REGISTRY.items() if spec.mask_pooling]  # methods that wrap inputs
        spec = REGISTRY.get(self.method)
        if self.pooler_type == MASK_POOLER and not (spec and spec.mask_pooling):
            problems.append(f"pooler_type={MASK_POOLER!r} with method={self.method!r} ([MASK] prompt pooling is "
                            f"for {prompting} only; {self.method} takes one of {list(TRAIN_POOLERS)})")
        elif self.pooler_type not in (*TRAIN_POOLERS, MASK_POOLER):
            problems.append(f"pooler_type={self.pooler_type!r} (choose one of {list(TRAIN_POOLERS)}, or "
                            f"{MASK_POOLER!r} with method {prompting})")
        if not self.weight_decay >= 0 or self.weight_decay == float("inf"):
            problems.append(f"weight_decay={self.weight_decay} (must be finite and >= 0)")
        if not 0 < self.adam_epsilon < 1:
            problems.append(f"adam_epsilon={self.adam_epsilon} (must be in (0, 1))")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule={self.lr_schedule!r} (choose one of {list(LR_SCHEDULES)})")
        if self.eval_max_pairs is not None and self.eval_max_pairs < 2:
            problems.append(f"eval_max_pairs={self.eval_max_pairs} (must be >= 2 or None)")
        if self.eval_data not in EVAL_DATA_NAMES:
            problems.append(f"eval_data={self.eval_data!r} (choose one of {sorted(EVAL_DATA_NAMES)})")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"precision={self.precision!r} (choose auto, fp32, bf16, fp16)")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device={self.device!r} (choose auto, cpu, cuda)")
        return problems

    def _method_problems(self) -> list[str]:
        """The method fields, each checked by the module of the method that reads it (its ``check``)."""
        from .methods.base import REGISTRY

        problems = []
        for spec in REGISTRY.values():
            for problem in spec.check(self) if spec.check else ():
                if problem not in problems:  # a field two methods read (masking_ratio) is reported once
                    problems.append(problem)
        return problems

    def _speed_problems(self) -> list[str]:
        """The speed options (length bucketing, static shapes, torch.compile) and boolean switches."""
        problems = []
        if isinstance(self.length_bucketing, bool) or not isinstance(self.length_bucketing, int) or \
                self.length_bucketing < 0:
            problems.append(f"length_bucketing={self.length_bucketing!r} (must be an integer >= 0: batches per "
                            "sorted pool, 0 = off)")
        shapes = self.static_shapes
        if isinstance(shapes, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in shapes):
            object.__setattr__(self, "static_shapes", tuple(shapes))  # JSON gives a list back
            if any(x < 1 for x in shapes) or list(shapes) != sorted(set(shapes)):
                problems.append(f"static_shapes={tuple(shapes)} (must be increasing lengths >= 1, e.g. (16, 32))")
        else:
            problems.append(f"static_shapes={shapes!r} (must be a tuple of token lengths, e.g. (16, 32), or ())")
        if self.compile_mode not in ("default", "reduce-overhead"):
            problems.append(f"compile_mode={self.compile_mode!r} (choose 'default' or 'reduce-overhead')")
        elif self.compile_mode == "reduce-overhead" and not self.static_shapes:
            problems.append("compile_mode='reduce-overhead' replays CUDA graphs, which need repeating shapes: "
                            "set static_shapes too, e.g. --set static_shapes=16,32")
        for name in ("freeze_embeddings", "pair_template", "compile"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r} (must be True or False)")
        return problems

    @property
    def train_pooling(self) -> str:
        """The pooling of the encoder the trainer loads (methods pool for their loss themselves).

        ``cls``: ``cls_before_pooler``: SimCSE-style methods put their own MLP over the raw [CLS]
        vector (official ``cl_forward``) and never use the backbone's pooler, so a checkpoint
        without pooler weights (hub ``roberta-base`` in recent transformers) must load too.
        ``mask``: ``cls_before_pooler`` as well (NGCSE wraps its inputs and pools at [MASK])."""
        return "cls_before_pooler" if self.pooler_type in ("cls", MASK_POOLER) else self.pooler_type

    @property
    def eval_pooling(self) -> str:
        """cls: raw [CLS] (MLP only at train time: unsup SimCSE, ESimCSE, DiffCSE, NGCSE), sup SimCSE
        [CLS] + MLP (SimCSE §2.2, §3.2); ``mask``: raw [MASK] state of the prompt
        (:class:`cselab.encoders.PromptEncoder`); otherwise the pooler itself."""
        from .methods.base import REGISTRY

        spec = REGISTRY.get(self.method)
        return eval_pooling(self.pooler_type, mlp_at_eval=bool(spec and spec.mlp_at_eval))

    @property
    def eval_data_name(self) -> str:
        """``eval_data`` as a reader would name it in a printed table."""
        subset = f", a fixed random subset of {self.eval_max_pairs} pairs" if self.eval_max_pairs else ""
        return EVAL_DATA_NAMES[self.eval_data] + subset

    def to_dict(self) -> dict:
        """The fields as JSON stores them: tuples (``margins``) become lists; :func:`config_from_dict` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# The profiles' budgets, shared by the methods' presets (each method module holds its own presets and registers
# them with register_presets; cselab.methods.simcse is the model to read).
# ci on the tiny random encoder (the "-tiny" presets) on the shipped toy data, 3 epochs of 32 steps (about 10 s on
# 2 cores). Mean pooling, not [CLS]: a random [CLS] summarises nothing yet (see cselab.methods.simcse); measured on
# the shipped pairs, seed 42, 32 steps: cls 50.95 -> 47.06, avg 54.67 -> 60.70.
CI_TINY = dict(model=TINY_PRESET, pooler_type="avg", epochs=3, batch_size=32, learning_rate=3e-4, eval_steps=32,
               save_steps=32, log_steps=8, eval_data="sample", device="cpu", precision="fp32")
# ci on the pretrained offline encoder cselab/smollm2-2l (SmolLM2-135M-Instruct's first two blocks, mean pooling of
# the raw block-2 state), on real sentences when the data root has them ("text:..." training files), else the
# shipped files; a fixed 500-pair subset of STS-B dev, evaluated every 10 steps, keeps the best checkpoint
# (SimCSE's model selection). 40 steps of batch 32 at lr 2e-4, about 0.3 s (unsupervised) and 0.5 s (supervised) a
# step on 2 cores: unsupervised training first repairs the massive block-2 dimensions, then over-fits the dropout
# task and falls (data/README.md), so the runs stay short.
CI_PRETRAINED = dict(model=SMOLLM2_PRESET, pooler_type="avg", batch_size=32, learning_rate=2e-4, max_steps=40,
                     eval_steps=10, save_steps=10, log_steps=5, eval_data="auto", eval_max_pairs=500, device="cpu",
                     precision="fp32")
# laptop: a small real pretrained BERT from the hub, 500 steps.
LAPTOP = dict(model="google/bert_uncased_L-4_H-256_A-4", max_steps=500, batch_size=64, eval_steps=100,
              save_steps=100, device="auto")


class _Presets(Mapping):
    """Preset name -> :class:`TrainConfig`, filled by the method modules (:func:`register_presets`).

    Reading it imports :mod:`cselab.methods`, so every course method's presets are there."""

    def __init__(self) -> None:
        self._presets: dict[str, TrainConfig] = {}

    def _loaded(self) -> dict[str, TrainConfig]:
        import cselab.methods  # noqa: F401  (its modules call register_presets)

        return self._presets

    def __getitem__(self, name: str) -> TrainConfig:
        return self._loaded()[name]

    def __iter__(self):
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


PRESETS: Mapping[str, TrainConfig] = _Presets()


def register_presets(presets: dict[str, TrainConfig]) -> None:
    """Add a method module's presets; a taken name is an error, so no module silently replaces another's."""
    for name, config in presets.items():
        if name in PRESETS._presets:
            raise ValueError(f"preset {name!r} is already registered; pick another name.")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"preset {name!r} is a {type(config).__name__}, not a TrainConfig.")
        PRESETS._presets[name] = config


def parse_value(config_field: dataclasses.Field, text: str):
    """Turn the text of ``--set key=value`` into the field's type; raise ValueError naming the key."""
    kind = str(config_field.type)
    optional = "None" in kind
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if kind.startswith("tuple[float"):  # margins=0.005,0.05 (brackets or parentheses allowed)
            items = [x.strip() for x in text.strip().strip("()[]").split(",")]
            if not items or any(x == "" for x in items):
                raise ValueError
            return tuple(float(x) for x in items)
        if kind.startswith("tuple[int"):  # static_shapes=16,32 ("" or "()" = off)
            items = [x.strip() for x in text.strip().strip("()[]").split(",") if x.strip()]
            return tuple(int(x) for x in items)
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        return text
    except ValueError:
        raise ValueError(f"--set {config_field.name}={text!r}: expected {kind}.") from None


def _method_field(key: str, base: TrainConfig, overrides: dict[str, str]) -> str:
    """``esimcse.queue_size`` -> ``queue_size``, after checking that the run trains that method and that the
    field is one it reads (a plain key passes through)."""
    if "." not in key:
        return key
    from .methods.base import REGISTRY

    method, field_name = key.split(".", 1)
    if method not in REGISTRY:
        raise ValueError(f"--set {key}: no method {method!r}; registered: {list(REGISTRY)}.")
    trained = overrides.get("method", base.method)
    if method != trained:
        raise ValueError(f"--set {key}: this run trains {trained!r}, not {method!r}; set {trained}.<field> or "
                         f"method={method}.")
    if field_name not in REGISTRY[method].fields:
        raise ValueError(f"--set {key}: {method} has no field {field_name!r}; its fields are "
                         f"{list(REGISTRY[method].fields)} (generic fields take no prefix).")
    return field_name


def resolve_config(preset: str, overrides: dict[str, str] | list[str] | None = None, **values) -> TrainConfig:
    """A preset with ``key=value`` text overrides (CLI) and/or typed keyword overrides (Python).

    Raises:
        ValueError: unknown preset, unknown key, or a value of the wrong type or range.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    known = {f.name: f for f in fields(TrainConfig)}
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"--set {item!r}: expected key=value.")
            key, text = item.split("=", 1)
            pairs[key.strip()] = text.strip()
        overrides = pairs
    parsed = {}
    for key, text in (overrides or {}).items():
        key = _method_field(key, PRESETS[preset], overrides or {})
        if key not in known:
            raise ValueError(f"Unknown configuration key {key!r}; known keys: {sorted(known)}.")
        parsed[key] = parse_value(known[key], text)
    for key in values:
        if key not in known:
            raise ValueError(f"Unknown configuration key {key!r}; known keys: {sorted(known)}.")
    return replace(PRESETS[preset], **parsed, **values)


def config_from_dict(data: dict) -> TrainConfig:
    """The inverse of :meth:`TrainConfig.to_dict` after a JSON round trip (lists become tuples again)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"Unknown configuration key(s) {sorted(unknown)}.")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}  # JSON arrays: tuple fields
    return TrainConfig(**data)

