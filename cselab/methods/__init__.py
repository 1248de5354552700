"""Contrastive methods. A method = how its views are built + its loss; see ``simcse.py``.

Each method module registers a builder under the method's name (:func:`cselab.methods.base.register`);
``build_method(config, encoder)`` returns the training head for a :class:`cselab.configs.TrainConfig`.
A method provides ``columns`` (training-data columns it reads), ``loss(encoder, rows)`` and
``eval_encoder(encoder)``; the trainer, encoder and evaluator stay generic. A new method is one new
module with a registered builder (``tests/test_method_registry.py`` adds one in a test).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from .base import REGISTRY, Method, build_method, method_names, register
from . import simcse, esimcse, diffcse, declutr, ngcse  # noqa: I001  registration (and preset) order = teaching order
from .declutr import DeCLUTR, MLMHead, load_mlm_head
from .diffcse import DiffCSE, load_generator
from .esimcse import ESimCSE
from .ngcse import LEVEL_COLUMNS, NGCSE
from .simcse import SimCSE


class _MethodFields(Mapping):
    """Method name -> the TrainConfig fields it reads beyond the generic ones, live from the registry."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return REGISTRY[name].fields

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


METHOD_FIELDS: Mapping[str, tuple[str, ...]] = _MethodFields()
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


__all__ = ["DeCLUTR", "DiffCSE", "ESimCSE", "METHOD_FIELDS", "MLMHead", "Method", "NGCSE", "REGISTRY", "SPEED_FIELDS",
           "SimCSE", "build_method", "config_view", "load_generator", "load_mlm_head", "method_names", "register"]
