"""Exercise checks of chapter 07."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._checking import _Case, _check


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
