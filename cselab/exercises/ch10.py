"""Exercise checks of chapter 10."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import uniformity
from ._checking import _Case, _check, _embeddings


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
