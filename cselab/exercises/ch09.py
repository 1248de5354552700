"""Exercise checks of chapter 09."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ._checking import _Case, _check


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
