"""Exercise checks of chapter 08."""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F

from ._checking import _Case, _check


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
    from ..llm_data import _word_set

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
        from ..llm_data import normalize
        a, b = Counter(normalize(answer).split()), Counter(normalize(source).split())
        return sum((a & b).values()) / sum((a | b).values()) >= threshold

    def over_source(answer, source, threshold):
        from ..llm_data import normalize
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
