"""Exercise checks of chapter 01."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import info_nce, uniformity
from ._checking import _Case, _check, _embeddings


def check_decoupled_info_nce(fn: Callable) -> None:
    """Exercise 1.1: ``fn(anchors, positives, temperature)`` = decoupled InfoNCE (mean over rows)."""
    cases = [_Case(f"a batch of {b} with temperature {t}", (_embeddings(s, b, 8), _embeddings(s + 1, b, 8), t))
             for s, (b, t) in enumerate([(4, 0.05), (2, 0.1), (16, 1.0), (7, 0.5)])]
    near = _embeddings(9, 6, 8)
    cases.append(_Case("positives equal to the anchors", (near, near.clone(), 0.05)))

    def reference(a, p, t):
        return info_nce(a, p, temperature=t, decoupled=True)

    def dot_not_cosine(a, p, t):
        logits = a @ p.T / t
        eye = torch.eye(len(a), dtype=torch.bool)
        return (torch.logsumexp(logits.masked_fill(eye, float("-inf")), 1) - logits.diagonal()).mean()

    _check("Exercise 1.1", fn, reference, cases, [
        (lambda a, p, t: info_nce(a, p, temperature=t), "this is the standard InfoNCE: the positive must be "
         "left out of the denominator (mask the diagonal before the logsumexp)."),
        (dot_not_cosine, "normalise the embeddings first: the logits are cosine similarities."),
        (lambda a, p, t: info_nce(a, p, temperature=1.0, decoupled=True), "divide the similarities by the temperature."),
    ])


def check_uniformity(fn: Callable) -> None:
    """Exercise 1.2: ``fn(x, t)`` = log E exp(-t ||x_i - x_j||^2) over distinct pairs of normalised rows."""
    cases = [_Case(f"{n} points in {d}-D with t={t}", (_embeddings(s, n, d), t))
             for s, (n, d, t) in enumerate([(5, 3, 2.0), (2, 2, 2.0), (40, 16, 1.0), (9, 4, 4.0)])]

    def with_diagonal(x, t):
        x = F.normalize(x, dim=-1)
        return torch.cdist(x, x).pow(2).mul(-t).exp().mean().log()

    def unnormalised(x, t):
        return torch.pdist(x).pow(2).mul(-t).exp().mean().log()

    _check("Exercise 1.2", fn, lambda x, t: uniformity(x, t), cases, [
        (with_diagonal, "average over distinct pairs i != j only: a point's distance to itself (0) must not count."),
        (unnormalised, "L2-normalise the rows first: uniformity is measured on the unit sphere."),
    ])


def _log(x: float) -> float:
    """``math.log`` that gives -inf at 0, so that a known mistake evaluated on an edge case cannot raise."""
    return math.log(x) if x > 0 else -math.inf


def check_collapsed_supervised_loss(fn: Callable) -> None:
    """Exercise 1.3: ``fn(batch_size, alpha)`` = supervised SimCSE's loss (hard negatives, weight ``alpha`` on
    each row's own one) when every anchor, positive and hard negative is the same vector."""
    # the first case tells every known mistake apart; alpha = 0 (own hard negative removed) and a batch of
    # one (no other rows at all) are the edge cases
    cases = [_Case(f"B={b}, alpha={a}", (b, a))
             for b, a in [(64, 0.5), (3, 2.0), (8, 1.0), (5, 0.0), (1, 2.0), (1, 0.0)]]
    _check("Exercise 1.3", fn, lambda b, a: _log(2 * b - 1 + a), cases, [
        (lambda b, a: _log(b), "that is the collapse value WITHOUT hard negatives (section 5); here every "
         "row's denominator also holds the batch's hard negatives."),
        (lambda b, a: _log(2 * b), "that is right for alpha = 1 only: row i's own hard negative counts alpha "
         "times, the B - 1 other hard negatives once each."),
        (lambda b, a: _log(2 * b - 1), "row i's own hard negative is still in the denominator, weighted by alpha "
         "(it leaves only when alpha = 0)."),
        (lambda b, a: _log(b + a), "the OTHER rows' hard negatives are in every row's denominator too (section 4: "
         "each row scores all B hard negatives of the batch)."),
        (lambda b, a: _log(2 * b + a), "row i's own hard negative is one of the B hard negatives: it counts alpha "
         "times INSTEAD of once, so the denominator holds B positives, B - 1 other hard negatives and alpha."),
        (lambda b, a: _log(2 * b - 2 + a), "the positive itself is in the denominator too (this is not the "
         "decoupled loss of section 6)."),
        (lambda b, a: _log(2 * b - 1 + math.exp(a)), "alpha is the weight itself: log(alpha) is what is added "
         "to the logit, so the own term is e^(s + log alpha) = alpha e^s."),
        (lambda b, a: 0.0, "all logits are equal, so the softmax is spread over every "
         "candidate, not one-hot."),
    ], tol=1e-6)  # a numerical answer computed in float32 is still a correct answer
