"""The method registry: one module per method registers how to build its training head.

A method is a :class:`Method` (an ``nn.Module``) with

* ``columns``: the training-data columns it reads (``("sent0",)``, ``("sent0", "sent1", "hard_neg")``);
* ``loss(encoder, rows) -> scalar tensor``: its views and its loss for one batch of token-id rows;
* ``eval_encoder(encoder) -> SentenceEncoder``: the encoder as the method evaluates it (e.g. without
  SimCSE's training-only MLP);

and hooks with defaults that a method overrides where it differs: ``read_training_file``,
``tokenize_kwargs``, ``prepare_dataset``, ``compose_batches``, ``on_epoch_start`` and
``scale_for_world``. A module registers
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


class Method(nn.Module):
    """The interface the trainer uses, with a default for every optional part. Subclass it and write
    ``loss``; override a hook only where the method differs. (A plain ``nn.Module`` with ``columns``,
    ``loss`` and ``eval_encoder`` also trains: the trainer takes these defaults for what it lacks.)"""

    columns: tuple[str, ...] = ("sent0",)  # the training-data columns it reads, tokenised
    keep_columns: tuple[str, ...] = ()  # columns kept untokenised, e.g. titles for error messages
    tokenize_kwargs: dict | None = None  # tokenizer options beyond truncation at max_length
    read_training_file: Callable | None = None  # path -> rows, for a file the generic readers do not know

    def loss(self, encoder, rows: dict[str, list[list[int]]]):
        """One batch of token-id rows -> a scalar loss: the method's views, encoder passes and objective."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(encoder, rows)")

    def eval_encoder(self, encoder):
        """The encoder as the method is evaluated (e.g. SimCSE drops its training-only MLP)."""
        return encoder

    def prepare_dataset(self, dataset, tokenizer=None):
        """The tokenised training rows -> the rows batches are drawn from (e.g. ESimCSE's repetition)."""
        return dataset

    def compose_batches(self, batches: list[list[int]], dataset) -> list[list[int]]:
        """An epoch's batches of row indices, possibly regrouped (e.g. NGCSE holds some rows back)."""
        return batches

    def on_epoch_start(self, epoch: int) -> None:
        """Called before an epoch's first step (e.g. ESimCSE empties its queue)."""

    def scale_for_world(self, loss, world: int):
        """``TrainConfig.scale_fix``: undo DDP's 1/N gradient scale by multiplying the loss by the number
        of processes (DeCLUTR's fix). A method that scales only part of its loss overrides this."""
        return loss * world


def hook(method: nn.Module, name: str):
    """``method``'s attribute ``name``, or :class:`Method`'s default when a plain module lacks it."""
    found = getattr(method, name, None)
    if found is not None:
        return found
    default = getattr(Method, name)
    return default.__get__(method) if callable(default) else default


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
