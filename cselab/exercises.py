"""Checks for the chapters' exercises.

Each ``check_*`` runs the learner's function and a reference on seeded inputs (edge
cases included). On success it prints one line; on failure it raises ``AssertionError``
saying what differs (shape, or value on which input) and, when the answer matches a
known mistake, a hint about that mistake -- never just "wrong".
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from .losses import alignment, info_nce, uniformity


class _Case:
    def __init__(self, label: str, args: tuple):
        self.label, self.args = label, args


def _close(a, b, tol: float) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=tol))


def _check(exercise: str, learner: Callable, reference: Callable, cases: list[_Case],
           mistakes: list[tuple[Callable, str]] = (), tol: float = 1e-5) -> None:
    for case in cases:
        try:
            got = learner(*case.args)
        except NotImplementedError:
            raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` line.") from None
        if got is None:
            raise AssertionError(f"{exercise}: your function returned None on {case.label}; did you forget `return`?")
        want = reference(*case.args)
        got_t, want_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
        if got_t.shape != want_t.shape:
            raise AssertionError(
                f"{exercise}: on {case.label} the result has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}."
            )
        if not _close(got_t, want_t, tol):
            hint = ""
            for wrong, message in mistakes:
                if _close(got_t, wrong(*case.args), tol):
                    hint = f"\nHint: {message}"
                    break
            shown = lambda t: f"{t.item():.6f}" if t.numel() == 1 else f"{t.flatten()[:4].tolist()} ..."  # noqa: E731
            raise AssertionError(
                f"{exercise}: on {case.label} you return {shown(got_t)}, expected {shown(want_t)}.{hint}"
            )
    print(f"{exercise}: correct on {len(cases)} test inputs.")


def _embeddings(seed: int, batch: int, dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------ chapter 01
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


def check_identical_embeddings_loss(fn: Callable) -> None:
    """Exercise 1.3: ``fn(batch_size)`` = SimCSE's InfoNCE when every embedding is the same vector."""
    # batch size 2 last: there log(B - 1) = 0 would shadow the hint for answering 0
    cases = [_Case(f"batch size {b}", (b,)) for b in (3, 64, 512, 2)]
    _check("Exercise 1.3", fn, lambda b: math.log(b), cases, [
        (lambda b: math.log(b - 1), "the positive is in the denominator too: B terms, all equal."),
        (lambda b: math.log(2 * b - 1), "that is the symmetric NT-Xent count (2B - 1 terms); SimCSE's rows score "
         "one anchor against the B positives only."),
        (lambda b: 0.0, "all logits are equal, so the softmax is uniform, not one-hot."),
    ], tol=1e-9)


# ------------------------------------------------------------------ chapter 02
def _padded_batch(seed: int, batch: int, seq: int, dim: int):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq, dim, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, seq + 1, (batch,), generator=g)
    lengths[0] = seq  # one full row, one length-1 row: the edge cases
    lengths[-1] = 1
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return hidden, mask


def check_mean_pooling(fn: Callable) -> None:
    """Exercise 2.1: ``fn(last_hidden, attention_mask)`` = masked mean, (batch, seq, dim) -> (batch, dim)."""
    cases = [_Case(f"a padded batch {b}x{s}x{d}", _padded_batch(i, b, s, d))
             for i, (b, s, d) in enumerate([(3, 5, 4), (6, 9, 8), (2, 1, 3)])]

    def reference(h, m):
        w = m.unsqueeze(-1).to(h.dtype)
        return (h * w).sum(1) / w.sum(1)

    _check("Exercise 2.1", fn, reference, cases, [
        (lambda h, m: h.mean(1), "padding positions are averaged in: weight tokens by the attention mask."),
        (lambda h, m: (h * m.unsqueeze(-1)).sum(1) / h.shape[1], "divide by the number of real tokens per "
         "sentence (attention_mask.sum(1)), not by the padded length."),
        (lambda h, m: h[:, 0], "this is CLS pooling (the first token); average over the real tokens instead."),
    ])


def _subsets(seed: int, sizes: tuple[int, ...]):
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        gold = rng.uniform(0, 5, n)
        system = 0.3 * gold + rng.normal(0, 1, n) + k  # subsets on different scales, as in real STS years
        out.append((system, gold))
    return out


def check_all_setting(fn: Callable) -> None:
    """Exercise 2.2: ``fn(subsets)`` = Spearman of the "all" setting, subsets = [(system, gold), ...]."""
    cases = [_Case(f"{len(s)} subsets of sizes {s}", (_subsets(i, s),))
             for i, s in enumerate([(50, 80, 30), (200, 10), (40,)])]

    def reference(subsets):
        return spearmanr(np.concatenate([s for s, _ in subsets]), np.concatenate([g for _, g in subsets]))[0]

    mean = lambda subsets: float(np.mean([spearmanr(s, g)[0] for s, g in subsets]))  # noqa: E731

    def wmean(subsets):
        sizes = np.array([len(g) for _, g in subsets])
        return float((np.array([spearmanr(s, g)[0] for s, g in subsets]) * sizes).sum() / sizes.sum())

    _check("Exercise 2.2", fn, reference, cases, [
        (mean, "that is the 'mean' setting; 'all' computes ONE correlation over the concatenated subsets."),
        (wmean, "that is the 'wmean' setting; 'all' concatenates the subsets before correlating."),
        (lambda subsets: 100 * reference(subsets), "return the raw correlation, not x 100."),
    ], tol=1e-9)


def check_anisotropy(fn: Callable) -> None:
    """Exercise 2.3: ``fn(embeddings)`` = mean cosine similarity over distinct pairs, (n, dim) -> scalar."""
    def shifted(seed, n, d, shift):
        return _embeddings(seed, n, d) + shift

    cases = [_Case(f"{n} vectors in {d}-D (mean offset {m})", (shifted(i, n, d, m),))
             for i, (n, d, m) in enumerate([(10, 4, 0.0), (30, 8, 2.0), (2, 3, 1.0)])]

    def reference(x):
        x = F.normalize(x, dim=-1)
        n = len(x)
        return ((x @ x.T).sum() - n) / (n * (n - 1))

    def with_diagonal(x):
        x = F.normalize(x, dim=-1)
        return (x @ x.T).mean()

    _check("Exercise 2.3", fn, reference, cases, [
        (with_diagonal, "leave out i == j: every vector has cosine 1 with itself, which inflates the mean."),
        (lambda x: (x @ x.T).sum().sub(x.pow(2).sum()) / (len(x) * (len(x) - 1)),
         "use cosine similarity: normalise the rows before the dot products."),
    ])


# ------------------------------------------------------------------ chapter 03
def check_unsup_simcse_loss(fn: Callable) -> None:
    """Exercise 3.1: ``fn(z1, z2, temperature)`` = unsupervised SimCSE loss (Eq. 1) of two (B, dim) views."""
    cases = [_Case(f"B={b}, tau={t}", (*_embeddings(20 + s, 2 * b, 8).split(b), t))
             for s, (b, t) in enumerate([(4, 0.05), (6, 0.1), (3, 1.0), (8, 0.5)])]
    near = _embeddings(29, 5, 8)
    cases.append(_Case("views that are near copies", (near, near + 0.1 * _embeddings(30, 5, 8), 0.05)))
    cos = lambda x, y: F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T  # noqa: E731
    ce = lambda logits: F.cross_entropy(logits, torch.arange(len(logits)))  # noqa: E731
    _check("Exercise 3.1", fn, lambda a, b, t: info_nce(a, b, temperature=t), cases, [
        (lambda a, b, t: ce(cos(a, a) / t), "the columns must be the SECOND view (z1 @ z2.T): z1 @ z1.T compares "
         "each view with itself, so the positive logit is always 1 / tau."),
        (lambda a, b, t: ce(a @ b.T / t), "normalise the views first: the logits are cosine similarities."),
        (lambda a, b, t: ce(cos(a, b)), "divide the cosine similarities by the temperature."),
        (lambda a, b, t: info_nce(a, b, temperature=t, symmetric=True), "that is the symmetric NT-Xent (2B rows, "
         "2B - 2 negatives); SimCSE's rows are the first views only, the columns the second views."),
    ])


def check_identical_views_loss(fn: Callable) -> None:
    """Exercise 3.2: ``fn(batch_size, temperature)`` = Eq. 1 when both views coincide and sentences are orthogonal."""
    cases = [_Case(f"B={b}, tau={t}", (b, t)) for b, t in [(64, 0.5), (2, 1.0), (512, 0.2), (32, 0.1), (8, 2.0)]]

    def reference(b, t):
        return math.log1p((b - 1) * math.exp(-1.0 / t))

    _check("Exercise 3.2", fn, reference, cases, [
        (lambda b, t: math.log(b), "log B is the loss when ALL embeddings are equal (collapse); here a sentence's two "
         "views coincide (cosine 1) but different sentences are orthogonal (cosine 0)."),
        (lambda b, t: math.log(b - 1) - 1.0 / t, "the positive is in the denominator too: e^(1/tau) + (B - 1) e^0."),
        (lambda b, t: reference(b, 1.0), "divide the cosines by the temperature: the positive logit is 1 / tau."),
        (lambda b, t: math.log1p(b * math.exp(-1.0 / t)), "each row has B - 1 negatives, not B."),
        (lambda b, t: 0.0, "the negatives still contribute e^0 = 1 each to the denominator, so the loss is above 0."),
    ], tol=1e-6)


def check_alignment_from_views(fn: Callable) -> None:
    """Exercise 3.3: ``fn(z1, z2)`` = alignment (Wang & Isola, alpha = 2) of two (n, dim) views, a scalar."""
    cases = [_Case(f"{n} pairs in {d}-D (noise {e})", (x, x + e * _embeddings(40 + s, n, d)))
             for s, (n, d, e) in enumerate([(6, 8, 0.5), (3, 4, 2.0), (16, 32, 0.1)])
             for x in [_embeddings(50 + s, n, d) * (1 + s)]]

    def reference(a, b):
        return alignment(a, b)

    unit = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    _check("Exercise 3.3", fn, reference, cases, [
        (lambda a, b: (a - b).pow(2).sum(1).mean(), "L2-normalise the rows first: alignment is measured on the "
         "unit sphere."),
        (lambda a, b: (unit(a) - unit(b)).norm(dim=1).mean(), "square the distances (alpha = 2)."),
        (lambda a, b: (unit(a) - unit(b)).pow(2).sum(), "average over the pairs, do not sum."),
        (lambda a, b: (1 - (unit(a) * unit(b)).sum(1)).mean(), "on the unit sphere ||u - v||^2 = 2 - 2 cos(u, v): "
         "you return half of it."),
        (lambda a, b: (unit(a) - unit(b)).pow(2).mean(), "sum the squared differences over the dimensions, then "
         "average over the pairs (you averaged over the dimensions too)."),
    ])


# ------------------------------------------------------------------ chapter 04
def _sup_logits(a, p, n, t, w):
    hard = F.normalize(a, dim=-1) @ F.normalize(n, dim=-1).T / t  # (B, B)
    hard = hard + torch.zeros_like(hard).fill_diagonal_(w)
    return torch.cat([F.normalize(a, dim=-1) @ F.normalize(p, dim=-1).T / t, hard], dim=1)  # (B, 2B)


def _no_nan(exercise: str, fn: Callable) -> Callable:
    def wrapped(*args):
        out = fn(*args)
        if out is not None and torch.isnan(torch.as_tensor(out, dtype=torch.float64)).any():
            raise AssertionError(f"{exercise}: your result contains NaN. Hint: w * eye(B) or mask * -inf gives "
                                 "0 * -inf = nan off the diagonal; add w by indexing, or use masked_fill.")
        return out
    return wrapped


def check_sup_logits(fn: Callable) -> None:
    """Exercise 4.1: ``fn(z1, z2, z3, temperature, weight)`` = supervised SimCSE logits (B, 2B), Eq. 8."""
    cases = [_Case(f"B={b}, tau={t}, w={w:.3g}", (*_embeddings(s, 3 * b, 8).split(b), t, w))
             for s, (b, t, w) in enumerate([(4, 0.05, 0.0), (6, 0.1, math.log(2)), (3, 1.0, -1.5),
                                            (5, 0.05, -math.inf)])]
    cos = lambda x, y: F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T  # noqa: E731
    _check("Exercise 4.1", _no_nan("Exercise 4.1", fn), _sup_logits, cases, [
        (lambda a, p, n, t, w: torch.cat([cos(a, p) / t, cos(a, n) / t + w], 1),
         "add w to the row's OWN hard negative only (the diagonal of the right block)."),
        (lambda a, p, n, t, w: _sup_logits(a, p, n, 1.0, w), "divide the cosines by the temperature."),
        (lambda a, p, n, t, w: torch.cat([a @ p.T / t, a @ n.T / t + torch.zeros(len(a), len(a), dtype=a.dtype)
                                          .fill_diagonal_(w)], 1),
         "the logits are cosine similarities: normalise z1, z2, z3 first."),
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
