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

:func:`sample_spans` is DeCLUTR's anchor/positive span sampler (Giorgi et al. 2021,
``declutr/common/contrastive_utils.py:sample_anchor_positive_pairs``; reference/methods.md §7.1).
"""
from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass
from typing import Collection, Iterator, Sequence

import numpy as np
import torch

__all__ = ["SpanSample", "mask_tokens", "repeat_batch", "sample_spans", "word_repetition", "word_repetition_words"]


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


# ------------------------------------------------------------------------------ DeCLUTR spans
SAMPLING_STRATEGIES = (None, "subsuming", "adjacent")


@dataclass(frozen=True)
class SpanSample:
    """What :func:`sample_spans` drew from one document.

    ``anchor_spans[i] = (start, end)`` is the slice ``token_ids[start:end]`` of anchor ``i``
    and ``positive_spans[i][j]`` the slice of its ``j``-th positive; ``anchors`` and
    ``positives`` hold the corresponding token lists. ``min_length``/``max_length`` are the
    bounds actually used (smaller than requested when ``scale_to_document`` shrank them).
    Unpacks as ``anchors, positives = sample_spans(...)``.
    """

    anchors: list[list[int]]
    positives: list[list[list[int]]]
    anchor_spans: list[tuple[int, int]]
    positive_spans: list[list[tuple[int, int]]]
    min_length: int
    max_length: int

    def __iter__(self) -> Iterator:
        return iter((self.anchors, self.positives))


class _Draws:
    """The official code's four kinds of draws on any of the supported generators.

    ``None`` is NumPy's legacy global generator (``np.random.*``) -- the very calls of the
    official code, so ``np.random.seed(s)`` (or :func:`cselab.utils.seed_everything`) reproduces
    its spans exactly; a ``np.random.RandomState`` gives the same draws locally.
    """

    def __init__(self, rng) -> None:
        if rng is None:
            rng = np.random.mtrand._rand  # the generator behind np.random.beta / randint / choice
        if isinstance(rng, np.random.RandomState):
            self.beta = rng.beta
            self.integers = rng.randint  # high-exclusive
            self.choice = lambda items: items[int(rng.choice(len(items)))]
        elif isinstance(rng, np.random.Generator):
            self.beta = rng.beta
            self.integers = lambda low, high: int(rng.integers(low, high))  # high-exclusive
            self.choice = lambda items: items[int(rng.integers(len(items)))]
        elif isinstance(rng, random.Random):
            self.beta = rng.betavariate
            self.integers = rng.randrange  # high-exclusive
            self.choice = rng.choice
        else:
            raise ValueError(
                "rng must be a numpy.random.Generator, a numpy.random.RandomState, a random.Random "
                f"or None (NumPy's global generator), got {type(rng).__name__}."
            )


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (DeCLUTR uses 2), got {value!r}.")


def sample_spans(
    token_ids: Sequence[int],
    num_anchors: int = 2,
    num_positives: int = 2,
    min_length: int = 32,
    max_length: int = 512,
    sampling: str | None = None,
    rng: np.random.Generator | random.Random | None = None,
    *,
    scale_to_document: bool = False,
    document: str = "document",
) -> SpanSample:
    """DeCLUTR's anchor/positive span sampler on one tokenised document.

    Follows ``declutr/common/contrastive_utils.py:sample_anchor_positive_pairs`` (methods.md
    §7.1), with ``N = len(token_ids)``, ``min``/``max`` = ``min_length``/``max_length``
    (official ``min_span_len = 32``, ``max_span_len = 512``):

    - **Minimum length**: ``N >= num_anchors * max * 2`` (2048 for the defaults), otherwise
      ``ValueError`` (DeCLUTR#203) -- unless ``scale_to_document`` (below).
    - **Anchors**: the valid starts are the buckets ``range(0, N - max + 1, max)``. For each
      anchor ``i``: ``len_a = int(Beta(4, 2) * (max - min) + min)`` (skewed long); a bucket is
      drawn uniformly among those left -- or, in the official edge case
      ``len(left) // (num_anchors - i) < num_anchors - i``, uniformly between the first and the
      last one left; ``start ~ U{bucket, ..., bucket + max - len_a}``; then the bucket and its
      neighbours in the list are removed, so anchors (each inside its own bucket) never overlap.
    - **Positives**, ``num_positives`` per anchor ``[a_start, a_end)``:

      - ``sampling=None`` (the official default, the one the paper's configs use):
        ``len_p = int(Beta(2, 4) * (max - min) + min)`` (skewed short) and
        ``start ~ U{max(0, a_start - len_p), ..., min(a_end, N - len_p)}``, so a positive is
        adjacent to (either side), overlaps, subsumes or is subsumed by its anchor;
      - ``"subsuming"``: ``len_p = int(Beta(2, 4) * (len_a - min) + min)`` and
        ``start ~ U{a_start, ..., a_end - len_p}``: always inside the anchor;
      - ``"adjacent"``: ``len_p = int(Beta(2, 4) * (max_p - min) + min)`` with
        ``max_p = min(max, max(a_start, N - a_end))``, and ``start`` drawn uniformly from the
        sides that fit: ``a_start - len_p`` if ``a_start - len_p > 0`` (the official strict
        ``>``), ``a_end`` if ``a_end + len_p <= N``. If neither fits (only possible when
        ``len_p == a_start``, where the official ``np.random.choice([])`` would crash), the
        positive ends at the anchor's start (``start = 0``).

    Draws happen in the official order, one beta then one integer per span (plus the bucket
    draw), so with ``rng=None`` after ``np.random.seed(s)`` -- or a ``np.random.RandomState(s)``
    -- the spans are exactly the official code's on the same tokens. Deterministic for a seeded
    generator. The official code then joins the spans to text and retokenises them (max 510);
    here they stay token-id lists.

    ``scale_to_document=True`` lets a short document through (chapter 07's small course
    documents): ``max_length`` becomes ``min(max_length, N // (2 * num_anchors))`` -- the
    largest value that satisfies the minimum-length rule -- and ``min_length`` becomes
    ``min(min_length, new max_length)``. Long enough documents are unchanged. It still needs
    ``N >= 2 * num_anchors`` (spans of at least one token).

    Args:
        token_ids: the tokenised document (subword ids, as DeCLUTR's configs; any items work).
        num_anchors: anchors per document (DeCLUTR: 2).
        num_positives: positives per anchor (DeCLUTR: 2).
        min_length: shortest span, ``1 <= min_length <= max_length`` (DeCLUTR: 32).
        max_length: longest span (DeCLUTR: 512).
        sampling: ``None`` (official default), ``"subsuming"`` or ``"adjacent"``.
        rng: ``numpy.random.Generator``, ``random.Random`` or ``numpy.random.RandomState``;
            ``None`` uses NumPy's global generator, as the official code.
        scale_to_document: shrink the span lengths to fit a short document (see above).
        document: name of the document, used in error messages.

    Returns:
        A :class:`SpanSample` (unpacks as ``anchors, positives``): ``num_anchors`` anchors and,
        per anchor, ``num_positives`` positives, each with its ``(start, end)`` slice.
    """
    _check_count("num_anchors", num_anchors)
    _check_count("num_positives", num_positives)
    for name, value in (("min_length", min_length), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (DeCLUTR: min 32, max 512), got {value!r}.")
    if min_length > max_length:
        raise ValueError(
            f"min_length ({min_length}) must be <= max_length ({max_length}): lower min_length or raise max_length."
        )
    if sampling not in SAMPLING_STRATEGIES:
        raise ValueError(
            f"sampling must be None (the official default), 'subsuming' or 'adjacent', got {sampling!r}."
        )
    draws = _Draws(rng)
    tokens = list(token_ids)
    n = len(tokens)
    if scale_to_document:
        if n < 2 * num_anchors:
            raise ValueError(
                f"{document} has {n} tokens; even with scale_to_document=True it needs at least "
                f"2 * num_anchors = {2 * num_anchors} tokens (spans of one token). Use a longer document "
                "or fewer anchors."
            )
        max_length = min(max_length, n // (2 * num_anchors))
        min_length = min(min_length, max_length)
    needed = num_anchors * max_length * 2
    if n < needed:
        raise ValueError(
            f"{document} has {n} tokens, but DeCLUTR's sampler needs at least num_anchors * max_length * 2 = "
            f"{num_anchors} * {max_length} * 2 = {needed} tokens. Skip shorter documents (DeCLUTR's "
            "preprocessing keeps only documents above --min-length 2048), lower max_length, or pass "
            "scale_to_document=True."
        )

    span_range = max_length - min_length
    buckets = list(range(0, n - max_length + 1, max_length))
    anchor_spans: list[tuple[int, int]] = []
    positive_spans: list[list[tuple[int, int]]] = []
    for i in range(num_anchors):
        anchor_len = int(draws.beta(4, 2) * span_range + min_length)
        left = num_anchors - i
        if len(buckets) // left < left:  # official edge case: first or last bucket left
            index = draws.choice([0, len(buckets) - 1])
        else:
            index = draws.integers(0, len(buckets))
        bucket = buckets[index]
        a_start = int(draws.integers(bucket, bucket + max_length - anchor_len + 1))
        a_end = a_start + anchor_len
        del buckets[max(0, index - 1) : index + 2]
        anchor_spans.append((a_start, a_end))

        spans = []
        for _ in range(num_positives):
            if sampling == "subsuming":
                p_len = int(draws.beta(2, 4) * (anchor_len - min_length) + min_length)
                p_start = draws.integers(a_start, a_end - p_len + 1)
            elif sampling == "adjacent":
                max_p = min(max_length, max(a_start, n - a_end))
                p_len = int(draws.beta(2, 4) * (max_p - min_length) + min_length)
                sides = []
                if a_start - p_len > 0:
                    sides.append(a_start - p_len)
                if a_end + p_len <= n:
                    sides.append(a_end)
                p_start = draws.choice(sides) if sides else a_start - p_len
            else:
                p_len = int(draws.beta(2, 4) * span_range + min_length)
                p_start = draws.integers(max(0, a_start - p_len), min(a_end, n - p_len) + 1)
            p_start = int(p_start)
            spans.append((p_start, p_start + p_len))
        positive_spans.append(spans)

    return SpanSample(
        anchors=[tokens[s:e] for s, e in anchor_spans],
        positives=[[tokens[s:e] for s, e in spans] for spans in positive_spans],
        anchor_spans=anchor_spans,
        positive_spans=positive_spans,
        min_length=min_length,
        max_length=max_length,
    )
