"""Tests for cselab.exercises: each check_* accepts a correct answer written independently here,
rejects known-wrong answers with the matching hint, and reports unimplemented functions, a
missing `return` and wrong shapes in plain words."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from cselab import exercises as ex


# ---------------------------------------------------------------------------- independent references
def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True))


def ref_decoupled(a, p, t):
    a, p = _unit_rows(a), _unit_rows(p)
    rows = []
    for i in range(len(a)):
        s = [float(torch.dot(a[i], p[j])) / t for j in range(len(a))]
        rows.append(-s[i] + math.log(sum(math.exp(s[j]) for j in range(len(a)) if j != i)))
    return sum(rows) / len(rows)


def ref_uniformity(x, t):
    x = _unit_rows(x)
    vals = [math.exp(-t * float(((x[i] - x[j]) ** 2).sum())) for i, j in itertools.combinations(range(len(x)), 2)]
    return math.log(sum(vals) / len(vals))


def ref_collapsed_supervised(b, alpha, tau=0.05):
    """Loop over one row of a collapsed batch: every cosine is 1, so every logit is 1 / tau; the row scores B
    positives and B hard negatives, its own hard negative's term multiplied by alpha (Eq. 8)."""
    s = 1.0 / tau
    i = 0  # every row is the same
    terms = [math.exp(s) for j in range(b)] + [(alpha if j == i else 1.0) * math.exp(s) for j in range(b)]
    return -math.log(math.exp(s) / sum(terms))


def ref_max_pooling(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        real = [k for k in range(h.shape[1]) if m[i, k] == 1]
        for d in range(h.shape[2]):
            out[i, d] = max(float(h[i, k, d]) for k in real)
    return out


def _spearman(x, y):
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def ref_all_setting(subsets):
    system = np.concatenate([np.asarray(s) for s, _ in subsets])
    gold = np.concatenate([np.asarray(g) for _, g in subsets])
    return _spearman(system, gold)


def ref_anisotropy(x):
    x = _unit_rows(x)
    n = len(x)
    vals = [float(torch.dot(x[i], x[j])) for i in range(n) for j in range(n) if i != j]
    return sum(vals) / len(vals)


# ---------------------------------------------------------------------------- generic failure modes
def _raise_not_implemented(*args):
    raise NotImplementedError


def _return_none(*args):
    return None


def assert_reference_passes_and_stubs_fail(check_name: str, name: str, reference, capsys,
                                           none_is_missing: bool = True) -> None:
    """The check accepts its reference, says "not implemented yet" for a stub and (unless a None answer is
    just a wrong value) asks about a forgotten `return`."""
    getattr(ex, check_name)(reference)
    assert capsys.readouterr().out.startswith(f"{name}: correct on")
    with pytest.raises(AssertionError, match="not implemented yet"):
        getattr(ex, check_name)(_raise_not_implemented)
    if none_is_missing:
        with pytest.raises(AssertionError, match="did you forget `return`"):
            getattr(ex, check_name)(_return_none)


CHECKS = {
    "check_decoupled_info_nce": ("Exercise 1.1", ref_decoupled),
    "check_uniformity": ("Exercise 1.2", ref_uniformity),
    "check_collapsed_supervised_loss": ("Exercise 1.3", ref_collapsed_supervised),
    "check_max_pooling": ("Exercise 2.1", ref_max_pooling),
    "check_all_setting": ("Exercise 2.2", ref_all_setting),
    "check_anisotropy": ("Exercise 2.3", ref_anisotropy),
}


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_correct_reference_passes(check_name, capsys):
    name, ref = CHECKS[check_name]
    getattr(ex, check_name)(ref)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith(f"{name}: correct on"), out


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_not_implemented(check_name, capsys):
    name, _ = CHECKS[check_name]
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(name)
    assert "NotImplementedError" in str(err.value)
    assert "correct" not in capsys.readouterr().out


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_returns_none(check_name, capsys):
    name, _ = CHECKS[check_name]
    with pytest.raises(AssertionError, match="did you forget `return`") as err:
        getattr(ex, check_name)(_return_none)
    assert str(err.value).startswith(name)
    assert "returned None" in str(err.value)
    assert "correct" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- wrong shapes
WRONG_SHAPES = {
    # per-row losses instead of their mean; first case is a batch of 4
    "check_decoupled_info_nce": (lambda a, p, t: torch.full((len(a),), ref_decoupled(a, p, t), dtype=torch.float64),
                                 "(4,)", "()"),
    # the full (n, n) kernel matrix; first case has 5 points
    "check_uniformity": (lambda x, t: torch.zeros(len(x), len(x)), "(5, 5)", "()"),
    "check_collapsed_supervised_loss": (lambda b, a: [ref_collapsed_supervised(b, a)] * 2, "(2,)", "()"),
    # keepdim: (batch, 1, dim) instead of (batch, dim); first case is 3x5x4
    "check_max_pooling": (lambda h, m: ref_max_pooling(h, m).unsqueeze(1), "(3, 1, 4)", "(3, 4)"),
    # one correlation per subset; first case has 3 subsets
    "check_all_setting": (lambda subsets: np.array([_spearman(s, g) for s, g in subsets]), "(3,)", "()"),
    # the whole cosine matrix; first case has 10 vectors
    "check_anisotropy": (lambda x: _unit_rows(x) @ _unit_rows(x).T, "(10, 10)", "()"),
}


@pytest.mark.parametrize("check_name", list(WRONG_SHAPES))
def test_wrong_shape_is_reported(check_name):
    name, _ = CHECKS[check_name]
    fn, got_shape, want_shape = WRONG_SHAPES[check_name]
    with pytest.raises(AssertionError) as err:
        getattr(ex, check_name)(fn)
    msg = str(err.value)
    assert msg.startswith(name)
    assert f"has shape {got_shape}, expected {want_shape}" in msg, msg


# ---------------------------------------------------------------------------- known mistakes -> hints
def _assert_hint(check_name, fn, phrase):
    name, _ = CHECKS[check_name]
    with pytest.raises(AssertionError) as err:
        getattr(ex, check_name)(fn)
    msg = str(err.value)
    assert msg.startswith(name), msg
    assert "you return" in msg and "expected" in msg, msg
    assert "Hint:" in msg, msg
    assert phrase in msg, msg


def _standard_info_nce(a, p, t):
    a, p = _unit_rows(a), _unit_rows(p)
    rows = []
    for i in range(len(a)):
        s = [float(torch.dot(a[i], p[j])) / t for j in range(len(a))]
        rows.append(-s[i] + math.log(sum(math.exp(v) for v in s)))
    return sum(rows) / len(rows)


def _decoupled_dot(a, p, t):
    rows = []
    for i in range(len(a)):
        s = [float(torch.dot(a[i], p[j])) / t for j in range(len(a))]
        rows.append(-s[i] + math.log(sum(math.exp(s[j]) for j in range(len(a)) if j != i)))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("fn,phrase", [
    (_standard_info_nce, "positive must be left out of the denominator"),
    (_decoupled_dot, "normalise the embeddings first"),
    (lambda a, p, t: ref_decoupled(a, p, 1.0), "divide the similarities by the temperature"),
], ids=["standard-infonce", "dot-product", "no-temperature"])
def test_decoupled_info_nce_hints(fn, phrase):
    _assert_hint("check_decoupled_info_nce", fn, phrase)


def test_decoupled_info_nce_unknown_mistake_has_no_hint():
    with pytest.raises(AssertionError) as err:
        ex.check_decoupled_info_nce(lambda a, p, t: ref_decoupled(a, p, t) + 0.5)
    assert "Hint:" not in str(err.value)
    assert "a batch of 4 with temperature 0.05" in str(err.value)


def _uniformity_with_diagonal(x, t):
    x = _unit_rows(x)
    n = len(x)
    vals = [math.exp(-t * float(((x[i] - x[j]) ** 2).sum())) for i in range(n) for j in range(n)]
    return math.log(sum(vals) / len(vals))


def _uniformity_unnormalised(x, t):
    vals = [math.exp(-t * float(((x[i] - x[j]) ** 2).sum())) for i, j in itertools.combinations(range(len(x)), 2)]
    return math.log(sum(vals) / len(vals))


@pytest.mark.parametrize("fn,phrase", [
    (_uniformity_with_diagonal, "average over distinct pairs i != j only"),
    (_uniformity_unnormalised, "L2-normalise the rows first"),
], ids=["with-diagonal", "unnormalised"])
def test_uniformity_hints(fn, phrase):
    _assert_hint("check_uniformity", fn, phrase)


@pytest.mark.parametrize("fn,phrase", [
    (lambda b, a: math.log(b), "collapse value WITHOUT hard negatives"),
    (lambda b, a: math.log(2 * b), "right for alpha = 1 only"),
    (lambda b, a: math.log(2 * b - 1), "still in the denominator, weighted by alpha"),
    (lambda b, a: math.log(b + a), "OTHER rows' hard negatives"),
    (lambda b, a: math.log(2 * b + a), "counts alpha times INSTEAD of once"),
    (lambda b, a: math.log(2 * b - 2 + a) if 2 * b - 2 + a > 0 else -math.inf, "the positive itself is in the "
     "denominator too"),
    (lambda b, a: math.log(2 * b - 1 + math.exp(a)), "alpha is the weight itself"),
    (lambda b, a: 0.0, "not one-hot"),
], ids=["log-B", "log-2B", "log-2B-1", "no-other-hard-negatives", "own-counted-twice", "no-positive",
        "exp-alpha", "zero"])
def test_collapsed_supervised_hints(fn, phrase):
    _assert_hint("check_collapsed_supervised_loss", fn, phrase)


def test_collapsed_supervised_edge_cases_are_checked():
    # right for every batch of two or more, wrong for a batch of one: the check names that case
    with pytest.raises(AssertionError, match=r"on B=1, alpha=2\.0 you return 0\.000000, expected 1\.098612"):
        ex.check_collapsed_supervised_loss(lambda b, a: ref_collapsed_supervised(b, a) if b > 1 else 0.0)
    # right for alpha > 0, but alpha = 0 treated as alpha = 1
    with pytest.raises(AssertionError, match=r"(?s)on B=5, alpha=0\.0 .*Hint: that is right for alpha = 1 only"):
        ex.check_collapsed_supervised_loss(lambda b, a: ref_collapsed_supervised(b, a or 1.0))


def test_collapsed_supervised_numerical_answers_accepted(capsys):
    """The exercise suggests checking the count numerically: a float32 or tensor answer is accepted."""
    ex.check_collapsed_supervised_loss(lambda b, a: torch.tensor(ref_collapsed_supervised(b, a), dtype=torch.float32))
    ex.check_collapsed_supervised_loss(lambda b, a: np.float64(ref_collapsed_supervised(b, a, tau=1.0)))
    assert capsys.readouterr().out.count("Exercise 1.3: correct") == 2


def test_collapsed_supervised_reference_by_hand():
    assert math.isclose(ref_collapsed_supervised(64, 1.0), math.log(128))  # alpha = 1: 2B equal terms
    assert math.isclose(ref_collapsed_supervised(4, 0.0), math.log(7))  # alpha = 0: the own one leaves
    assert ref_collapsed_supervised(1, 0.0) == 0.0  # a batch of one without its hard negative: only the positive


def _pool_max_all_positions(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        for d in range(h.shape[2]):
            out[i, d] = max(float(h[i, k, d]) for k in range(h.shape[1]))
    return out


def _pool_max_zeroed_padding(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        for d in range(h.shape[2]):
            out[i, d] = max(float(h[i, k, d]) * float(m[i, k]) for k in range(h.shape[1]))
    return out


def _pool_masked_mean(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        real = [k for k in range(h.shape[1]) if m[i, k] == 1]
        out[i] = sum(h[i, k] for k in real) / len(real)
    return out


@pytest.mark.parametrize("fn,phrase", [
    (_pool_max_all_positions, "padding positions take part in the maximum"),
    (_pool_max_zeroed_padding, "Fill padding with -inf, not 0"),
    (_pool_masked_mean, "that is the masked MEAN"),
    (lambda h, m: h[:, 0].clone(), "first token only"),
], ids=["unmasked", "zeroed-padding", "mean", "cls"])
def test_max_pooling_hints(fn, phrase):
    _assert_hint("check_max_pooling", fn, phrase)


def test_max_pooling_zeroed_padding_is_caught_without_large_padding():
    """Zeroing the padding fails on the batch whose real values are all negative, whatever the padding holds."""
    def zero_then_max(h, m):  # right on every batch but the one whose real values are all negative
        return _pool_max_zeroed_padding(h, m) if bool((h[m.bool()] < 0).all()) else ref_max_pooling(h, m)
    with pytest.raises(AssertionError, match=r"(?s)real values all negative\) you return .*Hint: .*-inf, not 0"):
        ex.check_max_pooling(zero_then_max)


def test_max_pooling_torch_pitfalls_get_hints():
    with pytest.raises(AssertionError, match=r"(?s)Exercise 2\.1: you return the pair \(values, indices\).*\.values"):
        ex.check_max_pooling(lambda h, m: h.masked_fill(m.unsqueeze(-1) == 0, float("-inf")).max(dim=1))
    with pytest.raises(AssertionError, match=r"(?s)Exercise 2\.1: masked_fill needs a bool mask.*attention_mask == 0"):
        ex.check_max_pooling(lambda h, m: h.masked_fill(~m.unsqueeze(-1), float("-inf")).amax(1))


def test_max_pooling_in_place_and_float32_answers_accepted(capsys):
    def in_place(h, m):  # edits its input: the check hands the learner a copy
        h.masked_fill_(m.unsqueeze(-1) == 0, -1e9)
        return h.amax(1)
    ex.check_max_pooling(in_place)
    ex.check_max_pooling(lambda h, m: ref_max_pooling(h.float(), m))
    assert capsys.readouterr().out.count("Exercise 2.1: correct") == 2


def _setting_mean(subsets):
    return float(np.mean([_spearman(s, g) for s, g in subsets]))


def _setting_wmean(subsets):
    sizes = [len(g) for _, g in subsets]
    return sum(_spearman(s, g) * n for (s, g), n in zip(subsets, sizes)) / sum(sizes)


@pytest.mark.parametrize("fn,phrase", [
    (_setting_mean, "that is the 'mean' setting"),
    (_setting_wmean, "that is the 'wmean' setting"),
    (lambda subsets: 100.0 * ref_all_setting(subsets), "not x 100"),
], ids=["mean", "wmean", "x100"])
def test_all_setting_hints(fn, phrase):
    _assert_hint("check_all_setting", fn, phrase)


def _anisotropy_with_diagonal(x):
    x = _unit_rows(x)
    n = len(x)
    return sum(float(torch.dot(x[i], x[j])) for i in range(n) for j in range(n)) / (n * n)


def _anisotropy_dot(x):
    n = len(x)
    vals = [float(torch.dot(x[i], x[j])) for i in range(n) for j in range(n) if i != j]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("fn,phrase", [
    (_anisotropy_with_diagonal, "leave out i == j"),
    (_anisotropy_dot, "use cosine similarity"),
], ids=["with-diagonal", "dot-product"])
def test_anisotropy_hints(fn, phrase):
    _assert_hint("check_anisotropy", fn, phrase)


# ---------------------------------------------------------------------------- odd-but-fine answers
def test_float32_answer_within_tolerance(capsys):
    """A learner computing the max pooling in float32 is still accepted (tol 1e-5)."""
    ex.check_max_pooling(lambda h, m: ref_max_pooling(h.float(), m))
    assert "Exercise 2.1: correct" in capsys.readouterr().out


def test_tensor_with_grad_is_accepted(capsys):
    def learner(a, p, t):
        a = a.clone().requires_grad_(True)
        return torch.tensor(ref_decoupled(a.detach(), p, t), dtype=torch.float64) + 0 * a.sum()
    ex.check_decoupled_info_nce(learner)
    assert "Exercise 1.1: correct" in capsys.readouterr().out


# ---------------------------------------------------------------- chapter 04 (independent references)
def _cos(x, y):
    return _unit_rows(x) @ _unit_rows(y).T


def _ref_sup_logits(a, p, n, t, w):
    hard = _cos(a, n) / t
    idx = torch.arange(len(a))
    hard[idx, idx] += w  # log(alpha) on the row's own hard negative only (SimCSE Eq. 8)
    return torch.cat([_cos(a, p) / t, hard], dim=1)


def _ref_alpha_zero(a, p, n, t):
    logits = _ref_sup_logits(a, p, n, t, 0.0)
    b = len(a)
    logits[torch.arange(b), b + torch.arange(b)] = float("-inf")  # the own contradiction leaves
    return torch.nn.functional.cross_entropy(logits, torch.arange(b))


def _ref_duplicate_aware(a, p, n, premises, t, drop=lambda i, j, block: False, numerator=None):
    """Loops: row i's denominator holds every entailment j except those of OTHER rows with row i's premise, and
    every contradiction. ``drop(i, j, block)`` and ``numerator`` build the wrong variants below."""
    a, p, n = _unit_rows(a), _unit_rows(p), _unit_rows(n)
    same = lambda i, j: i != j and premises[i] == premises[j]  # noqa: E731
    rows = []
    for i in range(len(a)):
        terms = [math.exp(float(torch.dot(a[i], p[j])) / t) for j in range(len(a)) if not drop(i, j, "pos")]
        terms += [math.exp(float(torch.dot(a[i], n[j])) / t) for j in range(len(a)) if not drop(i, j, "hard")]
        top = [float(torch.dot(a[i], p[j])) / t for j in range(len(a)) if j == i or (numerator and same(i, j))]
        rows.append(-math.log(sum(math.exp(x) for x in top)) + math.log(sum(terms)))
    return sum(rows) / len(rows)


def _ref_dedup(a, p, n, premises, t):
    return _ref_duplicate_aware(a, p, n, premises, t,
                                drop=lambda i, j, block: block == "pos" and i != j and premises[i] == premises[j])


def test_chapter04_references_pass(capsys):
    from collections import Counter

    ex.check_duplicate_aware_loss(_ref_dedup)
    ex.check_count_false_negatives(lambda b: sum(c * (c - 1) for c in Counter(b).values()))
    ex.check_alpha_zero_loss(_ref_alpha_zero)
    out = capsys.readouterr().out
    assert "Exercise 4.1: correct" in out and "Exercise 4.2: correct" in out and "Exercise 4.3: correct" in out


def test_duplicate_aware_reference_by_hand():
    """Without repeated premises nothing is removed: the standard B x 2B loss; with one premise for a batch of
    two, row 0's denominator loses row 1's entailment."""
    g = torch.Generator().manual_seed(5)
    a, p, n = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    t = 0.5
    standard = torch.nn.functional.cross_entropy(_ref_sup_logits(a, p, n, t, 0.0), torch.arange(2)).item()
    assert math.isclose(_ref_dedup(a, p, n, ["x", "y"], t), standard, rel_tol=1e-12)
    c = _cos(a, p) / t
    h = _cos(a, n) / t
    row0 = -c[0, 0] + torch.logsumexp(torch.stack([c[0, 0], h[0, 0], h[0, 1]]), 0)
    row1 = -c[1, 1] + torch.logsumexp(torch.stack([c[1, 1], h[1, 0], h[1, 1]]), 0)
    assert math.isclose(_ref_dedup(a, p, n, ["x", "x"], t), ((row0 + row1) / 2).item(), rel_tol=1e-12)


def _first_rows_only(a, p, n, premises, t):
    keep = [i for i, x in enumerate(premises) if x not in premises[:i]]
    return _ref_duplicate_aware(a[keep], p[keep], n[keep], [premises[i] for i in keep], t)


def _dedup_torch(a, p, n, premises, t, diagonal=False, multiply=False):
    a, p, n = _unit_rows(a), _unit_rows(p), _unit_rows(n)
    b = len(a)
    same = torch.tensor([[premises[i] == premises[j] and (diagonal or i != j) for j in range(b)] for i in range(b)])
    pos = a @ p.T / t
    pos = pos + same.double() * float("-inf") if multiply else pos.masked_fill(same, float("-inf"))
    return torch.nn.functional.cross_entropy(torch.cat([pos, a @ n.T / t], 1), torch.arange(b))


_same = lambda k, i, j: i != j and k[i] == k[j]  # noqa: E731


@pytest.mark.parametrize("fn, phrase", [
    (lambda a, p, n, k, t: _ref_duplicate_aware(a, p, n, k, t), "nothing was removed"),
    (lambda a, p, n, k, t: _ref_duplicate_aware(a, p, n, k, t, drop=lambda i, j, block: _same(k, i, j)),
     "POSITIVE block only"),
    (lambda a, p, n, k, t: _ref_duplicate_aware(a, p, n, k, t,
                                                drop=lambda i, j, block: block == "hard" and _same(k, i, j)),
     "you masked the contradictions"),
    (lambda a, p, n, k, t: _ref_duplicate_aware(a, p, n, k, t,
                                                drop=lambda i, j, block: block == "pos" and j > i and _same(k, i, j)),
     "mask both (i, j) and (j, i)"),
    (_first_rows_only, "remove logits, not rows"),
    (lambda a, p, n, k, t: _ref_duplicate_aware(a, p, n, k, t, numerator=True), "extra POSITIVES"),
    (lambda a, p, n, k, t: _dedup_torch(a, p, n, k, t, diagonal=True), "never mask the diagonal"),
    (lambda a, p, n, k, t: _dedup_torch(a, p, n, k, t, multiply=True), "0 * -inf = NaN"),
], ids=["no-mask", "both-blocks", "hard-block", "one-direction", "drop-rows", "as-positives", "diagonal", "nan"])
def test_duplicate_aware_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 4.1") as err:
        ex.check_duplicate_aware_loss(fn)
    assert phrase in str(err.value), str(err.value)


def _loss_with_mask(build_remove):
    """The learner function of chapter 04's exercise 4.1, with the student's part `build_remove(premises)`."""
    def loss(z1, z2, z3, premises, t):
        remove = build_remove(premises)
        a, p, n = _unit_rows(z1), _unit_rows(z2), _unit_rows(z3)
        logits = torch.cat([a @ p.T, a @ n.T], dim=1) / t
        logits = logits.masked_fill(remove, float("-inf"))
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))
    return loss


def _same_matrix(premises, diagonal=False):
    b = len(premises)
    return [[premises[i] == premises[j] and (diagonal or i != j) for j in range(b)] for i in range(b)]


@pytest.mark.parametrize("build_remove, phrase", [
    (lambda k: torch.cat([torch.tensor(_same_matrix(k)), torch.zeros(len(k), len(k), dtype=torch.bool)], 1),
     None),  # right
    (lambda k: torch.tensor(_same_matrix(k)), "shape (B, 2B)"),  # the entailment block alone
    (lambda k: torch.cat([torch.tensor(_same_matrix(k)).long(), torch.zeros(len(k), len(k), dtype=torch.long)], 1),
     "must be a bool tensor"),
    (lambda k: torch.cat([torch.tensor(_same_matrix(k))] * 2, 1), "POSITIVE block only"),
    (lambda k: torch.cat([torch.tensor(_same_matrix(k, diagonal=True)), torch.zeros(len(k), len(k), dtype=torch.bool)],
                         1), "never mask the diagonal"),
], ids=["right", "B-by-B", "long-mask", "both-blocks", "diagonal"])
def test_duplicate_aware_notebook_shaped_answers(build_remove, phrase, capsys):
    if phrase is None:
        ex.check_duplicate_aware_loss(_loss_with_mask(build_remove))
        assert "Exercise 4.1: correct" in capsys.readouterr().out
        return
    with pytest.raises(AssertionError, match="Exercise 4.1") as err:
        ex.check_duplicate_aware_loss(_loss_with_mask(build_remove))
    assert phrase in str(err.value), str(err.value)


def test_duplicate_aware_edge_cases_and_odd_answers(capsys):
    # per-row losses instead of their mean: the first batch has 4 rows
    with pytest.raises(AssertionError, match=r"has shape \(4,\), expected \(\)"):
        ex.check_duplicate_aware_loss(lambda a, p, n, k, t: torch.full((len(a),), _ref_dedup(a, p, n, k, t)))
    # right except for a batch of one (there is nothing to mask, but the loss is not 0)
    with pytest.raises(AssertionError, match=r"on B=1, premises \['s'\], tau=0\.05 you return 0\.000000"):
        ex.check_duplicate_aware_loss(lambda a, p, n, k, t: _ref_dedup(a, p, n, k, t) if len(k) > 1 else 0.0)
    # a float32 answer, and one that empties the premise list after use, are accepted
    ex.check_duplicate_aware_loss(lambda a, p, n, k, t: torch.tensor(_ref_dedup(a.float(), p.float(), n.float(), k, t)))
    ex.check_duplicate_aware_loss(lambda a, p, n, k, t: (_ref_dedup(a, p, n, k, t), k.clear())[0])
    assert capsys.readouterr().out.count("Exercise 4.1: correct") == 2


@pytest.mark.parametrize("fn, phrase", [
    (lambda b: sum(c * (c - 1) for c in __import__("collections").Counter(b).values()) // 2, "ORDERED"),
    (lambda b: len(b) - len(set(b)), "extra copies"),
])
def test_count_false_negatives_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 4.2") as err:
        ex.check_count_false_negatives(fn)
    assert phrase in str(err.value)


@pytest.mark.parametrize("fn, phrase", [
    (lambda a, p, n, t: torch.nn.functional.cross_entropy(_cos(a, p) / t, torch.arange(len(a))), "no hard negatives"),
    (lambda a, p, n, t: torch.nn.functional.cross_entropy(_ref_sup_logits(a, p, n, t, 0.0), torch.arange(len(a))),
     "alpha = 1"),
])
def test_alpha_zero_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 4.3") as err:
        ex.check_alpha_zero_loss(fn)
    assert phrase in str(err.value)


# ---------------------------------------------------------------- chapter 03 (independent references)
def _ref_unsup_loss(z1, z2, t):
    """SimCSE Eq. 1 with explicit loops: row i scores view 1 of i against view 2 of every j."""
    a, b = _unit_rows(z1), _unit_rows(z2)
    rows = []
    for i in range(len(a)):
        s = [float(torch.dot(a[i], b[j])) / t for j in range(len(b))]
        rows.append(-s[i] + math.log(sum(math.exp(v) for v in s)))
    return sum(rows) / len(rows)


def _ref_identical_views(b, t):
    # -log(e^(1/t) / (e^(1/t) + (b - 1) e^0)), computed by brute force over one row
    return -math.log(math.exp(1 / t) / (math.exp(1 / t) + (b - 1) * math.exp(0.0)))


def _ref_alignment(z1, z2):
    a, b = _unit_rows(z1), _unit_rows(z2)
    return sum(float(((a[i] - b[i]) ** 2).sum()) for i in range(len(a))) / len(a)


def test_chapter03_references_pass(capsys):
    ex.check_loss_predictions(lambda: dict(PREDICTIONS))
    ex.check_identical_views_loss(_ref_identical_views)
    ex.check_alignment_from_views(_ref_alignment)
    out = capsys.readouterr().out
    assert "Exercise 3.1: correct" in out and "Exercise 3.2: correct" in out and "Exercise 3.3: correct" in out


def test_identical_views_closed_form_matches_orthogonal_batch():
    """The closed form of exercise 3.2 is what the loss gives on orthonormal, identical views."""
    for b, t in [(4, 0.5), (16, 0.1), (32, 1.0)]:
        z = torch.eye(b, 2 * b, dtype=torch.float64)  # b orthonormal rows, each its own second view
        assert math.isclose(_ref_unsup_loss(z, z.clone(), t), _ref_identical_views(b, t), rel_tol=1e-9)


def test_chapter03_float32_and_numpy_answers_accepted(capsys):
    ex.check_identical_views_loss(lambda b, t: np.float32(_ref_identical_views(b, t)))
    assert "Exercise 3.2: correct" in capsys.readouterr().out


# Exercise 3.1, by hand: cosines ignore lengths and a common sign flip, the loss is a mean over rows whose
# candidates are a set; every other change moves the loss by an amount that depends on the embeddings, except
# appending the batch to itself, which doubles every denominator term: + log 2 for every row.
PREDICTIONS = {"scale": 0.0, "flip_sign": 0.0, "reverse_rows": 0.0, "roll_second_view": "depends",
               "swap_views": "depends", "add_vector": "depends", "duplicate_batch": math.log(2)}


def test_loss_predictions_odd_but_right_answers_accepted(capsys):
    answers = dict(PREDICTIONS, scale=0, flip_sign=np.float32(0.0), reverse_rows=torch.tensor(0.0),
                   roll_second_view=" Depends", duplicate_batch=0.693)
    ex.check_loss_predictions(lambda: answers)
    out = capsys.readouterr().out
    assert out.count("right") == 7 and "WRONG" not in out, out
    assert out.splitlines()[-1].startswith("Exercise 3.1: correct on 7 predictions")


@pytest.mark.parametrize("name, wrong, phrase", [
    ("scale", "depends", "cos(10u, 10v) = cos(u, v)"),
    ("flip_sign", "depends", "cos(-u, -v) = cos(u, v)"),
    ("reverse_rows", "depends", "order of rows and columns plays no part"),
    ("roll_second_view", 0.0, "ANOTHER sentence's view"),
    ("swap_views", 0.0, "Eq. 1 is not symmetric"),
    ("add_vector", 0.0, "not invariant to a shift"),
    ("duplicate_batch", "depends", "exactly log 2"),
    ("duplicate_batch", 0.0, "exactly log 2"),
    ("duplicate_batch", 0.5, "exactly log 2"),
])
def test_loss_predictions_wrong_prediction_is_explained(name, wrong, phrase, capsys):
    with pytest.raises(AssertionError) as err:
        ex.check_loss_predictions(lambda: dict(PREDICTIONS, **{name: wrong}))
    msg = str(err.value)
    assert msg.startswith("Exercise 3.1: 1 of 7 predictions differ from the experiment"), msg
    assert f"- {name}: you predicted" in msg and phrase in msg, msg
    table = capsys.readouterr().out  # the measurements are shown before the verdict
    assert table.count("WRONG") == 1 and table.count("right") == 6, table


def test_loss_predictions_all_zero_lists_every_wrong_one():
    with pytest.raises(AssertionError) as err:
        ex.check_loss_predictions(lambda: {k: 0.0 for k in PREDICTIONS})
    msg = str(err.value)
    assert "4 of 7 predictions differ" in msg, msg
    for name in ("roll_second_view", "swap_views", "add_vector", "duplicate_batch"):
        assert f"- {name}: you predicted 0, the experiment gives" in msg, msg


@pytest.mark.parametrize("answer, phrase", [
    (["depends"] * 7, "return a dict"),
    ({k: v for k, v in PREDICTIONS.items() if k != "swap_views"}, "Missing: ['swap_views']"),
    (dict(PREDICTIONS, scaling=0.0), "unknown keys (check the spelling): ['scaling']"),
    (dict(PREDICTIONS, swap_views="changes"), "prediction for 'swap_views' is 'changes'"),
    (dict(PREDICTIONS, scale=False), "prediction for 'scale' is False"),
    (dict(PREDICTIONS, scale=float("nan")), "prediction for 'scale' is nan"),
    (dict(PREDICTIONS, scale=None), "prediction for 'scale' is None"),
], ids=["list", "missing", "unknown", "changes", "bool", "nan", "none-value"])
def test_loss_predictions_malformed_answers(answer, phrase):
    with pytest.raises(AssertionError, match="Exercise 3.1") as err:
        ex.check_loss_predictions(lambda: answer)
    assert phrase in str(err.value), str(err.value)


def test_loss_changes_match_naive_loops():
    """The experiment's numbers, recomputed with the loop version of Eq. 1 on the transformed views."""
    g = torch.Generator().manual_seed(11)
    z1 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = 0.1
    got = ex.loss_changes(z1, z2, t)
    before = _ref_unsup_loss(z1, z2, t)
    by_hand = {"scale": _ref_unsup_loss(10 * z1, 10 * z2, t), "flip_sign": _ref_unsup_loss(-z1, -z2, t),
               "reverse_rows": _ref_unsup_loss(z1.flip(0), z2.flip(0), t),
               "roll_second_view": _ref_unsup_loss(z1, torch.cat([z2[-1:], z2[:-1]]), t),
               "swap_views": _ref_unsup_loss(z2, z1, t),
               "duplicate_batch": _ref_unsup_loss(torch.cat([z1, z1]), torch.cat([z2, z2]), t)}
    for name, after in by_hand.items():
        assert math.isclose(got[name], after - before, abs_tol=1e-9), name
    assert math.isclose(got["duplicate_batch"], math.log(2), abs_tol=1e-9)
    assert set(got) == set(PREDICTIONS) and abs(got["add_vector"]) > 1e-6
    # float32 views with grad (as an encoder returns them) are accepted and give the same numbers
    again = ex.loss_changes(z1.float().requires_grad_(), z2.float(), t)
    assert all(math.isclose(again[k], got[k], abs_tol=1e-4) for k in got)


@pytest.mark.parametrize("fn, phrase", [
    (lambda b, t: math.log(b), "collapse"),
    (lambda b, t: math.log(b - 1) - 1 / t, "the positive is in the denominator too"),
    (lambda b, t: _ref_identical_views(b, 1.0), "divide the cosines by the temperature"),
    (lambda b, t: math.log(1 + b * math.exp(-1 / t)), "B - 1 negatives, not B"),
    (lambda b, t: 0.0, "the loss is above 0"),
], ids=["log-B", "no-positive-in-denominator", "no-temperature", "B-negatives", "zero"])
def test_identical_views_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 3.2") as err:
        ex.check_identical_views_loss(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_identical_views_unknown_mistake_has_no_hint():
    with pytest.raises(AssertionError) as err:
        ex.check_identical_views_loss(lambda b, t: _ref_identical_views(b, t) + 0.25)
    assert "Hint:" not in str(err.value) and "B=64, tau=0.5" in str(err.value)


def _alignment_unnormalised(z1, z2):
    return sum(float(((z1[i] - z2[i]) ** 2).sum()) for i in range(len(z1))) / len(z1)


def _alignment_half(z1, z2):  # 1 - cos = half the squared distance on the sphere
    a, b = _unit_rows(z1), _unit_rows(z2)
    return sum(1 - float(torch.dot(a[i], b[i])) for i in range(len(a))) / len(a)


@pytest.mark.parametrize("fn, phrase", [
    (_alignment_unnormalised, "L2-normalise the rows first"),
    (lambda a, b: sum(float(((_unit_rows(a)[i] - _unit_rows(b)[i]) ** 2).sum()) ** 0.5 for i in range(len(a))) / len(a),
     "square the distances"),
    (lambda a, b: _ref_alignment(a, b) * len(a), "do not sum"),
    (_alignment_half, "you return half of it"),
    (lambda a, b: _ref_alignment(a, b) / a.shape[1], "averaged over the dimensions too"),
], ids=["unnormalised", "not-squared", "sum", "one-minus-cos", "mean-over-dims"])
def test_alignment_from_views_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 3.3") as err:
        ex.check_alignment_from_views(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_alignment_from_views_per_pair_shape_is_reported():
    with pytest.raises(AssertionError, match=r"has shape \(6,\), expected \(\)"):
        ex.check_alignment_from_views(lambda a, b: (_unit_rows(a) - _unit_rows(b)).pow(2).sum(1))


CHAPTER03 = {"check_loss_predictions": "Exercise 3.1", "check_identical_views_loss": "Exercise 3.2",
             "check_alignment_from_views": "Exercise 3.3"}


@pytest.mark.parametrize("check_name", list(CHAPTER03))
def test_chapter03_not_implemented_and_none(check_name):
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(CHAPTER03[check_name])
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


# ---- chapter 05 (independent references)
def _official_bpe_repetition(input_ids, dup_rate, rng):
    """ESimCSE/train.py:prepare_features, --dup_type bpe (reference §5.1), transcribed with rng for random."""
    input_len = len(input_ids)
    dup_len = int(dup_rate * input_len)
    if dup_len > 0:
        dup_len = rng.randrange(min(10, dup_len))
        dup_word_index = rng.sample(list(range(1, input_len - 1)), k=dup_len)
        r_input_id = []
        for index, word_id in enumerate(input_ids):
            r_input_id.append(word_id)
            if index in dup_word_index:
                r_input_id.append(word_id)
        return r_input_id
    return list(input_ids)


def _ref_deletion(input_ids, del_rate, rng):
    """The official bpe draws (as in _official_bpe_repetition), each chosen token left out, by an explicit loop."""
    input_len = len(input_ids)
    del_len = int(del_rate * input_len)
    if del_len <= 0:
        return list(input_ids)
    del_len = rng.randrange(min(10, del_len))
    del_word_index = rng.sample(list(range(1, input_len - 1)), k=del_len)
    out = []
    for index, word_id in enumerate(input_ids):
        if index not in del_word_index:
            out.append(word_id)
    return out


def _ref_ema_after(w0, w, m, steps):
    """`steps` explicit EMA steps towards a fixed target."""
    out = w0.clone()
    for _ in range(steps):
        out = m * out + (1 - m) * w
    return out


def _ref_steps_until(m, fraction):
    t, weight = 0, 1.0
    while weight > fraction:  # brute force: multiply until the start's weight is at most `fraction`
        t, weight = t + 1, weight * m
    return t


def test_chapter05_references_pass(capsys):
    ex.check_repeat_tokens(_official_bpe_repetition)
    ex.check_delete_tokens(_ref_deletion)
    ex.check_ema_after(_ref_ema_after)
    ex.check_steps_until(_ref_steps_until)
    out = capsys.readouterr().out
    for k in range(1, 5):
        assert f"Exercise 5.{k}: correct" in out, out


def test_steps_until_known_values():
    # the numbers chapter 05 quotes: 0.995 ** 500 ~ 0.08, 1 % after 919 steps; 0.995 ** 96 ~ 0.62
    assert _ref_steps_until(0.995, 0.01) == 919
    assert math.isclose(0.995 ** 500, 0.0816, abs_tol=5e-4) and math.isclose(0.995 ** 96, 0.618, abs_tol=1e-3)


def test_repeat_tokens_learner_gets_a_fresh_generator_per_call(capsys):
    # a learner that ignores rng and uses the global generator cannot reproduce the seeded draws
    import random

    with pytest.raises(AssertionError, match="Exercise 5.1"):
        ex.check_repeat_tokens(lambda ids, rate, rng: _official_bpe_repetition(ids, rate, random.Random()))
    # mutating the input list in place does not change the reference's input
    ex.check_repeat_tokens(lambda ids, rate, rng: ids.__setitem__(slice(None), _official_bpe_repetition(ids, rate, rng))
                           or ids)
    assert "Exercise 5.1: correct" in capsys.readouterr().out


def _paper_repetition(ids, rate, rng):
    n = rng.randint(0, max(2, int(rate * len(ids))))
    chosen = rng.sample(range(1, len(ids) - 1), min(n, len(ids) - 2))
    return [t for k, x in enumerate(ids) for t in ([x, x] if k in chosen else [x])]


def _repetition_with(ids, rate, rng, length=None, pool=None, cap=10, at_end=False):
    bound = int(rate * (len(ids) if length is None else length))
    if bound <= 0:
        return list(ids)
    n = rng.randrange(min(cap, bound) if cap else bound)
    pool = range(1, len(ids) - 1) if pool is None else pool
    chosen = rng.sample(pool, min(n, len(pool)))
    if at_end:
        return list(ids) + [ids[k] for k in chosen]
    return [t for k, x in enumerate(ids) for t in ([x, x] if k in chosen else [x])]


@pytest.mark.parametrize("fn, phrase", [
    (_paper_repetition, "paper's description"),
    (lambda ids, r, g: _repetition_with(ids, r, g, length=len(ids) - 2), "L counts [CLS] and [SEP]"),
    (lambda ids, r, g: _repetition_with(ids, r, g, pool=range(len(ids))), "never repeat the first and last"),
    (lambda ids, r, g: _repetition_with(ids, r, g, pool=range(1, len(ids))), "the last position is [SEP]"),
    (lambda ids, r, g: _repetition_with(ids, r, g, cap=None), "cap the number of repetitions"),
    (lambda ids, r, g: _repetition_with(ids, r, g, at_end=True), "in place"),
], ids=["paper-rule", "length-without-specials", "cls-sep-repeated", "sep-repeated", "no-cap", "appended"])
def test_repeat_tokens_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 5.1") as err:
        ex.check_repeat_tokens(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_repeat_tokens_unknown_mistake_has_no_hint_and_shows_the_length():
    with pytest.raises(AssertionError) as err:
        ex.check_repeat_tokens(lambda ids, r, g: list(ids) + [ids[1]])  # always one extra token, no draws
    msg = str(err.value)
    assert "Hint:" not in msg and "L=32 tokens" in msg and "[33.0," in msg, msg


def _deletion_with(ids, rate, rng, how):
    """The official draws, then a typical way of getting the deletion wrong."""
    bound = int(rate * len(ids))
    if bound <= 0:
        return list(ids)
    chosen = rng.sample(range(1, len(ids) - 1), rng.randrange(min(10, bound)))
    out = list(ids)
    if how == "ascending-del":
        for k in sorted(chosen):
            del out[k]  # later tokens move left: the next position points at the wrong token
    elif how == "remove-by-value":
        for k in chosen:
            out.remove(ids[k])  # the first token with that id, wherever it is
    elif how == "truncate":
        out = ids[:len(ids) - 1 - len(chosen)] + ids[-1:]
    elif how == "repeat":
        out = [t for k, x in enumerate(ids) for t in ([x, x] if k in chosen else [x])]
    return out


@pytest.mark.parametrize("how, phrase", [
    ("repeat", "that is word repetition"),
    ("ascending-del", "moves one place to the left"),
    ("remove-by-value", "deletes the FIRST token with that id"),
    ("truncate", "the length is right but the tokens are not"),
    ("nothing", "nothing was deleted"),
])
def test_delete_tokens_wrong_variants(how, phrase):
    with pytest.raises(AssertionError, match="Exercise 5.2") as err:
        ex.check_delete_tokens(lambda ids, r, g: _deletion_with(ids, r, g, how))
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_delete_tokens_first_case_holds_a_repeated_id_before_a_chosen_one():
    """Remove-by-value is only wrong when an id occurs again before the chosen position: the first case has it."""
    import random

    g = random.Random(3000)  # the check's first case: seed 0, 24 tokens, ids from 6 values
    ids = [2] + [g.randrange(5, 11) for _ in range(22)] + [3]
    chosen = _official_positions_by_hand(ids, 0.32, random.Random(0))
    assert any(ids[k] in ids[:k] for k in chosen)
    assert _deletion_with(ids, 0.32, random.Random(0), "remove-by-value") != _ref_deletion(ids, 0.32, random.Random(0))


def _official_positions_by_hand(ids, rate, rng):
    bound = int(rate * len(ids))
    return rng.sample(list(range(1, len(ids) - 1)), k=rng.randrange(min(10, bound))) if bound > 0 else []


def test_delete_tokens_shows_both_lists_and_the_chosen_positions():
    with pytest.raises(AssertionError) as err:
        ex.check_delete_tokens(lambda ids, r, g: list(ids)[:-2] + [ids[-1]])  # one token too few, no draws
    msg = str(err.value)
    assert msg.startswith("Exercise 5.2: on L=24 tokens, del_rate=0.32, seed 0 the draws choose positions [")
    assert "(23 tokens)" in msg and "(18 tokens)" in msg and "They differ first at position" in msg, msg
    assert "Hint:" not in msg, msg


def test_delete_tokens_index_error_and_in_place_are_explained(capsys):
    def raises(ids, rate, rng):
        raise IndexError("list assignment index out of range")

    with pytest.raises(AssertionError, match="Exercise 5.2: your function raised IndexError") as err:
        ex.check_delete_tokens(raises)
    assert "Delete from the highest position down" in str(err.value)

    def in_place(ids, rate, rng):  # right tokens, but deletes from the caller's list
        kept = _ref_deletion(ids, rate, rng)
        ids[:] = kept
        return ids

    with pytest.raises(AssertionError, match="changed its argument `ids` in place"):
        ex.check_delete_tokens(in_place)
    # a correct answer returned as a tuple is accepted
    ex.check_delete_tokens(lambda ids, r, g: tuple(_ref_deletion(ids, r, g)))
    assert "Exercise 5.2: correct" in capsys.readouterr().out


@pytest.mark.parametrize("fn, phrase", [
    (lambda w0, w, m, t: _ref_ema_after(w0, w, 1 - m, t), "m is the weight that STAYS"),
    (lambda w0, w, m, t: max(0.0, 1 - (1 - m) * t) * w0 + min(1.0, (1 - m) * t) * w, "the steps compound"),
    (lambda w0, w, m, t: _ref_ema_after(w0, w, m, 1), "that is one step"),
], ids=["swapped", "linear", "one-step"])
def test_ema_after_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 5.3") as err:
        ex.check_ema_after(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


@pytest.mark.parametrize("fn, phrase", [
    (lambda m, f: _ref_steps_until(m, f) - 1, "round UP"),
    (lambda m, f: _ref_steps_until(1 - m, f), "not (1 - m) ** t"),
    (lambda m, f: _ref_steps_until(m, f) + 1, "one step too many"),
], ids=["floor", "one-minus-m", "plus-one"])
def test_steps_until_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 5.4") as err:
        ex.check_steps_until(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


CHAPTER05 = {"check_repeat_tokens": "Exercise 5.1", "check_delete_tokens": "Exercise 5.2",
             "check_ema_after": "Exercise 5.3", "check_steps_until": "Exercise 5.4"}


@pytest.mark.parametrize("check_name", list(CHAPTER05))
def test_chapter05_not_implemented_and_none(check_name):
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(CHAPTER05[check_name])
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


# ---- chapter 06 (independent references)
def _ref_rtd_loss(logits, labels, mask, include_padding):
    """Two-way cross-entropy per position by hand: -log softmax(logits)[label]."""
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if not include_padding and mask[i, t] == 0:
                continue
            a, b = float(logits[i, t, 0]), float(logits[i, t, 1])
            chosen = b if int(labels[i, t]) == 1 else a
            total += math.log(math.exp(a) + math.exp(b)) - chosen
            count += 1
    return total / count


def test_chapter06_references_pass(capsys):
    ex.check_changed_input_share(_ref_changed_share)
    ex.check_rtd_loss(_ref_rtd_loss)
    ex.check_rtd_gradient_predictions(lambda: dict(RTD_GRADIENTS_BY_HAND))
    out = capsys.readouterr().out
    assert "Exercise 6.1: correct" in out and "Exercise 6.2: correct" in out and "Exercise 6.3: correct" in out


def test_chapter06_float32_answers_accepted(capsys):
    ex.check_rtd_loss(lambda lg, lb, m, pad: torch.tensor(_ref_rtd_loss(lg.float(), lb, m, pad)))
    assert "Exercise 6.2: correct" in capsys.readouterr().out


def test_rtd_batch_exercises_every_mistake():
    """The seeded inputs contain what the hints are about: rewritten [CLS], ids written at padding."""
    x, g, m = ex.ch06._rtd_batch(60, 4, 7)
    assert (g[:, 0] != x[:, 0]).any() and (g[:, 0] == x[:, 0]).any()
    assert ((g != x) & (m == 0)).any() and (m == 0).any()
    assert ((g != x) & (m == 1))[:, 1:].any()


def _rtd_sigmoid(logits, labels, mask, include_padding):
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if include_padding or mask[i, t] == 1:
                p = 1 / (1 + math.exp(-float(logits[i, t, 1])))
                total -= math.log(p if int(labels[i, t]) == 1 else 1 - p)
                count += 1
    return total / count


@pytest.mark.parametrize("fn, phrase", [
    (lambda lg, lb, m, pad: _ref_rtd_loss(lg, lb, m, True), "real tokens only"),
    (lambda lg, lb, m, pad: _ref_rtd_loss(lg, lb, m, False), "padding included"),
    (lambda lg, lb, m, pad: _ref_rtd_loss(lg, lb, m, False) * float(m.sum()) / m.numel(),
     "divided by every position"),
    (_rtd_sigmoid, "two-way softmax"),
    (lambda lg, lb, m, pad: _ref_rtd_loss(lg, 1 - lb, m, pad), "class 1 is 'replaced'"),
    (lambda lg, lb, m, pad: _ref_rtd_loss(lg, lb, m, pad) * (lb.numel() if pad else float(m.sum())), "do not sum"),
], ids=["ignores-flag", "real-only-always", "wrong-denominator", "sigmoid", "swapped", "sum"])
def test_rtd_loss_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 6.2") as err:
        ex.check_rtd_loss(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def _ref_changed_share(p, v, mask_id=-1, original=0):
    """Enumerate what happens to one maskable token with id 0: not selected (1 - p), or selected and then
    [MASK] (0.8), kept (0.1) or replaced by id i for each of the v ids (0.1 / v each, id 0 included); add up
    the probability of the outcomes whose input id is not the original."""
    outcomes = [(1 - p, original), (p * 0.8, mask_id), (p * 0.1, original)]
    outcomes += [(p * 0.1 / v, i) for i in range(v)]
    return sum(prob for prob, new in outcomes if new != original)


def test_changed_input_share_reference_by_hand(capsys):
    assert math.isclose(_ref_changed_share(0.3, 5), 0.3 * 0.88)  # 0.8 + 0.1 * 4/5
    assert math.isclose(_ref_changed_share(0.5, 2), 0.5 * 0.85)  # 0.8 + 0.1 * 1/2
    assert math.isclose(_ref_changed_share(0.15, 30522), 0.15 * (0.9 - 0.1 / 30522))
    ex.check_changed_input_share(_ref_changed_share)
    ex.check_changed_input_share(lambda p, v: torch.tensor(_ref_changed_share(p, v), dtype=torch.float64))
    assert capsys.readouterr().out.count("Exercise 6.1: correct on") == 2


@pytest.mark.parametrize("fn, phrase", [
    (lambda p, v: p, "10 % of them are left as they are"),
    (lambda p, v: 0.8 * p, "the 10 % that get a random id change the input too"),
    (lambda p, v: 0.9 * p, "with probability 1 / vocab_size it is the original id"),
    (lambda p, v: 0.8 + 0.1 * (1 - 1 / v), "multiply by masking_ratio"),
    (lambda p, v: p * (0.8 + 0.2 * (1 - 1 / v)), "10 % random, not 20 %"),
    (lambda p, v: p * (0.8 + 0.1 * (v - 2) / (v - 1)), "the original one included"),
], ids=["selected", "mask-only", "random-always-differs", "no-ratio", "twenty-percent-random", "v-minus-one"])
def test_changed_input_share_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 6.1") as err:
        ex.check_changed_input_share(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_changed_input_share_a_simulated_estimate_is_not_exact():
    rng = np.random.default_rng(0)

    def simulated(p, v, n=20_000):  # a Monte-Carlo estimate: close, not the expectation asked for
        selected = rng.random(n) < p
        kind = rng.random(n)
        random_id = rng.integers(0, v, n)
        changed = selected & ((kind < 0.8) | ((kind >= 0.9) & (random_id != 0)))
        return float(changed.mean())

    with pytest.raises(AssertionError, match="Exercise 6.1: on masking_ratio=0.3, vocab_size=5") as err:
        ex.check_changed_input_share(simulated)
    assert "Hint:" not in str(err.value)


# the answers worked out by hand (section 2 of chapter 06 and the chain rule), not read off the experiment
RTD_GRADIENTS_BY_HAND = {"encoder, official": True, "encoder, h detached": False, "encoder, plain ELECTRA": False,
                         "encoder, frozen discriminator": True, "generator, made trainable": False}


def test_rtd_gradient_experiment_agrees_with_the_hand_answers():
    assert list(ex.RTD_GRADIENT_VARIANTS) == list(RTD_GRADIENTS_BY_HAND)
    for seed in range(3):
        assert ex.ch06._rtd_gradient_experiment(seed) == RTD_GRADIENTS_BY_HAND


def test_rtd_gradient_predictions_accepts_the_hand_answers(capsys):
    ex.check_rtd_gradient_predictions(lambda: dict(RTD_GRADIENTS_BY_HAND))
    ex.check_rtd_gradient_predictions(lambda: {k: np.bool_(v) for k, v in RTD_GRADIENTS_BY_HAND.items()})
    out = capsys.readouterr().out
    assert out.count("Exercise 6.3: correct on 5 predictions") == 2 and "WRONG" not in out, out


@pytest.mark.parametrize("variant, phrase", [
    ("encoder, official", "the chain rule carries dL_RTD/dh"),
    ("encoder, h detached", "detach() cuts the only path"),
    ("encoder, plain ELECTRA", "does not depend on the encoder"),
    ("encoder, frozen discriminator", "stops ITS weights from being updated"),
    ("generator, made trainable", "chosen by argmax"),
])
def test_rtd_gradient_predictions_explain_each_wrong_one(variant, phrase, capsys):
    wrong = {**RTD_GRADIENTS_BY_HAND, variant: not RTD_GRADIENTS_BY_HAND[variant]}
    with pytest.raises(AssertionError, match="Exercise 6.3: 1 of 5 predictions differ") as err:
        ex.check_rtd_gradient_predictions(lambda: wrong)
    assert f"- {variant} (" in str(err.value) and phrase in str(err.value), str(err.value)
    assert "WRONG" in capsys.readouterr().out


def test_rtd_gradient_predictions_all_true_lists_every_false_one():
    with pytest.raises(AssertionError, match="3 of 5 predictions differ") as err:
        ex.check_rtd_gradient_predictions(lambda: {k: True for k in RTD_GRADIENTS_BY_HAND})
    msg = str(err.value)
    assert "h detached" in msg and "plain ELECTRA" in msg and "generator, made trainable" in msg, msg


@pytest.mark.parametrize("answer, phrase", [
    (lambda: list(RTD_GRADIENTS_BY_HAND.values()), "return a dict"),
    (lambda: {k: v for k, v in RTD_GRADIENTS_BY_HAND.items() if k != "generator, made trainable"},
     "Missing: ['generator, made trainable']"),
    (lambda: {**{k: v for k, v in RTD_GRADIENTS_BY_HAND.items() if k != "encoder, official"}, "encoder official": True},
     "unknown keys (check the spelling): ['encoder official']"),
    (lambda: {**RTD_GRADIENTS_BY_HAND, "encoder, official": "yes"}, "Write True"),
    (lambda: {**RTD_GRADIENTS_BY_HAND, "encoder, official": 1}, "Write True"),
], ids=["list", "missing", "misspelt", "string", "int"])
def test_rtd_gradient_predictions_malformed_answers(answer, phrase):
    with pytest.raises(AssertionError, match="Exercise 6.3") as err:
        ex.check_rtd_gradient_predictions(answer)
    assert phrase in str(err.value), str(err.value)


CHAPTER06 = {"check_changed_input_share": "Exercise 6.1", "check_rtd_loss": "Exercise 6.2",
             "check_rtd_gradient_predictions": "Exercise 6.3"}


@pytest.mark.parametrize("check_name", list(CHAPTER06))
def test_chapter06_not_implemented_and_none(check_name):
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(CHAPTER06[check_name])
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


# ---- chapter 07 (independent references)
def _ref_adjacent_pair(n, rng, lo, hi):
    """one_pair's draws transcribed, then every start in the document tried one by one: keep those whose span
    shares no token with the anchor and touches it; pick one with rng."""
    a_len = int(rng.beta(4, 2) * (hi - lo) + lo)
    buckets = list(range(0, n - hi + 1, hi))
    bucket = buckets[int(rng.integers(0, len(buckets)))]
    a_start = int(rng.integers(bucket, bucket + hi - a_len + 1))
    p_len = int(rng.beta(2, 4) * (hi - lo) + lo)
    anchor = set(range(a_start, a_start + a_len))
    starts = [s for s in range(0, n - p_len + 1)
              if not anchor & set(range(s, s + p_len)) and (s + p_len == a_start or s == a_start + a_len)]
    p_start = starts[int(rng.integers(0, len(starts)))]
    return (a_start, a_start + a_len), (p_start, p_start + p_len)


def _ref_start_range(s, e, p, n):
    starts = [x for x in range(0, n - p + 1) if x + p >= s and x <= e]  # touches or overlaps the anchor
    return (min(starts), max(starts))


def _ref_relation(anchor, positive):
    a, p = set(range(*anchor)), set(range(*positive))
    if p <= a:
        return "inside"
    if a < p:
        return "contains"
    if a & p:
        return "overlaps"
    return "adjacent" if positive[1] == anchor[0] or positive[0] == anchor[1] else "apart"


CHAPTER07 = {"check_adjacent_pair": ("Exercise 7.1", _ref_adjacent_pair), "check_positive_start_range":
             ("Exercise 7.2", _ref_start_range), "check_span_relation": ("Exercise 7.3", _ref_relation)}


@pytest.mark.parametrize("check_name", list(CHAPTER07))
def test_chapter07_reference_passes_and_stubs_fail(check_name, capsys):
    name, ref = CHAPTER07[check_name]
    getattr(ex, check_name)(ref)
    assert capsys.readouterr().out.startswith(f"{name}: correct on")
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(name)
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


def _pair_with(start_rule, anchor_rng=None):
    """one_pair with the positive's start chosen by ``start_rule(n, rng, a_start, a_end, p_len)``."""
    def pair(n, rng, lo, hi):
        r = rng if anchor_rng is None else anchor_rng()
        a_len = int(r.beta(4, 2) * (hi - lo) + lo)
        buckets = list(range(0, n - hi + 1, hi))
        bucket = buckets[int(r.integers(0, len(buckets)))]
        a_start = int(r.integers(bucket, bucket + hi - a_len + 1))
        p_len = int(r.beta(2, 4) * (hi - lo) + lo)
        p_start = start_rule(n, rng, a_start, a_start + a_len, p_len)
        return (a_start, a_start + a_len), (p_start, p_start + p_len)
    return pair


def _random_side(n, rng, a0, a1, p_len, gap=0):
    sides = [s for s in (a0 - p_len - gap, a1 + gap) if 0 <= s <= n - p_len]
    return sides[int(rng.integers(0, len(sides)))]


@pytest.mark.parametrize("fn, phrase", [
    (_pair_with(lambda n, r, a0, a1, pl: int(r.integers(max(0, a0 - pl), min(a1, n - pl) + 1))),
     "shares 163 tokens with its anchor"),  # one_pair unchanged: DeCLUTR's whole window
    (_pair_with(lambda n, r, a0, a1, pl: _random_side(n, r, a0, a1, pl, gap=1)), "there is 1 token between"),
    (_pair_with(lambda n, r, a0, a1, pl: a1), "leaves the document"),
    (_pair_with(lambda n, r, a0, a1, pl: min(a1, n - pl)), "shares 71 tokens"),  # clamped into the document
    (_pair_with(lambda n, r, a0, a1, pl: a1 if a1 + pl <= n else a0 - pl), "always after the anchor"),
    (_pair_with(lambda n, r, a0, a1, pl: a0 - pl if a0 - pl >= 0 else a1), "always before the anchor"),
    (_pair_with(_random_side, anchor_rng=lambda: np.random.default_rng()), "keep one_pair's draws"),
    (lambda n, rng, lo, hi: ((0, hi), (hi, hi + lo)), "your anchor is [0, "),
    (lambda n, rng, lo, hi: (_ref_adjacent_pair(n, rng, lo, hi)[0], (0, 0)), "has 0 tokens"),
    (lambda n, rng, lo, hi: tuple(x for span in _ref_adjacent_pair(n, rng, lo, hi) for x in span), "return two spans"),
], ids=["whole-window", "gap-of-one", "always-after", "clamped", "after-if-it-fits", "before-if-it-fits",
        "global-rng", "fixed-anchor", "empty-positive", "flat-tuple"])
def test_adjacent_pair_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 7.1") as err:
        ex.check_adjacent_pair(fn)
    assert phrase in str(err.value), str(err.value)


def test_one_pair_draws_by_hand():
    class Fixed:  # beta() always 0.5, integers(low, high) always low
        def beta(self, a, b):
            return 0.5

        def integers(self, low, high):
            return low

    # n=200, lo=8, hi=32: a_len = int(0.5 * 24 + 8) = 20, bucket 0, a_start 0, p_len = 20
    assert ex.ch07._one_pair_draws(200, Fixed(), 8, 32) == (0, 20, 20)
    # before the anchor does not fit (0 - 20 < 0): the only adjacent positive starts at the anchor's end
    assert _ref_adjacent_pair(200, Fixed(), 8, 32) == ((0, 20), (20, 40))


def test_adjacent_pair_accepts_another_way_to_pick_the_side(capsys):
    def sides_by_choice(n, rng, lo, hi):
        a_len = int(rng.beta(4, 2) * (hi - lo) + lo)
        buckets = list(range(0, n - hi + 1, hi))
        bucket = buckets[int(rng.integers(0, len(buckets)))]
        a_start = int(rng.integers(bucket, bucket + hi - a_len + 1))
        p_len = int(rng.beta(2, 4) * (hi - lo) + lo)
        fits = {"before": a_start - p_len >= 0, "after": a_start + a_len + p_len <= n}
        side = rng.choice([k for k, ok in fits.items() if ok])
        p_start = a_start - p_len if side == "before" else a_start + a_len
        return [a_start, a_start + a_len], [p_start, p_start + p_len]  # lists instead of tuples

    ex.check_adjacent_pair(sides_by_choice)
    assert "Exercise 7.1: correct on 600 test inputs." in capsys.readouterr().out


@pytest.mark.parametrize("fn, phrase", [
    (lambda s, e, p, n: (s - p, min(e, n - p)), "before token 0"),
    (lambda s, e, p, n: (max(0, s - p), e), "num_tokens - positive_length"),
    (lambda s, e, p, n: (max(0, s - p), min(e - p, n - p)), "anchor's END"),
])
def test_positive_start_range_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 7.2") as err:
        ex.check_positive_start_range(fn)
    assert phrase in str(err.value)


def _closed_interval_relation(anchor, positive):
    (a0, a1), (p0, p1) = anchor, positive
    if a0 <= p0 and p1 <= a1:
        return "inside"
    if p0 <= a0 and a1 <= p1:
        return "contains"
    return "overlaps" if p0 <= a1 and a0 <= p1 else "apart"


@pytest.mark.parametrize("fn, phrase", [
    (_closed_interval_relation, "half-open"),
    (lambda a, p: "overlaps" if _ref_relation(a, p) in ("inside", "contains") else _ref_relation(a, p),
     "test containment before overlap"),
    (lambda a, p: "apart" if _ref_relation(a, p) == "adjacent" else _ref_relation(a, p), "not 'apart'"),
    (lambda a, p: "near", "must be one of"),
])
def test_span_relation_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 7.3") as err:
        ex.check_span_relation(fn)
    assert phrase in str(err.value)


# ---- wrong variants added in the audit of every check (each check: reference passes, >= 2 hinted mistakes)
def test_count_false_negatives_rows_instead_of_pairs():
    with pytest.raises(AssertionError, match="Exercise 4.2") as err:
        ex.check_count_false_negatives(lambda b: len([x for x in b if b.count(x) > 1]))
    assert "Hint:" in str(err.value) and "counts rows with a repeated premise" in str(err.value), str(err.value)


def test_positive_start_range_lowest_start_at_the_anchor():
    with pytest.raises(AssertionError, match="Exercise 7.2") as err:
        ex.check_positive_start_range(lambda s, e, p, n: (s, min(e, n - p)))
    assert "Hint:" in str(err.value) and "anchor_start - positive_length" in str(err.value), str(err.value)


# ---- chapter 09 (independent references)
def _ref_mean_std(v):
    v = [float(x) for x in v]
    m = sum(v) / len(v)
    return (m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)))


def _ref_f1_at(s, y, t):
    tp = sum(1 for a, b in zip(s, y) if a > t and b == 1)
    fp = sum(1 for a, b in zip(s, y) if a > t and b == 0)
    fn = sum(1 for a, b in zip(s, y) if a <= t and b == 1)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _ref_paired(a, b):
    return _ref_mean_std([x - y for x, y in zip(a, b)])


CHAPTER09 = {"check_mean_std": ("Exercise 9.1", _ref_mean_std), "check_f1_at": ("Exercise 9.2", _ref_f1_at),
             "check_paired_difference": ("Exercise 9.3", _ref_paired)}


@pytest.mark.parametrize("check_name", list(CHAPTER09))
def test_chapter09_reference_passes_and_stubs_fail(check_name, capsys):
    assert_reference_passes_and_stubs_fail(check_name, *CHAPTER09[check_name], capsys)


@pytest.mark.parametrize("check_name, fn, phrase", [
    ("check_mean_std", lambda v: (np.mean(v), np.std(v)), "SAMPLE standard deviation"),
    ("check_mean_std", lambda v: (np.mean(v), np.var(v, ddof=1)), "not the variance"),
    ("check_f1_at", lambda s, y, t: _ref_f1_at([x + 1e-9 if x == t else x for x in s], y, t), "strictly greater"),
    ("check_f1_at", lambda s, y, t: float(np.mean((np.asarray(s) > t) == (np.asarray(y) == 1))), "accuracy"),
    ("check_paired_difference", lambda a, b: (np.mean(a) - np.mean(b),
                                              math.sqrt(np.var(a, ddof=1) + np.var(b, ddof=1))), "pair the seeds"),
    ("check_paired_difference", lambda a, b: _ref_paired(b, a), "a - b, not b - a"),
])
def test_chapter09_wrong_variants(check_name, fn, phrase):
    with pytest.raises(AssertionError) as err:
        getattr(ex, check_name)(fn)
    assert phrase in str(err.value), str(err.value)


# ---- chapter 08
def _ref_ht(anchor, levels, margins):
    """The HT loss with numpy, one row and one adjacent pair at a time."""
    a, lv = anchor.numpy(), levels.numpy()
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    pairs = lv.shape[1] - 1
    total = sum(np.mean([max(0.0, cos(a[i], lv[i, k + 1]) - cos(a[i], lv[i, k]) + margins[min(k, len(margins) - 1)])
                         for i in range(len(a))]) for k in range(pairs))
    return total / pairs


def _ref_near_copy(answer, source, threshold):
    import re
    words = lambda t: set(re.sub(r"[^\w\s]", " ", t.lower()).split())  # noqa: E731
    a, b = words(answer), words(source)
    return len(a & b) / len(a | b) >= threshold


def _ref_rfd_alignment(tx, ty, ex_, ey):
    def align(x, y):
        x, y = x.numpy(), y.numpy()
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return float(np.mean(np.sum((x - y) ** 2, axis=1)))
    return align(tx, ty) - align(ex_, ey)


CHAPTER08 = {"check_hierarchical_triplet_loss": ("Exercise 8.1", _ref_ht),
             "check_near_copy": ("Exercise 8.2", _ref_near_copy),
             "check_rfd_alignment": ("Exercise 8.3", _ref_rfd_alignment)}


@pytest.mark.parametrize("check_name", list(CHAPTER08))
def test_chapter08_reference_passes_and_stubs_fail(check_name, capsys):
    # a bool check (8.2) reads None as False, which is a wrong answer, not a missing one
    assert_reference_passes_and_stubs_fail(check_name, *CHAPTER08[check_name], capsys,
                                           none_is_missing=check_name != "check_near_copy")


def _ht_dot(anchor, levels, margins):
    s = torch.einsum("nd,nkd->nk", anchor, levels)
    return sum(torch.relu(s[:, k + 1] - s[:, k] + margins[min(k, len(margins) - 1)]).mean()
               for k in range(levels.shape[1] - 1)) / (levels.shape[1] - 1)


@pytest.mark.parametrize("fn, phrase", [
    (_ht_dot, "COSINE"),
    (lambda a, l, m: _ref_ht(a, l, m) * (l.shape[1] - 1), "1/(K-2)"),
    (lambda a, l, m: _ht_dot(torch.nn.functional.normalize(a, dim=-1), -torch.nn.functional.normalize(l, dim=-1), m),
     "HIGHER"),
    (lambda a, l, m: _ref_ht(a, l, (m + (0.0,) * 4)[:l.shape[1] - 1] if len(m) < l.shape[1] - 1 else m), "LAST margin"),
])
def test_hierarchical_triplet_loss_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 8.1") as err:
        ex.check_hierarchical_triplet_loss(fn)
    assert phrase in str(err.value)


@pytest.mark.parametrize("fn, phrase", [
    (lambda a, s, t: len(set(a.split()) & set(s.split())) / len(set(a.split()) | set(s.split())) >= t, "normalise"),
    (lambda a, s, t: _ref_near_copy(a, s, t + 1e-12), "AT the threshold"),
    (lambda a, s, t: len(set(a.lower().strip(".!").split()) & set(s.lower().strip(".!").split()))
     / len(set(s.lower().strip(".!").split())) >= t, "UNION"),
])
def test_near_copy_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 8.2") as err:
        ex.check_near_copy(fn)
    assert phrase in str(err.value)


@pytest.mark.parametrize("fn, phrase", [
    (lambda tx, ty, e, f: float(((tx - ty) ** 2).sum(1).mean() - ((e - f) ** 2).sum(1).mean()), "unit sphere"),
    (lambda tx, ty, e, f: -_ref_rfd_alignment(tx, ty, e, f), "MINUS"),
])
def test_rfd_alignment_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 8.3") as err:
        ex.check_rfd_alignment(fn)
    assert phrase in str(err.value)


# ---------------------------------------------------------------------------- chapter 10
def _ref_last_positions(mask):
    """Walk each row from the right to its first 1."""
    out = []
    for row in mask.tolist():
        k = len(row) - 1
        while not row[k]:
            k -= 1
        out.append(k)
    return torch.tensor(out)


def _ref_dispersive_from_uniformity(u, n):
    """Sum over the n^2 ordered pairs: n diagonal terms exp(0) = 1 and n (n - 1) off-diagonal ones whose mean is
    exp(u) (uniformity's mean over unordered pairs equals the mean over ordered ones)."""
    total = n * 1.0 + n * (n - 1) * math.exp(u)
    return math.log(total / (n * n))


def _ref_group_gradient(probs, answers, rewards):
    """Closed form: the advantages sum to 0, so the policy term cancels and the gradient is -(1/G) sum_i A_i e_{a_i}."""
    g, k = len(answers), len(probs)
    mean = sum(rewards) / g
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / g)
    grad = [0.0] * k
    for a, r in zip(answers, rewards):
        grad[a] -= (0.0 if std == 0 else (r - mean) / std) / g
    return torch.tensor(grad, dtype=torch.float64)


CHAPTER10 = {"check_last_token_positions": ("Exercise 10.1", _ref_last_positions),
             "check_dispersive_from_uniformity": ("Exercise 10.2", _ref_dispersive_from_uniformity),
             "check_group_gradient": ("Exercise 10.3", _ref_group_gradient)}


@pytest.mark.parametrize("check_name", list(CHAPTER10))
def test_chapter10_reference_passes_and_stubs_fail(check_name, capsys):
    assert_reference_passes_and_stubs_fail(check_name, *CHAPTER10[check_name], capsys)


def test_chapter10_references_agree_with_cselab():
    """The hand references above against the library: dispersive vs uniformity on real points, and the
    closed-form group gradient vs autograd through cselab.policy."""
    from cselab.losses import dispersive, uniformity
    from cselab.policy import group_advantages, policy_gradient_loss

    z = torch.randn(12, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert float(dispersive(z, 0.5, normalize=True)) == pytest.approx(
        _ref_dispersive_from_uniformity(float(uniformity(z)), 12), abs=1e-12)
    probs = torch.softmax(torch.randn(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64), 0)
    for answers, rewards in (([1, 3, 3, 0], [0.5, 1.0, 1.0, 0.0]), ([2, 4], [1.0, 1.0])):
        theta = probs.log().clone().requires_grad_(True)
        logp = torch.log_softmax(theta, 0)[answers].unsqueeze(0)
        policy_gradient_loss(logp, group_advantages(torch.tensor([rewards], dtype=torch.float64), eps=0.0)).backward()
        torch.testing.assert_close(theta.grad, _ref_group_gradient(probs, answers, rewards))


@pytest.mark.parametrize("fn, phrase", [
    (lambda m: m.long().sum(1) - 1, "RIGHT padding"),
    (lambda m: torch.full((m.shape[0],), m.shape[1] - 1), "LEFT padding"),
    (lambda m: m.long().argmin(1) - 1, "first 0"),
    (lambda m: _ref_last_positions(m).unsqueeze(1), "shape"),
])
def test_last_token_positions_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 10.1") as err:
        ex.check_last_token_positions(fn)
    assert phrase in str(err.value)


@pytest.mark.parametrize("fn, phrase", [
    (lambda u, n: u, "diagonal included"),
    (lambda u, n: math.log((n - 1) / n) + u, "left out the n diagonal"),
    (lambda u, n: math.log((n * (n - 1) * math.exp(u) + n) / (n * (n - 1))), "divide by n^2"),
    (lambda u, n: math.log((n * (n - 1) / 2 * math.exp(u) + n) / n**2), "counts each of them twice"),
])
def test_dispersive_from_uniformity_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 10.2") as err:
        ex.check_dispersive_from_uniformity(fn)
    assert phrase in str(err.value)


def _raw_reward_gradient(probs, answers, rewards):
    grad = [0.0] * len(probs)
    for a, r in zip(answers, rewards):
        for k in range(len(probs)):
            grad[k] -= r * ((k == a) - float(probs[k])) / len(answers)
    return torch.tensor(grad, dtype=torch.float64)


def _bessel_gradient(probs, answers, rewards):
    g = len(answers)
    scale = math.sqrt((g - 1) / g) if len(set(rewards)) > 1 else 1.0  # population std / sample std
    return _ref_group_gradient(probs, answers, rewards) * scale


@pytest.mark.parametrize("fn, phrase", [
    (lambda p, a, r: -_ref_group_gradient(p, a, r), "opposite sign"),
    (lambda p, a, r: len(a) * _ref_group_gradient(p, a, r), "divide by G"),
    (_raw_reward_gradient, "raw rewards"),
    (_bessel_gradient, "Bessel"),
])
def test_group_gradient_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 10.3") as err:
        ex.check_group_gradient(fn)
    assert phrase in str(err.value)


def test_last_token_positions_bool_crash_gets_a_hint():
    """The natural answer without a cast crashes on bool masks: the check explains instead of raising it."""
    def no_cast(mask):
        return mask.shape[1] - 1 - mask.flip(1).argmax(1)  # argmax has no bool kernel

    with pytest.raises(AssertionError, match="Exercise 10.1: on a bool mask") as err:
        ex.check_last_token_positions(no_cast)
    assert "mask.long()" in str(err.value)
    ex.check_last_token_positions(lambda m: no_cast(m.long()))  # the same answer with the cast passes


def test_group_gradient_accepts_a_float32_answer():
    ex.check_group_gradient(lambda p, a, r: _ref_group_gradient(p, a, r).float())
