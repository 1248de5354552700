"""Contrastive methods. A method = how its views are built + its loss; see ``simcse.py``.

``build_method(config, encoder)`` returns the training head for a :class:`cselab.configs.TrainConfig`.
A method module provides ``columns`` (training-data columns it reads), ``loss(encoder, rows)``
and ``eval_encoder(encoder)``; the trainer, encoder and evaluator stay generic.
"""
from __future__ import annotations

from .declutr import DeCLUTR, MLMHead, load_mlm_head
from .diffcse import DiffCSE, load_generator
from .esimcse import ESimCSE
from .ngcse import LEVEL_COLUMNS, NGCSE
from .simcse import SimCSE


# The TrainConfig fields each method reads beyond the generic ones (the others' fields are ignored).
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "unsup-simcse": (),
    "sup-simcse": ("hard_negative_weight",),
    "esimcse": ("dup_rate", "queue_size", "momentum", "momentum_init"),
    "diffcse": ("generator", "lambda_weight", "masking_ratio", "batchnorm", "rtd_include_padding"),
    "declutr": ("num_anchors", "num_positives", "min_span_length", "max_span_length", "span_sampling",
                "scale_spans", "masking_ratio", "mlm_weight"),
    "ngcse": ("margins", "beta", "positive_index", "freeze_embeddings", "pair_template", "aigen_batch_size"),
}
# Speed options: shown only when set, since they change the run's speed, not what it learns.
SPEED_FIELDS = ("length_bucketing", "compile", "static_shapes", "compile_mode", "scale_fix")


def config_view(config) -> dict:
    """The fields that matter for ``config.method``: the generic ones, then the method's own.

    Other methods' fields (e.g. DiffCSE's ``generator`` in a SimCSE run) and speed options left
    at their defaults are left out, so a printed configuration reads like the paper's table.
    """
    if config.method not in METHOD_FIELDS:
        raise ValueError(f"Unknown method {config.method!r}; known: {sorted(METHOD_FIELDS)}.")
    values, defaults = config.to_dict(), type(config)().to_dict()
    claimed = {name for fields in METHOD_FIELDS.values() for name in fields}
    generic = {k: v for k, v in values.items() if k not in claimed
               and (k not in SPEED_FIELDS or v != defaults[k])}
    return {**generic, **{k: values[k] for k in METHOD_FIELDS[config.method]}}


def build_method(config, encoder):
    hidden = encoder.model.config.hidden_size
    init = getattr(encoder.model.config, "initializer_range", 0.02)
    if config.method == "unsup-simcse":
        return SimCSE(hidden, supervised=False, temperature=config.temperature, initializer_range=init,
                      pooler_type=config.pooler_type)
    if config.method == "sup-simcse":
        return SimCSE(hidden, supervised=True, temperature=config.temperature,
                      hard_negative_weight=config.hard_negative_weight, initializer_range=init,
                      pooler_type=config.pooler_type)
    if config.method == "esimcse":
        return ESimCSE(encoder, temperature=config.temperature, dup_rate=config.dup_rate,
                       queue_size=config.queue_size, momentum=config.momentum, momentum_init=config.momentum_init,
                       seed=config.seed, pooler_type=config.pooler_type, initializer_range=init)
    if config.method == "diffcse":
        generator = load_generator(config.generator, encoder)
        return DiffCSE(encoder, generator, temperature=config.temperature, lambda_weight=config.lambda_weight,
                       masking_ratio=config.masking_ratio, batchnorm=config.batchnorm,
                       pooler_type=config.pooler_type, rtd_include_padding=config.rtd_include_padding,
                       initializer_range=init)
    if config.method == "declutr":
        return DeCLUTR(encoder, load_mlm_head(config.model, encoder), temperature=config.temperature,
                       num_anchors=config.num_anchors, num_positives=config.num_positives,
                       min_span_length=config.min_span_length, max_span_length=config.max_span_length,
                       sampling=config.span_sampling, scale_spans=config.scale_spans,
                       mlm_probability=config.masking_ratio, mlm_weight=config.mlm_weight,
                       max_length=config.max_length, seed=config.seed)
    if config.method == "ngcse":  # the levels narrow to those of the training data (NGCSE.prepare_dataset)
        return NGCSE(encoder, levels=LEVEL_COLUMNS, temperature=config.temperature, margins=config.margins,
                     beta=config.beta, positive_index=config.positive_index, pooler_type=config.pooler_type,
                     freeze_embeddings=config.freeze_embeddings, pair_template=config.pair_template,
                     aigen_batch_size=config.aigen_batch_size)
    raise ValueError(f"Unknown method {config.method!r}.")


__all__ = ["DeCLUTR", "DiffCSE", "ESimCSE", "METHOD_FIELDS", "MLMHead", "NGCSE", "SPEED_FIELDS", "SimCSE",
           "build_method", "config_view", "load_generator", "load_mlm_head"]
