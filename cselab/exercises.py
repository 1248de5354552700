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


# ------------------------------------------------------------------ chapter 05
def _id_row(ids, width: int) -> torch.Tensor:
    """A token-id list as a fixed-width row ``[length, ids..., -1 padding]`` so that answers of
    different lengths are compared value by value (the length first, where the message shows it)."""
    if ids is None:
        return None  # _check reports the missing `return`
    ids = [int(i) for i in ids]
    if len(ids) + 1 > width:
        width = len(ids) + 1  # longer than any sensible answer: the shape message reports it
    return torch.tensor([len(ids)] + ids + [-1] * (width - 1 - len(ids)), dtype=torch.float64)


def _in_place(ids, positions):
    chosen, out = set(positions), []
    for k, t in enumerate(ids):
        out += [t, t] if k in chosen else [t]
    return out


def check_repeat_tokens(fn: Callable) -> None:
    """Exercise 5.1: ``fn(ids, dup_rate, rng)`` = ESimCSE's official bpe word repetition of one id list.

    ``rng`` is a ``random.Random``; the learner and the reference each get a fresh one with the same seed,
    so the same draws (``randrange`` first, then ``sample``) must give the same list.
    """
    import random

    from .augment import word_repetition

    def ids_of(seed, length):  # [CLS]=2 ... [SEP]=3 around distinct-looking word ids
        g = random.Random(1000 + seed)
        return [2] + [g.randrange(5, 500) for _ in range(length - 2)] + [3]

    # seeds chosen so that the first two cases tell every known mistake apart from the others
    specs = [(5, 32, 0.32), (6, 20, 0.9), (0, 12, 0.32), (5, 9, 0.05), (0, 3, 0.32), (10, 16, 0.5), (4, 40, 0.32)]
    cases = [_Case(f"L={length} tokens, dup_rate={rate}, seed {seed}", (ids_of(seed, length), rate, seed))
             for seed, length, rate in specs]
    width = 2 * max(length for _, length, _ in specs) + 2

    def run(rule):
        return lambda ids, rate, seed: _id_row(rule(list(ids), rate, random.Random(seed)), width)

    def paper(ids, rate, r):  # "dup_len in [0, max(2, int(dup_rate * len))]", inclusive
        n = r.randint(0, max(2, int(rate * len(ids))))
        return _in_place(ids, r.sample(range(1, len(ids) - 1), min(n, len(ids) - 2)))

    def official(ids, rate, r, length=None, cap=10, candidates=None):
        bound = int(rate * (len(ids) if length is None else length))
        if bound <= 0:
            return list(ids)
        n = r.randrange(min(cap, bound)) if cap else r.randrange(bound)
        pool = range(1, len(ids) - 1) if candidates is None else candidates(len(ids))
        return _in_place(ids, r.sample(pool, min(n, len(pool))))

    def appended(ids, rate, r):
        bound = int(rate * len(ids))
        if bound <= 0:
            return list(ids)
        n = r.randrange(min(10, bound))
        positions = r.sample(range(1, len(ids) - 1), n)
        return list(ids) + [ids[k] for k in positions]

    _check("Exercise 5.1", run(fn), run(lambda ids, rate, r: word_repetition(ids, rate, r)), cases, [
        (run(paper), "that is the paper's description (randint up to max(2, int(dup_rate * L))); the official "
         "code draws add_len = rng.randrange(min(10, int(dup_rate * L)))."),
        (run(lambda ids, rate, r: official(ids, rate, r, length=len(ids) - 2)),
         "L counts [CLS] and [SEP]: use int(dup_rate * len(ids)) with the full length."),
        (run(lambda ids, rate, r: official(ids, rate, r, candidates=lambda n: range(n))),
         "never repeat the first and last token ([CLS], [SEP]): sample positions from range(1, L - 1)."),
        (run(lambda ids, rate, r: official(ids, rate, r, candidates=lambda n: range(1, n))),
         "the last position is [SEP]: sample from range(1, L - 1), which stops before L - 1."),
        (run(lambda ids, rate, r: official(ids, rate, r, cap=None)),
         "cap the number of repetitions: randrange(min(10, int(dup_rate * L)))."),
        (run(appended), "repeat each chosen token in place (right after itself), not at the end of the sentence."),
    ], tol=0)


def _esimcse_logits(z1, z2, queue, t):
    a = F.normalize(z1, dim=-1)
    cols = torch.cat([F.normalize(z2, dim=-1), F.normalize(queue, dim=-1)])  # (B + M, dim)
    return a @ cols.T / t  # (B, B + M)


def check_esimcse_logits(fn: Callable) -> None:
    """Exercise 5.2: ``fn(z1, z2, queue, temperature)`` = ESimCSE's (B, B + M) logits; M may be 0."""
    cases = []
    for s, (b, m, t) in enumerate([(4, 6, 0.05), (3, 0, 0.05), (5, 10, 0.1), (2, 1, 1.0)]):
        e = _embeddings(60 + s, 2 * b + m, 8)
        cases.append(_Case(f"B={b}, M={m}, tau={t}", (e[:b], e[b:2 * b], e[2 * b:], t)))
    cos = lambda x, y: F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T  # noqa: E731
    _check("Exercise 5.2", fn, _esimcse_logits, cases, [
        (lambda a, p, q, t: torch.cat([cos(a, q), cos(a, p)], 1) / t, "put the B positives-and-in-batch columns "
         "first and the M queue columns after them: row i's target is column i."),
        (lambda a, p, q, t: torch.cat([cos(a, p), cos(p, q)], 1) / t, "the queue columns score the ANCHORS z1 "
         "against the queue (cos(z1_i, q_m)), not the second views."),
        (lambda a, p, q, t: torch.cat([cos(a, p) / t, cos(a, q)], 1), "divide the queue columns by the "
         "temperature too: they are logits like the others."),
        (lambda a, p, q, t: torch.cat([cos(a, p), F.normalize(a, dim=-1) @ q.T], 1) / t,
         "normalise the queue rows too: every logit is a cosine similarity."),
    ])


def check_ema_after(fn: Callable) -> None:
    """Exercise 5.3: ``fn(theta_m, theta, momentum, steps)`` = the momentum weights after ``steps`` EMA steps
    towards a fixed ``theta`` (closed form)."""
    cases = [_Case(f"m={m}, {t} steps", (_embeddings(70 + s, 3, 4), _embeddings(80 + s, 3, 4), m, t))
             for s, (m, t) in enumerate([(0.9, 7), (0.995, 500), (0.5, 1), (0.99, 0), (0.0, 3)])]

    def reference(w0, w, m, t):
        return m ** t * w0 + (1 - m ** t) * w

    _check("Exercise 5.3", fn, reference, cases, [
        (lambda w0, w, m, t: (1 - m) ** t * w0 + (1 - (1 - m) ** t) * w, "m is the weight that STAYS on the "
         "momentum encoder: theta_m <- m * theta_m + (1 - m) * theta, so the start keeps m ** t."),
        (lambda w0, w, m, t: max(0.0, 1 - (1 - m) * t) * w0 + min(1.0, (1 - m) * t) * w,
         "the steps compound: after t steps the start keeps m ** t, not 1 - t (1 - m)."),
        (lambda w0, w, m, t: m * w0 + (1 - m) * w, "that is one step; apply it `steps` times (or use m ** steps)."),
    ])


def check_steps_until(fn: Callable) -> None:
    """Exercise 5.4: ``fn(momentum, fraction)`` = the smallest t with momentum ** t <= fraction."""
    cases = [_Case(f"m={m}, fraction={f}", (m, f))
             for m, f in [(0.995, 0.01), (0.995, 0.08), (0.9, 0.3), (0.999, 0.5), (0.5, 0.3), (0.99, 0.999)]]

    def reference(m, f):
        t = max(0, math.ceil(math.log(f) / math.log(m)))
        while m ** t > f:  # guard the float rounding of log ratios
            t += 1
        while t > 0 and m ** (t - 1) <= f:
            t -= 1
        return t

    _check("Exercise 5.4", fn, reference, cases, [
        (lambda m, f: math.floor(math.log(f) / math.log(m)), "round UP with math.ceil: after floor(...) or "
         "round(...) steps m ** t can still be above the fraction."),
        (lambda m, f: math.ceil(math.log(f) / math.log(1 - m)), "the start's weight after t steps is m ** t "
         "(m stays on the momentum encoder), not (1 - m) ** t."),
        (lambda m, f: math.ceil(math.log(f) / math.log(m)) + 1, "one step too many: the smallest t with "
         "m ** t <= fraction is ceil(log(fraction) / log(m))."),
    ], tol=0)


# ------------------------------------------------------------------ chapter 06
def _rtd_batch(seed: int, n: int, seq: int, vocab: int = 40, cls_id: int = 2):
    """Seeded DiffCSE-like ids: original (n, seq) with [CLS] first and zero padding, a generator output
    that changes some real tokens, writes other ids at padding, and overwrites position 0 in some rows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, seq + 1, (n,), generator=g)
    lengths[0], lengths[-1] = seq, 2  # one full row, one row with [CLS] and one token only
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    original = torch.randint(5, vocab, (n, seq), generator=g) * mask
    original[:, 0] = cls_id
    generated = original.clone()
    change = torch.rand(n, seq, generator=g) < 0.3
    generated[change] = torch.randint(5, vocab, (int(change.sum()),), generator=g)
    generated[mask == 0] = torch.randint(5, vocab, (int((mask == 0).sum()),), generator=g)  # MLMs write at padding
    generated[::2, 0] = cls_id + 1  # the generator does not keep [CLS] in every row
    return original, generated, mask


def _inputs_unchanged(exercise: str, fn: Callable, names: tuple[str, ...]) -> Callable:
    def wrapped(*args):
        before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        out = fn(*args)
        for name, a, b in zip(names, args, before):
            if isinstance(a, torch.Tensor) and not torch.equal(a, b):
                raise AssertionError(f"{exercise}: your function changed its argument `{name}` in place. Hint: work "
                                     "on a copy (.clone()) or build a new tensor (torch.cat, torch.where).")
        return out
    return wrapped


def check_replaced_labels(fn: Callable) -> None:
    """Exercise 6.1: ``fn(original, generated, attention_mask)`` = DiffCSE's RTD labels (n, seq), 0/1.

    Position 0 of ``generated`` is reset to the original first token, padding is labelled 0.
    """
    cases = [_Case(f"{n} sequences of length {s}", _rtd_batch(60 + i, n, s))
             for i, (n, s) in enumerate([(4, 7), (6, 12), (3, 3), (8, 5)])]

    def reference(x, g, m):
        g = g.clone()
        g[:, 0] = x[:, 0]
        return (g != x).long() * m

    def no_reset(x, g, m):
        return (g != x).long() * m

    def no_mask(x, g, m):
        return reference(x, g, torch.ones_like(m))

    _check("Exercise 6.1", _inputs_unchanged("Exercise 6.1", fn, ("original", "generated", "attention_mask")),
           reference, cases, [
               (no_reset, "reset position 0 first: the official code sets generated[:, 0] = [CLS], so position 0 "
                "is never labelled 'replaced'."),
               (no_mask, "multiply by the attention mask: padding positions are labelled 0 even where the "
                "generator wrote another id there."),
               (lambda x, g, m: (g != x).long(), "two things are missing: reset position 0 to the original "
                "[CLS] and multiply by the attention mask (padding = 0)."),
               (lambda x, g, m: (1 - reference(x, g, m)) * m, "label 1 means REPLACED (generated != original), "
                "0 means original."),
           ], tol=0)


def _rtd_logits(seed: int, n: int, seq: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, seq, 2, generator=g, dtype=torch.float64)


def check_rtd_loss(fn: Callable) -> None:
    """Exercise 6.2: ``fn(logits, labels, attention_mask, include_padding)`` = DiffCSE's RTD cross-entropy.

    logits (n, seq, 2), labels and mask (n, seq); the mean over all n * seq positions
    (``include_padding=True``, official) or over the real tokens only.
    """
    cases = []
    for i, (n, s, pad) in enumerate([(4, 7, False), (4, 7, True), (6, 10, False), (3, 3, True), (5, 8, True)]):
        x, g, m = _rtd_batch(70 + i, n, s)
        g[:, 0] = x[:, 0]
        labels = (g != x).long() * m
        cases.append(_Case(f"{n} sequences of length {s}, include_padding={pad}", (_rtd_logits(80 + i, n, s),
                                                                                  labels, m, pad)))

    def per_token(logits, labels):
        return F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1).long(), reduction="none")

    def reference(logits, labels, m, pad):
        ce = per_token(logits, labels)
        w = m.reshape(-1).to(ce.dtype)
        return ce.mean() if pad else (ce * w).sum() / w.sum()

    def sigmoid_of_one_logit(logits, labels, m, pad):
        ce = F.binary_cross_entropy_with_logits(logits[..., 1].reshape(-1), labels.reshape(-1).to(logits.dtype),
                                                reduction="none")
        w = m.reshape(-1).to(ce.dtype)
        return ce.mean() if pad else (ce * w).sum() / w.sum()

    _check("Exercise 6.2", fn, reference, cases, [
        (lambda lg, lb, m, pad: per_token(lg, lb).mean(), "with include_padding=False average over the real tokens "
         "only: weight by the attention mask and divide by its sum."),
        (lambda lg, lb, m, pad: reference(lg, lb, m, False), "with include_padding=True the official code averages "
         "over ALL n * seq positions, padding included (CrossEntropyLoss over view(-1, 2))."),
        (lambda lg, lb, m, pad: (per_token(lg, lb) * m.reshape(-1)).sum() / m.numel(),
         "you zeroed the padding but divided by every position: divide by the number of real tokens "
         "(attention_mask.sum())."),
        (sigmoid_of_one_logit, "the head has TWO logits per position: use a two-way softmax cross-entropy "
         "(F.cross_entropy over the last dimension), not a sigmoid of logit 1."),
        (lambda lg, lb, m, pad: reference(lg, 1 - lb, m, pad), "class 1 is 'replaced': use the labels as they are."),
        (lambda lg, lb, m, pad: reference(lg, lb, m, pad) * (lb.numel() if pad else m.sum()),
         "average over the positions, do not sum."),
    ])


def check_condition_first_position(fn: Callable) -> None:
    """Exercise 6.3: ``fn(embedding_output, h)`` = the discriminator's encoder input, (n, seq, H).

    Position 0 of ``embedding_output`` (n, seq, H) is replaced by ``h`` (n, H); the result must
    keep ``h`` in the autograd graph and leave ``embedding_output`` unchanged.
    """
    def inputs(seed, n, s, d):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(n, s, d, generator=g, dtype=torch.float64),
                3.0 * torch.randn(n, d, generator=g, dtype=torch.float64))

    cases = [_Case(f"n={n}, seq={s}, H={d}", inputs(90 + i, n, s, d))
             for i, (n, s, d) in enumerate([(4, 6, 8), (2, 1, 5), (7, 9, 16)])]

    def reference(e, h):
        return torch.cat([h.unsqueeze(1), e[:, 1:]], dim=1)

    def checked(e, h):
        h = h.detach().clone().requires_grad_(True)
        out = _inputs_unchanged("Exercise 6.3", fn, ("embedding_output", "h"))(e, h)
        if out is None or not isinstance(out, torch.Tensor):
            return out
        if out.grad_fn is None:
            raise AssertionError("Exercise 6.3: your result does not depend on h through autograd. Hint: do not "
                                 "detach h (nor go through numpy or .item()): the RTD gradient reaches the sentence "
                                 "encoder only through h.")
        return out.detach()

    def added(e, h):
        out = e.clone()
        out[:, 0] = out[:, 0] + h
        return out

    def last_position(e, h):
        out = e.clone()
        out[:, -1] = h
        return out

    _check("Exercise 6.3", checked, reference, cases, [
        (added, "REPLACE the position-0 embedding by h (official: cat([h, embedding_output[:, 1:]])), do not add h "
         "to it."),
        (last_position, "h goes to position 0 (where [CLS] sits), not to the last position."),
    ], tol=0)


# ------------------------------------------------------------------ chapter 07
def check_nt_xent(fn: Callable) -> None:
    """Exercise 7.1: ``fn(anchors, positives, temperature)`` = DeCLUTR's symmetric NT-Xent, a scalar.

    The 2N vectors ``[anchors; positives]`` are scored against each other by cosine / temperature,
    a vector is never its own negative, and each of the 2N rows targets its partner (mean over rows).
    """
    cases = [_Case(f"N={n}, dim={d}, temperature={t}", (_embeddings(70 + i, n, d), _embeddings(80 + i, n, d), t))
             for i, (n, d, t) in enumerate([(4, 8, 0.05), (2, 3, 0.5), (6, 16, 0.1), (3, 5, 1.0)])]

    def reference(a, p, t):
        return info_nce(a, p, temperature=t, symmetric=True)

    def with_self(a, p, t):  # the diagonal left in the denominator
        z = F.normalize(torch.cat([a, p]), dim=-1)
        n = len(a)
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return F.cross_entropy(z @ z.T / t, targets)

    def dot_products(a, p, t):
        z = torch.cat([a, p])
        n = len(a)
        logits = (z @ z.T / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))

    _check("Exercise 7.1", fn, reference, cases, [
        (lambda a, p, t: info_nce(a, p, temperature=t), "that is SimCSE's one-directional loss (N rows, N - 1 "
         "negatives). NT-Xent scores all 2N vectors [anchors; positives] against each other: 2N rows, 2N - 2 "
         "negatives each."),
        (with_self, "exclude each vector's similarity with itself (set the diagonal of the 2N x 2N logits to -inf): "
         "cos(z, z) = 1 is the largest logit of every row and is not a negative."),
        (dot_products, "use cosine similarity: normalise the embeddings (F.normalize) before the dot products."),
        (lambda a, p, t: reference(a, p, 1.0), "divide the cosines by the temperature."),
    ])


def check_positive_start_range(fn: Callable) -> None:
    """Exercise 7.2: ``fn(anchor_start, anchor_end, positive_length, num_tokens)`` = ``(low, high)``,
    the smallest and largest start of a positive in DeCLUTR's default sampler (both inclusive)."""
    cases = [_Case(f"anchor [{s}, {e}), positive length {p}, {n} tokens", (s, e, p, n))
             for s, e, p, n in [(100, 300, 50, 2048), (0, 200, 40, 2048), (10, 200, 40, 2048),
                                (1900, 2048, 64, 2048), (1000, 1400, 500, 2048), (30, 60, 30, 64)]]

    def reference(s, e, p, n):
        return (max(0, s - p), min(e, n - p))

    _check("Exercise 7.2", fn, reference, cases, [
        (lambda s, e, p, n: (s - p, min(e, n - p)), "a positive cannot start before token 0: clamp the lowest "
         "start with max(0, ...)."),
        (lambda s, e, p, n: (max(0, s - p), e), "a positive must end inside the document: the highest start is "
         "also at most num_tokens - positive_length."),
        (lambda s, e, p, n: (max(0, s - p), min(e - p, n - p)), "the highest start is the anchor's END (the "
         "positive may then be adjacent, right after the anchor), not end - length (always overlapping)."),
        (lambda s, e, p, n: (s, min(e, n - p)), "the lowest start is anchor_start - positive_length: the positive "
         "may end exactly where the anchor starts (adjacent before it)."),
    ], tol=0)


SPAN_RELATIONS = ("inside", "contains", "overlaps", "adjacent", "apart")


def _span_relation(anchor: tuple[int, int], positive: tuple[int, int]) -> str:
    (a0, a1), (p0, p1) = anchor, positive
    if a0 <= p0 and p1 <= a1:
        return "inside"
    if p0 <= a0 and a1 <= p1:
        return "contains"
    if p0 < a1 and a0 < p1:
        return "overlaps"
    if p1 == a0 or p0 == a1:
        return "adjacent"
    return "apart"


def check_span_relation(fn: Callable) -> None:
    """Exercise 7.3: ``fn(anchor, positive)`` for half-open spans ``(start, end)`` returns one of
    ``inside`` (positive within the anchor, equal included), ``contains`` (positive covers the
    anchor and more), ``overlaps``, ``adjacent`` (they touch) or ``apart``."""
    cases = [((10, 20), (12, 18)), ((10, 20), (10, 20)), ((10, 20), (5, 25)), ((10, 20), (15, 30)),
             ((10, 20), (0, 12)), ((10, 20), (20, 30)), ((10, 20), (2, 10)), ((10, 20), (25, 30)),
             ((10, 20), (0, 5)), ((10, 20), (10, 25)), ((10, 20), (19, 20)), ((10, 20), (0, 20))]
    mistakes = [
        (lambda a, p: "overlaps" if (p[0] <= a[1] and a[0] <= p[1]) and _span_relation(a, p) == "adjacent"
         else _span_relation(a, p), "spans are half-open [start, end): (10, 20) and (20, 30) share no token, "
         "they are adjacent. Use strict comparisons (p_start < a_end and a_start < p_end) for an overlap."),
        (lambda a, p: "overlaps" if _span_relation(a, p) in ("inside", "contains") else _span_relation(a, p),
         "test containment before overlap: a positive inside the anchor also overlaps it, but 'inside' is the "
         "more precise answer."),
        (lambda a, p: "apart" if _span_relation(a, p) == "adjacent" else _span_relation(a, p),
         "spans that touch (one ends where the other starts) are 'adjacent', not 'apart'."),
    ]
    for anchor, positive in cases:
        try:
            got = fn(anchor, positive)
        except NotImplementedError:
            raise AssertionError("Exercise 7.3: not implemented yet -- replace the `raise NotImplementedError` "
                                 "line.") from None
        if got is None:
            raise AssertionError(f"Exercise 7.3: your function returned None on anchor {anchor}, positive "
                                 f"{positive}; did you forget `return`?")
        want = _span_relation(anchor, positive)
        if got not in SPAN_RELATIONS:
            raise AssertionError(f"Exercise 7.3: on anchor {anchor}, positive {positive} you return {got!r}; "
                                 f"the answer must be one of {SPAN_RELATIONS}.")
        if got != want:
            hints = [m for wrong, m in mistakes if wrong(anchor, positive) == got]
            hint = f"\nHint: {hints[0]}" if hints else ""
            raise AssertionError(f"Exercise 7.3: on anchor {anchor}, positive {positive} you return {got!r}, "
                                 f"expected {want!r}.{hint}")
    print(f"Exercise 7.3: correct on {len(cases)} test inputs.")


# ------------------------------------------------------------------ chapter 08
def _ht_reference(anchor, levels, margins):
    """Naive loops over rows and adjacent level pairs (NGCSE loss3, the last margin reused)."""
    n, k1 = levels.shape[0], levels.shape[1]
    total = 0.0
    for k in range(k1 - 1):
        m = margins[min(k, len(margins) - 1)]
        terms = [max(0.0, float(F.cosine_similarity(anchor[i], levels[i, k + 1], dim=0)
                                - F.cosine_similarity(anchor[i], levels[i, k], dim=0)) + m) for i in range(n)]
        total += sum(terms) / n
    return torch.tensor(total / (k1 - 1), dtype=torch.float64)


def _ht_variant(anchor, levels, margins, *, cos=True, average_pairs=True, order=1, reuse_last=True):
    sims = (F.cosine_similarity(anchor.unsqueeze(1), levels, dim=-1) if cos
            else torch.einsum("nd,nkd->nk", anchor, levels))  # (n, K-1)
    k1 = levels.shape[1]
    parts = []
    for k in range(k1 - 1):
        m = margins[min(k, len(margins) - 1)] if reuse_last else (margins[k] if k < len(margins) else 0.0)
        parts.append(F.relu(order * (sims[:, k + 1] - sims[:, k]) + m).mean())
    total = torch.stack(parts).sum()
    return total / (k1 - 1) if average_pairs else total


def check_hierarchical_triplet_loss(fn: Callable) -> None:
    """Exercise 8.1: ``fn(anchor (n, d), levels (n, K-1, d), margins)`` = NGCSE's hierarchical triplet loss."""
    def inputs(seed, n, k1, dim, margins):
        g = torch.Generator().manual_seed(seed)
        anchor = torch.randn(n, dim, generator=g, dtype=torch.float64)
        levels = 3.0 * torch.randn(n, k1, dim, generator=g, dtype=torch.float64)  # norms far from 1
        return (anchor, levels, margins)

    ordered = inputs(84, 6, 3, 8, (0.005, 0.05))
    ordered[1][:, 0] = ordered[0] * 2 + 0.1 * ordered[1][:, 0]  # level 1 near the anchor: some terms are 0
    cases = [_Case("6 rows, K = 4, margins (0.005, 0.05), level 1 close", ordered),
             _Case("5 rows, K = 4, margins (0.005, 0.05)", inputs(81, 5, 3, 8, (0.005, 0.05))),
             _Case("4 rows, K = 5, margins (0.01, 0.1) (the last one reused)", inputs(82, 4, 4, 6, (0.01, 0.1))),
             _Case("3 rows, K = 3 (NLI pattern), margin (0.1,)", inputs(83, 3, 2, 5, (0.1,)))]
    _check("Exercise 8.1", fn, _ht_reference, cases, [
        (lambda a, l, m: _ht_variant(a, l, m, cos=False), "compare with the COSINE similarity (normalise the "
         "vectors); raw dot products grow with the norms."),
        (lambda a, l, m: _ht_variant(a, l, m, average_pairs=False), "average over the K - 2 adjacent pairs "
         "(divide the sum by K - 2), as NGCSE's 1/(K-2)."),
        (lambda a, l, m: _ht_variant(a, l, m, order=-1), "the more similar level must score HIGHER: the hinge is "
         "ReLU(s_{k+1} - s_k + m), which is zero once s_k >= s_{k+1} + m."),
        (lambda a, l, m: _ht_variant(a, l, m, reuse_last=False), "when there are fewer margins than adjacent pairs, "
         "reuse the LAST margin (official margins[min(k, len - 1)])."),
    ], tol=1e-6)  # float64 inputs; a float32 accumulator is still a correct answer


def _jaccard(answer: str, source: str) -> float:
    from .llm_data import _word_set

    a, b = _word_set(answer), _word_set(source)
    return len(a & b) / len(a | b) if a | b else 1.0


def check_near_copy(fn: Callable) -> None:
    """Exercise 8.2: ``fn(answer, source, threshold)`` is True when the word Jaccard of the normalised
    texts (:func:`cselab.llm_data.normalize`, then split on spaces, as sets) is >= ``threshold``."""
    pairs = [("A man is playing a guitar.", "a man is playing a guitar"),
             ("The bus was late this morning.", "This morning the bus arrived twenty minutes late."),
             ("Dogs bark.", "Cats sleep all afternoon."),
             ("The the the cat sat.", "The cat sat on the mat."),
             ("The council approved the plan!", "The council approved the plan for new parks."),
             ("Voters rejected the school levy.", "Voters in Marlow County rejected the school levy.")]
    cases = [_Case("exactly at the threshold (3 of 6 words shared, 0.5)", ("a b c d", "a b c e f", 0.5))]
    cases += [_Case(f"{a!r} vs {s!r}, threshold {t}", (a, s, t)) for a, s in pairs for t in (0.5, 0.6)]

    def reference(answer, source, threshold):
        return _jaccard(answer, source) >= threshold

    def no_normalize(answer, source, threshold):
        a, b = set(answer.split()), set(source.split())
        return len(a & b) / len(a | b) >= threshold

    def counts(answer, source, threshold):
        from .llm_data import normalize
        a, b = Counter(normalize(answer).split()), Counter(normalize(source).split())
        return sum((a & b).values()) / sum((a | b).values()) >= threshold

    def over_source(answer, source, threshold):
        from .llm_data import normalize
        a, b = set(normalize(answer).split()), set(normalize(source).split())
        return len(a & b) / len(b) >= threshold

    _check("Exercise 8.2", lambda *x: float(bool(fn(*x))), lambda *x: float(reference(*x)), cases, [
        (lambda *x: float(no_normalize(*x)), "normalise both texts first (cselab.llm_data.normalize): case and "
         "punctuation must not make a copy look new."),
        (lambda *x: float(_jaccard(*x[:2]) > x[2]), "a value exactly AT the threshold counts as a near copy (>=)."),
        (lambda *x: float(counts(*x)), "compare word SETS: a word repeated in the answer is still one shared word."),
        (lambda *x: float(over_source(*x)), "divide by the size of the UNION of the two word sets (Jaccard), not by "
         "the source's words: else a short answer inside a long source never counts."),
    ], tol=0)


def _rfd_alignment_gap(train_x, train_y, eval_x, eval_y):
    def align(x, y):
        return (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).norm(dim=-1).pow(2).mean()
    return align(train_x, train_y) - align(eval_x, eval_y)


def check_rfd_alignment(fn: Callable) -> None:
    """Exercise 8.3: ``fn(train_x, train_y, eval_x, eval_y)`` = RFD_a of one checkpoint:
    alignment of the training pairs minus alignment of the evaluation pairs (unit vectors, squared)."""
    def inputs(seed, n, m, dim, noise):
        g = torch.Generator().manual_seed(seed)
        tx, ex_ = torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randn(m, dim, generator=g, dtype=torch.float64)
        ty = 2.5 * tx + noise * torch.randn(n, dim, generator=g, dtype=torch.float64)
        ey = 0.5 * ex_ + 0.3 * torch.randn(m, dim, generator=g, dtype=torch.float64)
        return (tx, ty, ex_, ey)

    cases = [_Case("harder training pairs (noise 2.0)", inputs(85, 8, 6, 5, 2.0)),
             _Case("easier training pairs (noise 0.1)", inputs(86, 10, 7, 4, 0.1)),
             _Case("one pair each", inputs(87, 1, 1, 3, 1.0))]

    def unnormalised(tx, ty, ex_, ey):
        return (tx - ty).norm(dim=-1).pow(2).mean() - (ex_ - ey).norm(dim=-1).pow(2).mean()

    def no_square(tx, ty, ex_, ey):
        def a(x, y):
            return (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).norm(dim=-1).mean()
        return a(tx, ty) - a(ex_, ey)

    _check("Exercise 8.3", fn, _rfd_alignment_gap, cases, [
        (unnormalised, "put the embeddings on the unit sphere first (F.normalize): alignment compares directions."),
        (no_square, "Wang & Isola's alignment (alpha = 2) averages the SQUARED distance ||f(x) - f(y)||^2."),
        (lambda tx, ty, ex_, ey: -_rfd_alignment_gap(tx, ty, ex_, ey), "RFD is training MINUS evaluation: "
         "positive when the training pairs are harder to align."),
    ], tol=1e-8)


# ------------------------------------------------------------------ chapter 09
def _seed_scores(seed: int, n: int) -> np.ndarray:
    return 70 + 2 * np.random.default_rng(seed).standard_normal(n)


def check_mean_std(fn: Callable) -> None:
    """Exercise 9.1: ``fn(values)`` = ``(mean, sample std)`` of per-seed scores."""
    cases = [_Case(f"{n} scores", (_seed_scores(90 + n, n),)) for n in (3, 5, 2, 10)]
    cases.append(_Case("a Python list [76.1, 75.3, 76.9]", ([76.1, 75.3, 76.9],)))

    def reference(v):
        v = np.asarray(v, dtype=float)
        return (v.mean(), v.std(ddof=1))

    _check("Exercise 9.1", fn, reference, cases, [
        (lambda v: (np.mean(v), np.std(v)), "use the SAMPLE standard deviation (np.std(..., ddof=1)): the seeds are "
         "a sample, and with 3 seeds the population formula understates the spread by a factor sqrt(2/3)."),
        (lambda v: (np.mean(v), np.var(v, ddof=1)), "return the standard deviation, not the variance (take the "
         "square root)."),
    ], tol=1e-9)


def check_f1_at(fn: Callable) -> None:
    """Exercise 9.2: ``fn(scores, labels, threshold)`` = F1 of the positive class for ``score > threshold``."""
    def inputs(seed, n):
        g = np.random.default_rng(seed)
        labels = (g.random(n) < 0.4).astype(int)
        return (np.round(0.5 * labels + 0.6 * g.random(n), 2), labels)

    cases = [_Case(f"{n} pairs, threshold {t}", (*inputs(95 + n, n), t)) for n, t in [(40, 0.5), (25, 0.3), (60, 0.7)]]
    cases += [_Case("scores equal to the threshold", (np.array([0.5, 0.5, 0.9, 0.1]), np.array([1, 0, 1, 0]), 0.5)),
              _Case("no predicted match", (np.array([0.1, 0.2]), np.array([1, 0]), 0.9))]

    def reference(s, y, t):
        p, y = np.asarray(s) > t, np.asarray(y).astype(bool)
        tp = (p & y).sum()
        return 0.0 if tp == 0 else 2 * tp / (p.sum() + y.sum())

    def inclusive(s, y, t):
        return reference(np.asarray(s) + 1e-12 * (np.asarray(s) == t), y, t)

    def swapped(s, y, t):  # F1 of the negative class
        return reference(-np.asarray(s), 1 - np.asarray(y), -t - 1e-12)

    def accuracy(s, y, t):
        return float(((np.asarray(s) > t) == np.asarray(y).astype(bool)).mean())

    _check("Exercise 9.2", fn, reference, cases, [
        (inclusive, "predict a match only when score > threshold (strictly greater), as pair_classification does."),
        (accuracy, "that is the accuracy; F1 = 2 * precision * recall / (precision + recall) of the match class."),
        (swapped, "F1 is computed for the MATCH class (label 1), not for the no-match class."),
    ], tol=1e-9)


def check_paired_difference(fn: Callable) -> None:
    """Exercise 9.3: ``fn(a, b)`` = ``(mean, sample std)`` of the per-seed differences ``a - b``."""
    def inputs(seed, n):
        common = _seed_scores(seed, n)
        return (common + 0.5 + 0.1 * np.random.default_rng(seed + 1).standard_normal(n), common)

    cases = [_Case(f"{n} seeds", inputs(97 + n, n)) for n in (3, 5, 8)]

    def reference(a, b):
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        return (d.mean(), d.std(ddof=1))

    def unpaired(a, b):  # difference of means, std of the difference of independent samples
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return (a.mean() - b.mean(), math.sqrt(a.var(ddof=1) + b.var(ddof=1)))

    _check("Exercise 9.3", fn, reference, cases, [
        (unpaired, "pair the seeds: take the std of the per-seed differences a[k] - b[k]; the seeds share initial "
         "weights and data order, so their common part cancels in the difference."),
        (lambda a, b: (np.mean(np.asarray(a) - np.asarray(b)), np.std(np.asarray(a) - np.asarray(b))),
         "use the sample standard deviation (ddof=1) of the differences."),
        (lambda a, b: reference(b, a), "the difference is a - b, not b - a."),
    ], tol=1e-9)
