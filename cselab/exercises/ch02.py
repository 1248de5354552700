"""Exercise checks of chapter 02."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ._checking import _Case, _check, _embeddings


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
