"""Text augmentations that build views: ESimCSE's word repetition, BERT-style MLM masking.

ESimCSE (Wu et al. 2022, §3.1) repeats a few tokens of a sentence in place, so the
positive pair no longer shares its length and the model cannot use length as a shortcut.
Two rules of the official code (``caskcsg/sentemb``, ``ESimCSE/train.py:prepare_features``)
are implemented (reference/methods.md §5.1, §14 item 4):

- :func:`word_repetition` -- ``--dup_type bpe``, the rule the published runs use: on subword
  ids, after tokenisation and truncation, applied once at ``datasets.map`` time
  (:func:`repeat_batch`);
- :func:`word_repetition_words` -- ``--dup_type word``, on whitespace words (closer to the
  paper's text), kept for teaching.

Both differ from the paper's description, ``dup_len in [0, max(2, int(dup_rate * len))]``;
the HarderThenHarder Chinese variant (§9) differs again (``randint(0, max(2, int(0.32 * n)))``,
inclusive, only when more than 5 tokens). We follow the official ESimCSE code.

:func:`mask_tokens` is BERT's 80/10/10 masking (DiffCSE's generator input, DeCLUTR's MLM loss).
"""
from __future__ import annotations

import math
import numbers
import random
from typing import Collection, Sequence

import torch

__all__ = ["mask_tokens", "repeat_batch", "word_repetition", "word_repetition_words"]


def _check_args(dup_rate: float, max_dup: int) -> None:
    is_number = isinstance(dup_rate, numbers.Real) and not isinstance(dup_rate, bool)
    if not is_number or math.isnan(dup_rate) or not 0.0 <= dup_rate <= 1.0:
        raise ValueError(f"dup_rate must be a number in [0, 1] (ESimCSE uses 0.32 for BERT), got {dup_rate!r}.")
    if isinstance(max_dup, bool) or not isinstance(max_dup, numbers.Integral) or max_dup < 1:
        raise ValueError(f"max_dup must be an integer >= 1 (ESimCSE hard-codes 10), got {max_dup!r}.")


def _rng(rng: random.Random | None):
    # None: Python's global generator, as the official code (random.randrange / random.sample),
    # so cselab.utils.seed_everything makes it repeatable.
    return random if rng is None else rng


def _duplicate_in_place(items: Sequence, positions: Collection[int]) -> list:
    chosen = set(positions)
    out = []
    for i, item in enumerate(items):
        if i in chosen:
            out.append(item)
        out.append(item)
    return out


def word_repetition(
    input_ids: Sequence[int],
    dup_rate: float = 0.32,
    rng: random.Random | None = None,
    *,
    special_ids: Collection[int] = (),
    max_dup: int = 10,
) -> list[int]:
    """ESimCSE word repetition on subword ids (official ``--dup_type bpe``).

    With ``L = len(input_ids)`` counted *with* [CLS] and [SEP]: if ``int(dup_rate * L) > 0``,
    ``add_len = rng.randrange(min(max_dup, int(dup_rate * L)))`` -- uniform on
    ``0 .. min(10, floor(dup_rate * L)) - 1``, so at most 9 for L = 32 and rate 0.32 -- and
    ``rng.sample(candidates, add_len)`` positions are emitted twice in place, where the
    candidates are ``1 .. L - 2`` (never the first or last token) minus positions whose id is
    in ``special_ids``. With no ``special_ids`` the draws are exactly the official code's
    (``random.sample(range(1, L - 1), add_len)``); if fewer candidates than ``add_len`` remain,
    all are duplicated (the official code would raise there).

    Pass unpadded sequences, as the official code does (it tokenises without padding at map
    time): padding counts in ``L``, and the last position is then a [PAD], so a padded
    sequence's [SEP] is protected only if ``special_ids`` names it (``{sep_id, pad_id}``).

    Note: the paper says ``dup_len in [0, max(2, int(dup_rate * len))]``; this follows the code.
    ``dup_rate = 0`` returns an unchanged copy and draws nothing.

    Args:
        input_ids: one tokenised sequence, (L,), with its special tokens.
        dup_rate: fraction of the length that bounds the number of repetitions, in [0, 1].
        rng: a ``random.Random`` (seeded: deterministic); None uses Python's global generator.
        special_ids: token ids never duplicated (besides the first and last positions).
        max_dup: cap on the number of repetitions plus one (the official ``10``).

    Returns:
        A new list of length ``L + add_len``; ``len(out) - len(input_ids)`` repetitions.
    """
    _check_args(dup_rate, max_dup)
    ids = list(input_ids)
    if not ids:
        raise ValueError("input_ids is empty: pass a tokenised sequence with its [CLS]/[SEP] tokens.")
    length = len(ids)
    bound = int(dup_rate * length)  # the official int(dup_rate * input_len), floats and all
    if bound <= 0:
        return ids
    r = _rng(rng)
    add_len = r.randrange(min(max_dup, bound))
    special = set(special_ids)
    candidates = [i for i in range(1, length - 1) if ids[i] not in special]
    positions = r.sample(candidates, min(add_len, len(candidates)))
    return _duplicate_in_place(ids, positions)


def word_repetition_words(
    sentence: str, dup_rate: float = 0.32, rng: random.Random | None = None, max_dup: int = 10
) -> str:
    """ESimCSE word repetition on whitespace words (official ``--dup_type word``).

    With ``n`` words: ``dup_len = rng.randrange(min(max_dup, n, max(2, int(dup_rate * n))))``
    and ``rng.sample(range(0, n - 1), dup_len)`` word positions are repeated in place. As in
    the official code the first word can be repeated but the *last* never is (positions
    0 .. n - 2), and the ``max(2, .)`` floor means one word can be repeated even for short
    sentences. Words are split on any whitespace and joined with single spaces (the official
    ``split(' ')`` equals this for singly spaced text).

    ``dup_rate = 0`` is an off switch here (unchanged, nothing drawn); the official rule would
    still draw ``randrange(min(10, n, 2))`` because of the floor.

    Args:
        sentence: non-empty text.
        dup_rate: in [0, 1].
        rng: a ``random.Random``; None uses Python's global generator.
        max_dup: cap, as in :func:`word_repetition`.

    Returns:
        The sentence with ``dup_len`` words repeated, single-spaced.
    """
    _check_args(dup_rate, max_dup)
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError(f"sentence must be a non-empty, non-whitespace string, got {sentence!r}.")
    words = sentence.split()
    if dup_rate == 0:
        return " ".join(words)
    n = len(words)
    r = _rng(rng)
    dup_len = r.randrange(min(max_dup, n, max(2, int(dup_rate * n))))
    positions = r.sample(range(0, n - 1), dup_len)
    return " ".join(_duplicate_in_place(words, positions))


def repeat_batch(
    batch_ids: Sequence[Sequence[int]],
    dup_rate: float = 0.32,
    seed: int = 0,
    special_ids: Collection[int] = (),
    max_dup: int = 10,
) -> list[list[int]]:
    """:func:`word_repetition` over many sequences with one ``random.Random(seed)``.

    Meant for ``datasets.map(batched=True)`` at preprocessing time, as the official code
    does once (the repeated views are cached and reused, §5.1). Deterministic in ``seed``.

    Args:
        batch_ids: sequences of token ids, each with its special tokens.
        dup_rate, special_ids, max_dup: as in :func:`word_repetition`.
        seed: seed of the one generator shared by the whole batch.

    Returns:
        One new list of ids per input sequence, in order.
    """
    _check_args(dup_rate, max_dup)
    for index, ids in enumerate(batch_ids):
        if len(ids) == 0:
            raise ValueError(f"batch_ids[{index}] is empty: every sequence needs at least its special tokens.")
    rng = random.Random(seed)
    return [word_repetition(ids, dup_rate, rng, special_ids=special_ids, max_dup=max_dup) for ids in batch_ids]


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float = 0.15,
                attention_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (Devlin et al. 2019 §3.1), as ``DataCollatorForLanguageModeling`` and DiffCSE's
    ``train.py:mask_tokens`` do it.

    Each token is selected with ``probability`` (DiffCSE: 0.30, BERT: 0.15), never a special
    token ([CLS], [SEP], [PAD], ...) nor a padding position; of the selected tokens 80 % become
    ``[MASK]``, 10 % a uniformly random token id and 10 % stay unchanged.

    Args:
        input_ids: (n, seq) token ids; not modified.
        tokenizer: gives ``all_special_ids``, ``mask_token_id`` and ``len(tokenizer)``.
        probability: selection probability in (0, 1).
        attention_mask: (n, seq), 1 for real tokens; padding is never selected.
        generator: a ``torch.Generator`` for reproducible masks (default: the global RNG, which
            the trainer's checkpoints restore).

    Returns:
        ``(masked_ids, labels)``, both (n, seq): labels hold the original id at selected
        positions and -100 elsewhere (ignored by ``cross_entropy``).
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability!r}.")
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no mask token; MLM masking needs one.")
    device = input_ids.device
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, device=device))
    if attention_mask is not None:
        special |= attention_mask == 0
    draw = lambda p: torch.rand(input_ids.shape, generator=generator, device=device) < p  # noqa: E731
    selected = draw(probability) & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    masked = input_ids.clone()
    to_mask = draw(0.8) & selected
    masked[to_mask] = tokenizer.mask_token_id
    to_random = draw(0.5) & selected & ~to_mask  # half of the remaining 20 %
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator, device=device)
    masked[to_random] = random_ids[to_random]
    return masked, labels
