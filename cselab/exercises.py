"""Checks for the chapters' exercises.

Each ``check_*`` runs the learner's function and a reference on seeded inputs (edge
cases included). On success it prints one line; on failure it raises ``AssertionError``
saying what differs (shape, or value on which input) and, when the answer matches a
known mistake, a hint about that mistake -- never just "wrong". A prediction check
(:func:`check_loss_predictions`) runs an experiment instead, prints what it measured next to
the predictions the learner wrote down, and explains every prediction that misses.
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


def _prediction_dict(exercise: str, fn: Callable, keys, entry: str, noun: str) -> dict:
    """A predict-then-run answer: ``fn()`` must return a dict with exactly ``keys`` (one prediction each)."""
    try:
        predictions = fn()
    except NotImplementedError:
        raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` "
                             "line.") from None
    if predictions is None:
        raise AssertionError(f"{exercise}: your function returned None; did you forget `return`?")
    if not isinstance(predictions, dict):
        raise AssertionError(f"{exercise}: return a dict {{{entry}}} with the keys {list(keys)}; "
                             f"you return a {type(predictions).__name__}.")
    missing = [k for k in keys if k not in predictions]
    unknown = [k for k in predictions if k not in keys]
    if missing or unknown:
        raise AssertionError(f"{exercise}: predict every {noun} exactly once. Missing: {missing or 'none'}; "
                             f"unknown keys (check the spelling): {unknown or 'none'}.")
    return predictions


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


# ------------------------------------------------------------------ chapter 02
def _padded_batch(seed: int, batch: int, seq: int, dim: int):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq, dim, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, seq + 1, (batch,), generator=g)
    lengths[0] = seq  # one full row, one length-1 row: the edge cases
    lengths[-1] = 1
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return hidden, mask


def _max_pooling_cases() -> list[_Case]:
    """Padded batches whose padding vectors are larger than every real value (as arbitrary padding outputs
    can be), one batch whose real values are all negative, no padding at all, a batch of one, float32."""
    cases = []
    for i, (b, s, d, what) in enumerate([(3, 5, 4, "large padding"), (4, 6, 5, "real values all negative"),
                                         (2, 1, 3, "no padding"), (1, 4, 3, "a batch of one 1-token sentence"),
                                         (5, 7, 6, "float32")]):
        h, m = _padded_batch(70 + i, b, s, d)
        pad = (m == 0).unsqueeze(-1)
        if what == "real values all negative":
            h = torch.where(pad, h, -h.abs() - 0.1)
        else:
            h = torch.where(pad, h.abs() + 3.0, h)  # padding beats every real value
        if what == "float32":
            h = h.float()
        cases.append(_Case(f"a padded batch {b}x{s}x{d} ({what})", (h, m)))
    return cases


def _masked_max(h, m):
    return h.masked_fill(m.unsqueeze(-1) == 0, float("-inf")).amax(dim=1)


def _pooling_answer(exercise: str, fn: Callable) -> Callable:
    """Run the learner on copies of the inputs (an in-place edit must not change the reference's inputs) and
    turn two torch pitfalls into hints: an integer mask in ``masked_fill`` and the (values, indices) pair."""
    def wrapped(h, m):
        try:
            out = fn(h.clone(), m.clone())
        except RuntimeError as err:
            if "boolean mask" not in str(err):
                raise
            raise AssertionError(
                f"{exercise}: masked_fill needs a bool mask, and attention_mask holds integers (1 = token, 0 = "
                "padding).\nHint: use `attention_mask == 0` (True at padding) or `.bool()`; `~attention_mask` is "
                "a bitwise NOT of the integers (-2 and -1), not a logical one.") from None
        if isinstance(out, tuple) and hasattr(out, "values") and hasattr(out, "indices"):
            raise AssertionError(f"{exercise}: you return the pair (values, indices) that torch.max(x, dim) "
                                 "gives.\nHint: return its `.values`, or use `x.amax(dim)`.")
        return out
    return wrapped


def check_max_pooling(fn: Callable) -> None:
    """Exercise 2.1: ``fn(last_hidden, attention_mask)`` = masked max pooling, (batch, seq, dim) -> (batch, dim):
    each dimension's maximum over the sentence's real tokens."""
    def masked_mean(h, m):
        w = m.unsqueeze(-1).to(h.dtype)
        return (h * w).sum(1) / w.sum(1)

    _check("Exercise 2.1", _pooling_answer("Exercise 2.1", fn), _masked_max, _max_pooling_cases(), [
        (lambda h, m: h.amax(1), "padding positions take part in the maximum. Their output vectors are arbitrary "
         "(here larger than every real value): set them to -inf before the max, e.g. "
         "last_hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, float('-inf'))."),
        (lambda h, m: (h * m.unsqueeze(-1)).amax(1), "multiplying by the mask turns padding into 0, and 0 beats "
         "every real value of a dimension in which the sentence's values are all negative (a 1-token sentence "
         "often has such dimensions). Fill padding with -inf, not 0."),
        (masked_mean, "that is the masked MEAN of section 1; take the maximum over the real tokens instead."),
        (lambda h, m: h[:, 0], "that is the first token only ([CLS] pooling); take the maximum over every real "
         "token."),
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
# name -> (what the experiment does to the two views, the change as a function (z1, z2, v) -> (z1', z2') where
# v is one fixed vector as long as an average embedding, why the loss moves as it does)
LOSS_CHANGES = {
    "scale": ("multiply every embedding of both views by 10", lambda a, b, v: (10 * a, 10 * b),
              "the logits are cosine similarities and cos(10u, 10v) = cos(u, v): the loss sees directions only, "
              "so nothing moves (0)."),
    "flip_sign": ("multiply every embedding of both views by -1", lambda a, b, v: (-a, -b),
                  "cos(-u, -v) = cos(u, v): flipping every vector (like any rotation or reflection of all of them "
                  "at once) keeps every angle between them, so nothing moves (0)."),
    "reverse_rows": ("reverse the order of the sentences, i.e. of the rows of both views",
                     lambda a, b, v: (a.flip(0), b.flip(0)),
                     "each sentence keeps its own positive and the same set of candidates; the loss is a mean over "
                     "rows, and the order of rows and columns plays no part (0)."),
    "roll_second_view": ("rotate the rows of the second view by one, so that each first view is paired with "
                         "another sentence's second view", lambda a, b, v: (a, b.roll(1, 0)),
                         "each row's target column now holds ANOTHER sentence's view, while its own view is still "
                         "a candidate, now counted as a negative. How much the loss rises depends on how similar "
                         "the sentences are (depends)."),
    "swap_views": ("swap the views: z2 as the anchors (rows), z1 as the candidates (columns)",
                   lambda a, b, v: (b, a),
                   "Eq. 1 is not symmetric: with the views swapped, each softmax runs over a COLUMN of the same "
                   "cosine matrix instead of a row. The positive logits stay, the denominators change (depends; the "
                   "change is small when both views are equally noisy, but not 0). NT-Xent (chapter 01) scores both "
                   "directions."),
    "add_vector": ("add one fixed vector (as long as an average embedding) to every embedding of both views",
                   lambda a, b, v: (a + v, b + v),
                   "cosine similarity is not invariant to a shift: adding one vector to all embeddings pulls them "
                   "towards its direction and raises the cosines, the negatives' too (chapter 02's anisotropy, "
                   "which centring removes). By how much depends on the embeddings (depends)."),
    "duplicate_batch": ("append the batch to itself: [z1; z1] against [z2; z2]",
                        lambda a, b, v: (torch.cat([a, a]), torch.cat([b, b])),
                        "every candidate now appears twice, so each row's denominator doubles while its numerator "
                        "stays: every row's loss rises by exactly log 2 (about 0.693), whatever the embeddings. A "
                        "sentence that occurs twice in a batch makes its copy a false negative (chapter 04)."),
}


def loss_changes(z1: torch.Tensor, z2: torch.Tensor, temperature: float, seed: int = 0) -> dict[str, float]:
    """The experiment of exercise 3.1: ``{name: L_after - L_before}`` for every change in :data:`LOSS_CHANGES`,
    where L is SimCSE's Eq. 1 (:func:`cselab.losses.info_nce`) of the two ``(B, dim)`` views, in float64."""
    a, b = torch.as_tensor(z1).detach().double().cpu(), torch.as_tensor(z2).detach().double().cpu()
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.randn(a.shape[1], generator=g, dtype=torch.float64), dim=0) * a.norm(dim=1).mean()
    before = info_nce(a, b, temperature=temperature).item()
    return {name: info_nce(*change(a, b, v), temperature=temperature).item() - before
            for name, (_, change, _) in LOSS_CHANGES.items()}


def _prediction(value):
    """A prediction as the number it states, ``"depends"``, or None when it is neither."""
    if isinstance(value, str):
        return "depends" if value.strip().lower() == "depends" else None
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def check_loss_predictions(fn: Callable) -> None:
    """Exercise 3.1: ``fn()`` returns ``{name: prediction}`` for every change in :data:`LOSS_CHANGES`: the exact
    change of Eq. 1 (``L_after - L_before``) when it is the same for every batch, else ``"depends"``.

    Runs the experiment (:func:`loss_changes`) on three seeded batches of positive pairs, prints what it
    measured next to the predictions, and on a wrong prediction raises AssertionError explaining why the loss
    moves as it does.
    """
    exercise = "Exercise 3.1"
    predictions = _prediction_dict(exercise, fn, LOSS_CHANGES, "name: prediction", "change")
    stated = {k: _prediction(v) for k, v in predictions.items()}
    for name, value in stated.items():
        if value is None:
            raise AssertionError(
                f"{exercise}: your prediction for {name!r} is {predictions[name]!r}. Write a number, the exact change "
                "L_after - L_before when it is the same for every batch (0 if the loss does not move), or the "
                "string 'depends' when the change depends on the embeddings.")
    batches = []
    for s, (b, d, t) in enumerate([(8, 16, 0.05), (5, 8, 0.1), (16, 32, 1.0)]):
        z1 = _embeddings(100 + s, b, d)
        batches.append((z1, z1 + 0.5 * _embeddings(110 + s, b, d), t))  # views: noisy copies, as dropout makes
    runs = [loss_changes(*batch) for batch in batches]
    measured = {name: [run[name] for run in runs] for name in LOSS_CHANGES}
    truth = {name: "depends" if max(m) - min(m) > 1e-9 else sum(m) / len(m) for name, m in measured.items()}

    def shown(value):
        return "'depends'" if value == "depends" else f"{round(value, 4) + 0.0:g}"

    def right(name):
        p, t = stated[name], truth[name]
        return p == t if "depends" in (p, t) else abs(p - t) <= 0.01

    print(f"{'change':<18}{'your prediction':>16}   measured L_after - L_before on {len(batches)} batches")
    for name in LOSS_CHANGES:
        values = "  ".join(f"{round(x, 4) + 0.0:+.4f}" for x in measured[name])
        print(f"{name:<18}{shown(stated[name]):>16}   {values}   {'right' if right(name) else 'WRONG'}")
    wrong = [name for name in LOSS_CHANGES if not right(name)]
    if wrong:
        raise AssertionError(f"{exercise}: {len(wrong)} of {len(LOSS_CHANGES)} predictions differ from the "
                             "experiment.\n" + "\n".join(
                                 f"- {name}: you predicted {shown(stated[name])}, the experiment gives "
                                 f"{shown(truth[name])}. Why: {LOSS_CHANGES[name][2]}" for name in wrong))
    print(f"{exercise}: correct on {len(LOSS_CHANGES)} predictions, each measured on {len(batches)} batches.")


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


def _official_positions(ids, rate, r) -> list[int]:
    """The positions ESimCSE's official rule picks (section 2 of chapter 05): ``randrange`` first, then ``sample``."""
    bound = int(rate * len(ids))
    if bound <= 0:
        return []
    count = r.randrange(min(10, bound))
    return r.sample(range(1, len(ids) - 1), count)


def check_delete_tokens(fn: Callable) -> None:
    """Exercise 5.2: ``fn(ids, del_rate, rng)`` = the official repetition draws of exercise 5.1 (same
    ``randrange``, same ``sample``), with each chosen token deleted instead of repeated.

    ``rng`` is a fresh ``random.Random(seed)`` per call, so the same draws must pick the same positions.
    The caller's list must not change (the chapter passes its corpus). A wrong answer is shown in full,
    next to the expected list and the positions the draws chose.
    """
    import random

    exercise = "Exercise 5.2"

    def ids_of(seed, length, vocab):  # [CLS]=2 ... [SEP]=3; a small vocabulary repeats ids inside a sentence
        g = random.Random(3000 + seed)
        return [2] + [g.randrange(5, 5 + vocab) for _ in range(length - 2)] + [3]

    def deleted(ids, chosen):
        return [t for k, t in enumerate(ids) if k not in set(chosen)]

    def shifted(ids, chosen):  # del out[k] in increasing k, skipping what is past the end
        out = list(ids)
        for k in sorted(chosen):
            if k < len(out):
                del out[k]
        return out

    def by_value(ids, chosen):  # out.remove(ids[k]): the first token with that id goes
        out = list(ids)
        for k in chosen:
            out.remove(ids[k])
        return out

    mistakes = [
        (_in_place, "that is word repetition (exercise 5.1): here each chosen token is left out, not doubled."),
        (shifted, "after `del out[k]` every later token moves one place to the left, so the next chosen position "
         "points at the wrong token. Delete from the highest position down (sorted(..., reverse=True)) or build a "
         "new list of the tokens that are not chosen."),
        (by_value, "list.remove(value) deletes the FIRST token with that id, which is not always the one at the "
         "chosen position: a sentence can hold the same id twice ('a man plays a guitar'). Keep or drop tokens by "
         "position."),
        (lambda ids, chosen: ids[:len(ids) - 1 - len(chosen)] + ids[-1:], "the length is right but the tokens are "
         "not: delete the tokens at the chosen positions, not the last ones."),
        (lambda ids, chosen: list(ids), "nothing was deleted: drop each token whose position is in `chosen`."),
    ]
    # (seed, length, rate, vocabulary); the first case tells every known mistake apart, the others are the
    # edges: nothing drawn (short sentence), only [CLS] [SEP], every word deleted, the cap of 10, rate 0
    specs = [(0, 24, 0.32, 6), (1, 3, 0.32, 50), (2, 2, 0.9, 50), (11, 5, 0.9, 3), (5, 40, 0.32, 500),
             (7, 16, 0.5, 4), (8, 12, 0.0, 50)]
    for seed, length, rate, vocab in specs:
        ids = ids_of(seed, length, vocab)
        where = f"L={length} tokens, del_rate={rate}, seed {seed}"
        given = list(ids)
        try:
            out = fn(given, rate, random.Random(seed))
        except NotImplementedError:
            raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` "
                                 "line.") from None
        except IndexError as err:
            raise AssertionError(
                f"{exercise}: your function raised IndexError ({err}) on {where}. Hint: if you delete with "
                "`del out[k]`, every later token moves one place to the left, so the next chosen position points at "
                "the wrong token (or past the end). Delete from the highest position down, or build a new list of "
                "the tokens that are not chosen.") from None
        if out is None:
            raise AssertionError(f"{exercise}: your function returned None on {where}; did you forget `return`?")
        if given != ids:
            raise AssertionError(f"{exercise}: your function changed its argument `ids` in place (the caller's "
                                 "token list). Hint: build a new list, e.g. with a list comprehension.")
        try:
            got = [int(t) for t in out]
        except (TypeError, ValueError):
            raise AssertionError(f"{exercise}: on {where} you return {out!r}; return a list of token ids.") from None
        chosen = sorted(_official_positions(ids, rate, random.Random(seed)))
        want = deleted(ids, chosen)
        if got != want:
            first = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            hint = next((f"\nHint: {message}" for wrong, message in mistakes if got == wrong(list(ids), chosen)), "")
            raise AssertionError(
                f"{exercise}: on {where} the draws choose positions {chosen} of\n  ids        {ids}\n"
                f"  you return {got} ({len(got)} tokens)\n  expected   {want} ({len(want)} tokens)\n"
                f"They differ first at position {first}.{hint}")
    print(f"{exercise}: correct on {len(specs)} test inputs.")


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


def check_changed_input_share(fn: Callable) -> None:
    """Exercise 6.1: ``fn(masking_ratio, vocab_size)`` = the expected share of the maskable tokens whose id in
    the generator's INPUT differs from the original under BERT's 80/10/10 masking, the random ids being drawn
    uniformly from all ``vocab_size`` ids (as ``cselab.augment.mask_tokens`` and the official code do)."""
    # the first case tells every known mistake apart; a vocabulary of 2 makes the 1 / V term large, 30522
    # (BERT's) makes it tiny but not zero; ratios 0 and 1 are the edges
    cases = [_Case(f"masking_ratio={p}, vocab_size={v}", (p, v))
             for p, v in [(0.3, 5), (0.15, 30522), (0.3, 8000), (0.5, 2), (0.0, 100), (1.0, 10)]]

    def reference(p, v):
        return p * (0.8 + 0.1 * (v - 1) / v)

    _check("Exercise 6.1", fn, reference, cases, [
        (lambda p, v: p, "not every selected token changes: 10 % of them are left as they are (the generator sees "
         "the original id there), and a random id can happen to be the original one."),
        (lambda p, v: 0.8 * p, "the 10 % that get a random id change the input too (unless the random id happens "
         "to be the original one)."),
        (lambda p, v: 0.9 * p, "a random id is drawn from ALL vocab_size ids, so with probability 1 / vocab_size "
         "it is the original id and that position does not change."),
        (lambda p, v: 0.8 + 0.1 * (v - 1) / v, "multiply by masking_ratio: only the selected tokens can change."),
        (lambda p, v: p * (0.8 + 0.2 * (v - 1) / v), "of the 20 % that do not become [MASK], half get a random id "
         "and half stay as they are: 10 % random, not 20 %."),
        (lambda p, v: p * (0.8 + 0.1 * (v - 2) / (v - 1)), "the random id is drawn from all vocab_size ids, the "
         "original one included: it equals the original with probability 1 / vocab_size."),
    ], tol=1e-12)


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


def _rtd_gradient_experiment(seed: int = 0) -> dict[str, bool]:
    """A miniature of DiffCSE's RTD step in plain autograd, for every variant of :data:`RTD_GRADIENT_VARIANTS`:
    ``{variant: whether L_RTD gives the named weights a non-zero gradient}``.

    Sentence encoder: ``h = tanh(features @ W_enc)``. Generator: logits ``E_gen[masked ids]``, argmax. Discriminator:
    token embeddings ``E_dis``, position 0 replaced by ``h``, one mixing step (every position sees the mean of
    all positions, as attention would), a two-way head; cross-entropy against the replaced labels.
    """
    g = torch.Generator().manual_seed(seed)
    n, seq, dim, vocab = 4, 6, 8, 12
    features = torch.randn(n, dim, generator=g, dtype=torch.float64)
    original = torch.randint(1, vocab, (n, seq), generator=g)
    masked = original.masked_fill(torch.rand(n, seq, generator=g) < 0.3, 0)  # id 0 = [MASK]
    w_enc = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    e_gen = torch.randn(vocab, vocab, generator=g, dtype=torch.float64)
    e_dis = torch.randn(vocab, dim, generator=g, dtype=torch.float64)
    w_mix = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    w_head = torch.randn(dim, 2, generator=g, dtype=torch.float64)

    def step(detach=False, conditioned=True, frozen=False, trainable_generator=False):
        enc = w_enc.clone().requires_grad_(True)
        gen = e_gen.clone().requires_grad_(trainable_generator)
        dis = [w.clone().requires_grad_(not frozen) for w in (e_dis, w_mix, w_head)]
        h = torch.tanh(features @ enc)  # (n, dim)
        generated = gen[masked].argmax(-1)  # (n, seq): greedy, at every position
        generated[:, 0] = original[:, 0]
        labels = (generated != original).long()
        x = dis[0][generated]  # (n, seq, dim)
        if conditioned:
            x = torch.cat([(h.detach() if detach else h).unsqueeze(1), x[:, 1:]], dim=1)
        hidden = torch.tanh((x + x.mean(dim=1, keepdim=True)) @ dis[1])
        loss = F.cross_entropy((hidden @ dis[2]).reshape(-1, 2), labels.reshape(-1))
        target = gen if trainable_generator else enc
        if not loss.requires_grad:
            return False
        grad, = torch.autograd.grad(loss, [target], allow_unused=True)
        return grad is not None and bool(grad.abs().sum() > 0)

    return {"encoder, official": step(), "encoder, h detached": step(detach=True),
            "encoder, plain ELECTRA": step(conditioned=False), "encoder, frozen discriminator": step(frozen=True),
            "generator, made trainable": step(trainable_generator=True)}


# variant -> (what changes from the official DiffCSE step, why L_RTD does or does not reach the named weights)
RTD_GRADIENT_VARIANTS = {
    "encoder, official": (
        "the official step: h replaces the discriminator's position-0 input",
        "h is an input of the discriminator and h is computed by the sentence encoder, so the chain rule "
        "carries dL_RTD/dh on into the encoder's weights (section 2 counted the tensors)."),
    "encoder, h detached": (
        "the discriminator is given h.detach() instead of h",
        "detach() cuts the only path from L_RTD to the encoder: the discriminator still learns, the encoder is "
        "trained by the contrastive loss alone, as in SimCSE."),
    "encoder, plain ELECTRA": (
        "no conditioning: the discriminator reads the generated sentence only",
        "the discriminator's input is the generator's output, which does not depend on the encoder: L_RTD has "
        "no path to the encoder (section 2, 'plain ELECTRA')."),
    "encoder, frozen discriminator": (
        "the official step, but the discriminator and electra_head are frozen (requires_grad=False)",
        "freezing a layer stops ITS weights from being updated, not the gradient from flowing through it back to "
        "its inputs. h is an input, so the encoder still gets dL_RTD/dh through the frozen layers."),
    "generator, made trainable": (
        "the official step, with the generator's weights made trainable (requires_grad=True)",
        "the generator's output enters the discriminator as token ids chosen by argmax: a discrete choice, with "
        "no gradient with respect to the logits. The RTD loss cannot train the generator (ELECTRA trains its "
        "generator with a separate MLM loss)."),
}


def check_rtd_gradient_predictions(fn: Callable) -> None:
    """Exercise 6.3: ``fn()`` returns ``{variant: True/False}`` for every variant of
    :data:`RTD_GRADIENT_VARIANTS`: does the RTD loss give the named weights a non-zero gradient?

    Runs the variants on a miniature of DiffCSE's step (:func:`_rtd_gradient_experiment`), prints the
    predictions next to what it measured, and on a wrong prediction raises AssertionError explaining why.
    """
    exercise = "Exercise 6.3"
    predictions = _prediction_dict(exercise, fn, RTD_GRADIENT_VARIANTS, "variant: True or False", "variant")
    for name, value in predictions.items():
        if not isinstance(value, (bool, np.bool_)):
            raise AssertionError(f"{exercise}: your prediction for {name!r} is {value!r}. Write True (the RTD loss "
                                 "gives those weights a non-zero gradient) or False (it gives them none).")
    measured = _rtd_gradient_experiment()
    print(f"{'variant':<32}{'your prediction':>16}{'measured':>10}")
    for name in RTD_GRADIENT_VARIANTS:
        verdict = "right" if bool(predictions[name]) == measured[name] else "WRONG"
        print(f"{name:<32}{str(bool(predictions[name])):>16}{str(measured[name]):>10}   {verdict}")
    wrong = [name for name in RTD_GRADIENT_VARIANTS if bool(predictions[name]) != measured[name]]
    if wrong:
        raise AssertionError(f"{exercise}: {len(wrong)} of {len(RTD_GRADIENT_VARIANTS)} predictions differ from the "
                             "experiment.\n" + "\n".join(
                                 f"- {name} ({RTD_GRADIENT_VARIANTS[name][0]}): you predicted "
                                 f"{bool(predictions[name])}, the experiment gives {measured[name]}. "
                                 f"Why: {RTD_GRADIENT_VARIANTS[name][1]}" for name in wrong))
    print(f"{exercise}: correct on {len(RTD_GRADIENT_VARIANTS)} predictions, each measured on a miniature DiffCSE "
          "step.")


# ------------------------------------------------------------------ chapter 07
def _one_pair_draws(n: int, rng, lo: int, hi: int) -> tuple[int, int, int]:
    """The first four draws of chapter 07's ``one_pair``: the anchor ``(start, end)`` and the positive's length."""
    a_len = int(rng.beta(4, 2) * (hi - lo) + lo)
    buckets = list(range(0, n - hi + 1, hi))
    bucket = buckets[int(rng.integers(0, len(buckets)))]
    a_start = int(rng.integers(bucket, bucket + hi - a_len + 1))
    p_len = int(rng.beta(2, 4) * (hi - lo) + lo)
    return a_start, a_start + a_len, p_len


def check_adjacent_pair(fn: Callable) -> None:
    """Exercise 7.1: ``fn(n, rng, lo, hi)`` = chapter 07's ``one_pair`` with one change: the positive shares no
    token with its anchor and touches it (it ends where the anchor starts or starts where it ends), on a side
    that fits the document, chosen at random when both fit.

    Each draw gets a fresh ``numpy.random.default_rng(seed)``; the anchor and the positive's length must be
    ``one_pair``'s (same draws, same order). Documents have ``n >= 2 * hi`` tokens, as ``one_pair`` needs.
    """
    exercise = "Exercise 7.1"
    # (n, lo, hi): DeCLUTR's limits on a 2048-token document, the ci limits on a short story, and n = 2 * hi,
    # where a positive often fits on one side only
    settings = [(2048, 32, 512), (300, 8, 32), (64, 8, 32), (1100, 32, 512)]
    draws, both_sides = 0, {s: {"before": 0, "after": 0} for s in settings}
    for n, lo, hi in settings:
        for seed in range(150):
            where = f"n={n}, lo={lo}, hi={hi}, seed {seed}"
            try:
                out = fn(n, np.random.default_rng(seed), lo, hi)
            except NotImplementedError:
                raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` "
                                     "line.") from None
            if out is None:
                raise AssertionError(f"{exercise}: your function returned None on {where}; did you forget `return`?")
            try:
                (a0, a1), (p0, p1) = [(int(s), int(e)) for s, e in out]
            except (TypeError, ValueError):
                raise AssertionError(f"{exercise}: on {where} you return {out!r}; return two spans, "
                                     "((a_start, a_end), (p_start, p_end)), as one_pair does.") from None
            s0, s1, p_len = _one_pair_draws(n, np.random.default_rng(seed), lo, hi)
            if (a0, a1) != (s0, s1):
                raise AssertionError(f"{exercise}: on {where} your anchor is [{a0}, {a1}), one_pair's is [{s0}, {s1}). "
                                     "Hint: keep one_pair's draws for the anchor and the positive's length, in the "
                                     "same order and from `rng`; only the positive's start changes.")
            if p1 - p0 != p_len:
                raise AssertionError(f"{exercise}: on {where} your positive [{p0}, {p1}) has {p1 - p0} tokens, "
                                     f"one_pair draws p_len = {p_len}. Hint: keep the length; only the start changes.")
            if p0 < 0 or p1 > n:
                raise AssertionError(
                    f"{exercise}: on {where} your positive [{p0}, {p1}) leaves the document of {n} tokens (anchor "
                    f"[{a0}, {a1})). Hint: a side fits only if the positive stays inside [0, n): before the anchor "
                    "needs a_start - p_len >= 0, after it a_end + p_len <= n. Use the side that fits.")
            shared = sum(1 for t in range(p0, p1) if a0 <= t < a1)  # tokens in both spans, one by one
            if shared:
                tokens = f"{shared} token{'s' if shared > 1 else ''}"
                raise AssertionError(
                    f"{exercise}: on {where} your positive [{p0}, {p1}) shares {tokens} with its anchor "
                    f"[{a0}, {a1}). Hint: of the starts DeCLUTR's window allows (a_start - p_len ... a_end), only "
                    "the two ends share no token: a_start - p_len (the positive ends where the anchor starts) and "
                    "a_end (it starts where the anchor ends).")
            if p1 != a0 and p0 != a1:
                gap = a0 - p1 if p1 < a0 else p0 - a1
                tokens = f"are {gap} tokens" if gap > 1 else "is 1 token"
                raise AssertionError(
                    f"{exercise}: on {where} there {tokens} between your positive [{p0}, {p1}) and its anchor "
                    f"[{a0}, {a1}). Hint: spans are half-open, [start, end) leaves out token `end`, so a positive "
                    "that ends at a_start (or starts at a_end) already touches the anchor without sharing a token.")
            if a0 - p_len >= 0 and a1 + p_len <= n:
                both_sides[(n, lo, hi)]["before" if p1 == a0 else "after"] += 1
            draws += 1
    for (n, lo, hi), count in both_sides.items():
        total = count["before"] + count["after"]
        if total >= 20 and min(count.values()) == 0:
            side = "after" if count["after"] else "before"
            raise AssertionError(
                f"{exercise}: with n={n}, lo={lo}, hi={hi}, both sides fit in {total} of the draws and your positive "
                f"is always {side} the anchor. Hint: when both fit, choose one at random with `rng` (e.g. "
                "rng.integers(0, 2)), so that positives come from before and after their anchors.")
    print(f"{exercise}: correct on {draws} test inputs.")


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


# ------------------------------------------------------------------ chapter 10
def _padding_mask(lengths: list[int], seq: int, left: list[bool]) -> torch.Tensor:
    mask = torch.zeros(len(lengths), seq, dtype=torch.long)
    for i, (n, on_left) in enumerate(zip(lengths, left)):
        if on_left:
            mask[i, seq - n:] = 1
        else:
            mask[i, :n] = 1
    return mask


def check_last_token_positions(fn: Callable) -> None:
    """Exercise 10.1: ``fn(attention_mask)`` = (batch,) index of each row's last real token, for right, left
    and mixed padding."""
    cases = [
        _Case("a right-padded batch", (_padding_mask([4, 2, 6, 1], 6, [False] * 4),)),
        _Case("a left-padded batch", (_padding_mask([4, 2, 6, 1], 6, [True] * 4),)),
        _Case("a batch padded on both sides (rows 1 and 3 on the left)", (_padding_mask([3, 5, 2, 5], 7,
                                                                                         [False, True, False, True]),)),
        _Case("a batch without padding", (torch.ones(3, 5, dtype=torch.long),)),
        _Case("one 1-token sentence", (torch.ones(1, 1, dtype=torch.long),)),
        _Case("a bool mask", (_padding_mask([2, 4], 4, [False, True]).bool(),)),
    ]

    def reference(mask):
        return torch.tensor([max(k for k in range(mask.shape[1]) if mask[i, k]) for i in range(mask.shape[0])])

    def first_zero(mask):  # argmin finds the first padding position (0 in a row without padding)
        return mask.long().argmin(dim=1) - 1

    def learner(mask):
        try:
            return fn(mask.clone())
        except RuntimeError as exc:  # e.g. argmax has no bool kernel
            if mask.dtype != torch.bool:
                raise
            raise AssertionError(f"Exercise 10.1: on a bool mask your function raised {exc!s:.120}\nHint: some torch "
                                 "functions (argmax, for one) take no bool tensors; convert with mask.long() first.") from None

    _check("Exercise 10.1", learner, reference, cases, [
        (lambda m: m.long().sum(1) - 1, "length - 1 is right only with RIGHT padding. In a left-padded row the real "
         "tokens come last, so its last real token is at seq - 1. Find the last position whose mask is 1."),
        (lambda m: torch.full((m.shape[0],), m.shape[1] - 1), "seq - 1 is right only with LEFT padding (or none); "
         "in a right-padded row that position is padding."),
        (first_zero, "the position before the first 0 fails on rows without padding (argmin gives 0 there) and on "
         "left-padded rows (the first 0 comes before the sentence). Look for the last 1 instead, e.g. "
         "seq - 1 - mask.flip(1).argmax(1)."),
    ], tol=0)


def _dispersive_by_uniformity(u, n):
    return math.log((n * (n - 1) * math.exp(u) + n) / n**2)


def check_dispersive_from_uniformity(fn: Callable) -> None:
    """Exercise 10.2: ``fn(u, n)`` = the dispersive loss (tau = 1/2, unit-normalised) of n points whose
    uniformity (t = 2) is u."""
    cases = []
    for s, (n, d) in enumerate([(8, 4), (2, 3), (50, 16), (5, 2)]):
        u = float(uniformity(_embeddings(100 + s, n, d)))
        cases.append(_Case(f"{n} random points in {d}-D (u = {u:.3f})", (u, n)))
    cases.append(_Case("a collapsed batch of 6 (u = 0)", (0.0, 6)))
    cases.append(_Case("10 points far apart (u = -50)", (-50.0, 10)))
    _check("Exercise 10.2", fn, _dispersive_by_uniformity, cases, [
        (lambda u, n: u, "uniformity averages over DISTINCT pairs; the dispersive loss averages exp(-||z_i - z_j||^2 "
         "/ tau) over all n^2 ordered pairs, the diagonal included (n terms exp(0) = 1). Rebuild the sum: "
         "n (n - 1) e^u + n."),
        (lambda u, n: math.log((n - 1) / n) + u, "you rescaled the mean to n^2 pairs but left out the n diagonal "
         "terms, each exp(0) = 1."),
        (lambda u, n: math.log((n * (n - 1) * math.exp(u) + n) / (n * (n - 1))), "divide by n^2, the number of "
         "ordered pairs with the diagonal, not by n (n - 1)."),
        (lambda u, n: math.log((n * (n - 1) / 2 * math.exp(u) + n) / n**2), "uniformity's mean runs over "
         "n (n - 1) / 2 unordered pairs, but the sum over ordered pairs counts each of them twice: n (n - 1) e^u."),
    ], tol=1e-9)


def _group_gradient_by_hand(probs, answers, rewards):
    g = len(answers)
    r = np.asarray(rewards, dtype=float)
    std = r.std()
    adv = np.zeros(g) if std == 0 else (r - r.mean()) / std
    grad = np.zeros(len(probs))
    for a_i, A in zip(answers, adv):  # d/dtheta of -(1/G) sum_i A_i log pi(a_i), with d log pi(a)/dtheta = e_a - pi
        e = np.zeros(len(probs))
        e[a_i] = 1.0
        grad -= A * (e - np.asarray(probs, dtype=float)) / g
    return torch.as_tensor(grad)


def check_group_gradient(fn: Callable) -> None:
    """Exercise 10.3: ``fn(probs, answers, rewards)`` = (K,) gradient, with respect to the logits of a softmax
    policy with probabilities ``probs``, of ``policy_gradient_loss`` over one prompt's G answers with
    ``group_advantages(rewards, eps=0)``."""
    def case(seed, k, answers, rewards):
        g = torch.Generator().manual_seed(seed)
        probs = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
        return _Case(f"K={k}, answers {answers}, rewards {rewards}", (probs, list(answers), list(rewards)))

    cases = [case(110, 6, (2, 5), (1.0, 0.0)), case(111, 6, (1, 4, 0), (0.2, 1.0, 0.6)),
             case(112, 5, (3, 3, 1, 0, 2), (1.0, 1.0, 0.0, 0.5, 0.0)), case(113, 4, (0, 2, 2), (0.0, 1.0, 0.0)),
             case(114, 4, (1, 3, 0, 2), (0.7, 0.7, 0.7, 0.7)), case(115, 3, (2, 2), (1.0, 0.0))]

    def no_baseline(probs, answers, rewards):  # REINFORCE on the raw rewards: the policy term stays
        grad = torch.zeros(len(probs), dtype=torch.float64)
        for a, r in zip(answers, rewards):
            grad -= r * (F.one_hot(torch.tensor(a), len(probs)).double() - probs) / len(answers)
        return grad

    def bessel(probs, answers, rewards):
        r = torch.tensor(rewards, dtype=torch.float64)
        std = r.std()
        scale = (r.std(correction=0) / std) if std > 0 else 1.0
        return _group_gradient_by_hand(probs, answers, rewards) * scale

    _check("Exercise 10.3", fn, _group_gradient_by_hand, cases, [
        (lambda p, a, r: -_group_gradient_by_hand(p, a, r), "that is the ascent direction of the objective; the "
         "LOSS is -(1/G) sum_i A_i log pi(a_i), and its gradient has the opposite sign."),
        (lambda p, a, r: len(a) * _group_gradient_by_hand(p, a, r), "average over the G answers (the loss is a "
         "mean): divide by G."),
        (no_baseline, "use the group-normalised advantages, not the raw rewards: without the group's mean as a "
         "baseline the term pi * sum_i A_i no longer cancels."),
        (bessel, "group_advantages divides by the population standard deviation (correction 0) unless told "
         "otherwise, not by torch.std's default with Bessel's correction."),
    ], tol=1e-6)  # float32 answers pass; the hinted mistakes differ by far more
