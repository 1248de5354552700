"""Exercise checks of chapter 05."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._checking import _Case, _check, _embeddings


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

    from ..augment import word_repetition

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
