"""Exercise checks of chapter 04."""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import info_nce
from ._checking import _Case, _check, _embeddings


def _no_nan(exercise: str, fn: Callable) -> Callable:
    def wrapped(*args):
        out = fn(*args)
        if out is not None and torch.isnan(torch.as_tensor(out, dtype=torch.float64)).any():
            raise AssertionError(f"{exercise}: your result contains NaN. Hint: w * eye(B) or mask * -inf gives "
                                 "0 * -inf = nan off the diagonal; add w by indexing, or use masked_fill.")
        return out
    return wrapped


def _same_premise(premises, upper_only: bool = False) -> torch.Tensor:
    """(B, B) bool: True at (i, j), i != j, where rows i and j have the same premise (j > i only, if asked)."""
    b = len(premises)
    return torch.tensor([[premises[i] == premises[j] and i != j and (j > i or not upper_only) for j in range(b)]
                         for i in range(b)], dtype=torch.bool).reshape(b, b)


def _duplicate_aware(a, p, n, premises, t, *, positive=True, hard=False, upper_only=False):
    """Supervised SimCSE loss (alpha = 1) with the same-premise entries of the chosen blocks set to -inf."""
    a, p, n = (F.normalize(x, dim=-1) for x in (a, p, n))
    same = _same_premise(premises, upper_only)
    pos_block, hard_block = a @ p.T / t, a @ n.T / t  # (B, B) each
    if positive:
        pos_block = pos_block.masked_fill(same, float("-inf"))
    if hard:
        hard_block = hard_block.masked_fill(same, float("-inf"))
    return F.cross_entropy(torch.cat([pos_block, hard_block], dim=1), torch.arange(len(a)))


def _finite_loss(exercise: str, fn: Callable) -> Callable:
    def wrapped(a, p, n, premises, t):
        try:
            out = fn(a, p, n, list(premises), t)  # a copy: an in-place edit must not change the reference's input
        except RuntimeError as err:
            if "boolean mask" in str(err):
                hint = "the mask must be a bool tensor (True = remove); build it with comparisons or dtype=torch.bool."
            elif "must match the size" in str(err):
                hint = "the mask needs one entry per logit: shape (B, 2B), the entailment block and then the " \
                       "contradiction block, not (B, B)."
            else:
                raise
            raise AssertionError(f"{exercise}: on premises {list(premises)} your mask fails in masked_fill "
                                 f"({err}).\nHint: {hint}") from None
        if out is not None and not torch.isfinite(torch.as_tensor(out, dtype=torch.float64)).all():
            raise AssertionError(
                f"{exercise}: your loss is inf or NaN (premises {list(premises)}, tau={t}).\nHint: never mask the "
                "diagonal: entry (i, i) of the positive block is row i's target, and a target logit of -inf makes "
                "the loss infinite. Mask (i, j) only for i != j. And fill with masked_fill: a 0/1 mask multiplied "
                "by -inf gives 0 * -inf = NaN.")
        return out
    return wrapped


def check_duplicate_aware_loss(fn: Callable) -> None:
    """Exercise 4.1: ``fn(z1, z2, z3, premises, temperature)`` = supervised SimCSE's loss (alpha = 1) in which
    row i no longer counts the entailment of another row with the same premise as a negative."""
    # the first batch tells every known mistake apart; then no duplicates, one premise for all, a batch of one
    specs = [(["a", "b", "a", "c"], 0.05), (["x", "y", "x", "x", "z", "y"], 0.1), (["a", "b", "c"], 1.0),
             (["p", "p", "p"], 0.5), (["s"], 0.05)]
    cases = [_Case(f"B={len(k)}, premises {k}, tau={t}", (*_embeddings(120 + s, 3 * len(k), 8).split(len(k)), k, t))
             for s, (k, t) in enumerate(specs)]

    def first_rows_only(a, p, n, premises, t):
        keep = [i for i, x in enumerate(premises) if premises.index(x) == i]
        return info_nce(a[keep], p[keep], temperature=t, negatives=n[keep])

    def as_positives(a, p, n, premises, t):
        a, p, n = (F.normalize(x, dim=-1) for x in (a, p, n))
        logits = torch.cat([a @ p.T, a @ n.T], dim=1) / t
        mine = _same_premise(premises) | torch.eye(len(a), dtype=torch.bool)
        return (logits.logsumexp(1) - (a @ p.T / t).masked_fill(~mine, float("-inf")).logsumexp(1)).mean()

    _check("Exercise 4.1", _finite_loss("Exercise 4.1", fn), _duplicate_aware, cases, [
        (lambda a, p, n, k, t: info_nce(a, p, temperature=t, negatives=n), "nothing was removed: row i still "
         "counts the entailment of another row with the same premise as a negative."),
        (lambda a, p, n, k, t: _duplicate_aware(a, p, n, k, t, hard=True), "remove the same-premise entries of the "
         "POSITIVE block only: a contradiction of the same premise contradicts row i's premise too, so it is a "
         "real negative (section 3)."),
        (lambda a, p, n, k, t: _duplicate_aware(a, p, n, k, t, positive=False, hard=True), "you masked the "
         "contradictions (the right block); the false negatives are the entailments, in the left block."),
        (lambda a, p, n, k, t: _duplicate_aware(a, p, n, k, t, upper_only=True), "mask both (i, j) and (j, i): "
         "row j treats row i's entailment as a negative just as row i treats row j's."),
        (first_rows_only, "keep every row and remove logits, not rows: each duplicate row is still a training "
         "example with its own entailment."),
        (as_positives, "that counts the other rows' entailments of the same premise as extra POSITIVES (in the "
         "numerator); this exercise only takes them out of the denominator."),
    ])


def check_count_false_negatives(fn: Callable) -> None:
    """Exercise 4.2: ``fn(premises)`` = ordered pairs (i, j), i != j, of a batch with identical premises."""
    # the mixed batch comes early: there every known mistake gives a different number
    batches = [["a", "b", "c"], ["a", "b", "a", "a", "b"], ["a", "a"], ["x"] * 4 + ["y"], []]
    reference = lambda b: sum(c * (c - 1) for c in Counter(b).values())  # noqa: E731
    _check("Exercise 4.2", fn, reference, [_Case(repr(b), (b,)) for b in batches], [
        (lambda b: reference(b) // 2, "count ORDERED pairs: row i sees j's entailment and row j sees i's."),
        (lambda b: sum(c for c in Counter(b).values() if c > 1),
         "that counts rows with a repeated premise; count pairs (i, j) of such rows."),
        (lambda b: len(b) - len(set(b)), "that counts extra copies; each pair (i, j), i != j, is one false negative."),
    ], tol=0)


def check_alpha_zero_loss(fn: Callable) -> None:
    """Exercise 4.3: ``fn(z1, z2, z3, temperature)`` = supervised loss with alpha = 0 (own hard negative removed)."""
    cases = [_Case(f"B={b}, tau={t}", (*_embeddings(10 + s, 3 * b, 8).split(b), t))
             for s, (b, t) in enumerate([(4, 0.05), (7, 0.1), (2, 1.0)])]
    _check("Exercise 4.3", _no_nan("Exercise 4.3", fn),
           lambda a, p, n, t: info_nce(a, p, t, negatives=n, hard_negative_weight=-math.inf), cases, [
               (lambda a, p, n, t: info_nce(a, p, t),
                "that is 'no hard negatives'; alpha = 0 keeps the OTHER rows' contradictions."),
               (lambda a, p, n, t: info_nce(a, p, t, negatives=n),
                "that is alpha = 1; the own contradiction must leave the denominator."),
           ])
