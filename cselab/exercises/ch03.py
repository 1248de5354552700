"""Exercise checks of chapter 03."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import alignment, info_nce
from ._checking import _Case, _check, _embeddings, _prediction_dict


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
