"""The method registry: one module per method registers how to build its training head.

A method is an ``nn.Module`` with

* ``columns``: the training-data columns it reads (``("sent0",)``, ``("sent0", "sent1", "hard_neg")``);
* ``loss(encoder, rows) -> scalar tensor``: its views and its loss for one batch of token-id rows;
* ``eval_encoder(encoder) -> SentenceEncoder``: the encoder as the method evaluates it (e.g. without
  SimCSE's training-only MLP);

and, optionally, the hooks the trainer calls when present: ``read_training_file(path)``,
``tokenize_kwargs``, ``prepare_dataset(dataset)`` and ``on_epoch_start(epoch)``. A module registers
a builder ``build(config, encoder) -> method`` under the method's name, with the
:class:`~cselab.configs.TrainConfig` fields it reads beyond the generic ones::

    @register("unsup-simcse")
    def build(config, encoder):
        return SimCSE(encoder.model.config.hidden_size, temperature=config.temperature, ...)

The trainer, configs and CLI then know the method by name (``--preset ... --set method=NAME``), and
a printed configuration shows its fields (:func:`cselab.methods.config_view`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, its builder and the config fields only it reads."""

    name: str
    build: Callable[..., nn.Module]
    fields: tuple[str, ...] = ()
    mlp_at_eval: bool = False  # its MLP over [CLS] is kept for evaluation (supervised SimCSE)
    mask_pooling: bool = False  # it wraps inputs in a prompt and may pool at [MASK] (NGCSE)
    check: Callable[..., list[str]] | None = None  # config -> problems with the fields only it reads


REGISTRY: dict[str, MethodSpec] = {}


def register(name: str, *, fields: tuple[str, ...] = (), mlp_at_eval: bool = False,
             mask_pooling: bool = False, check: Callable[..., list[str]] | None = None) -> Callable:
    """Decorator: register ``build(config, encoder) -> method`` under ``name``.

    ``fields`` are the ``TrainConfig`` fields this method reads beyond the generic ones (printed
    configurations show them only for this method). ``mlp_at_eval``: the method's MLP over [CLS]
    stays in the evaluation encoder (:func:`cselab.encoders.eval_pooling`); ``mask_pooling``: the
    method wraps its inputs in a prompt and accepts ``pooler_type="mask"``. ``check(config)`` returns
    what is wrong with the method's own fields (one message each, naming the field and the range); a
    :class:`~cselab.configs.TrainConfig` runs every registered check when it is built. Registering a taken name
    is an error, so that two modules cannot silently replace each other.
    """
    def decorator(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} is already registered (by {REGISTRY[name].build.__module__}); "
                             "pick another name or unregister it first.")
        REGISTRY[name] = MethodSpec(name, build, tuple(fields), mlp_at_eval, mask_pooling, check)
        return build

    return decorator


def unregister(name: str) -> None:
    """Remove a registered method (tests that register a toy method clean up with this)."""
    REGISTRY.pop(name, None)


def initializer_range(encoder) -> float:
    """The std of the encoder's own weight initialisation (BERT: 0.02), for a method's new layers."""
    return getattr(encoder.model.config, "initializer_range", 0.02)


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    return list(REGISTRY)


def build_method(config, encoder) -> nn.Module:
    """The training head of ``config.method`` for ``encoder``."""
    if config.method not in REGISTRY:
        raise ValueError(f"Unknown method {config.method!r}; registered: {method_names()}.")
    return REGISTRY[config.method].build(config, encoder)
