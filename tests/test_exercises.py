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


def ref_identical(b):
    return math.log(b)


def ref_mean_pooling(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        real = [k for k in range(h.shape[1]) if m[i, k] == 1]
        out[i] = sum(h[i, k] for k in real) / len(real)
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
    "check_identical_embeddings_loss": ("Exercise 1.3", ref_identical),
    "check_mean_pooling": ("Exercise 2.1", ref_mean_pooling),
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
    "check_identical_embeddings_loss": (lambda b: [math.log(b)] * 2, "(2,)", "()"),
    # keepdim: (batch, 1, dim) instead of (batch, dim); first case is 3x5x4
    "check_mean_pooling": (lambda h, m: ref_mean_pooling(h, m).unsqueeze(1), "(3, 1, 4)", "(3, 4)"),
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
    (lambda b: math.log(b - 1), "the positive is in the denominator too"),
    (lambda b: math.log(2 * b - 1), "symmetric NT-Xent count"),
], ids=["log(B-1)", "log(2B-1)"])
def test_identical_embeddings_hints(fn, phrase):
    _assert_hint("check_identical_embeddings_loss", fn, phrase)


def test_identical_embeddings_zero_gets_uniform_softmax_hint():
    _assert_hint("check_identical_embeddings_loss", lambda b: 0.0, "the softmax is uniform, not one-hot")


def test_identical_embeddings_zero_is_rejected():
    with pytest.raises(AssertionError, match="you return 0.000000"):
        ex.check_identical_embeddings_loss(lambda b: 0.0)


def _pool_all_positions(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        out[i] = sum(h[i, k] for k in range(h.shape[1])) / h.shape[1]
    return out


def _pool_divide_by_padded_length(h, m):
    out = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for i in range(h.shape[0]):
        out[i] = sum(h[i, k] * float(m[i, k]) for k in range(h.shape[1])) / h.shape[1]
    return out


@pytest.mark.parametrize("fn,phrase", [
    (_pool_all_positions, "padding positions are averaged in"),
    (_pool_divide_by_padded_length, "divide by the number of real tokens"),
    (lambda h, m: h[:, 0].clone(), "this is CLS pooling"),
], ids=["unmasked-mean", "padded-length", "cls"])
def test_mean_pooling_hints(fn, phrase):
    _assert_hint("check_mean_pooling", fn, phrase)


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
    """A learner computing the mean pooling in float32 is still accepted (tol 1e-5)."""
    ex.check_mean_pooling(lambda h, m: ref_mean_pooling(h.float(), m))
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


def test_chapter04_references_pass(capsys):
    from collections import Counter

    ex.check_sup_logits(_ref_sup_logits)
    ex.check_count_false_negatives(lambda b: sum(c * (c - 1) for c in Counter(b).values()))
    ex.check_alpha_zero_loss(_ref_alpha_zero)
    out = capsys.readouterr().out
    assert "Exercise 4.1: correct" in out and "Exercise 4.2: correct" in out and "Exercise 4.3: correct" in out


@pytest.mark.parametrize("fn, phrase", [
    (lambda a, p, n, t, w: torch.cat([_cos(a, p) / t, _cos(a, n) / t + w], 1), "OWN hard negative"),
    (lambda a, p, n, t, w: _ref_sup_logits(a, p, n, 1.0, w), "temperature"),
    (lambda a, p, n, t, w: torch.cat([_cos(a, p) / t, _cos(a, n) / t + w * torch.eye(len(a), dtype=a.dtype)], 1),
     "NaN"),
])
def test_sup_logits_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 4.1") as err:
        ex.check_sup_logits(fn)
    assert phrase in str(err.value)


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
    ex.check_unsup_simcse_loss(_ref_unsup_loss)
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
    ex.check_unsup_simcse_loss(lambda a, b, t: torch.tensor(_ref_unsup_loss(a.float(), b.float(), t)))
    ex.check_identical_views_loss(lambda b, t: np.float32(_ref_identical_views(b, t)))
    assert "Exercise 3.1: correct" in capsys.readouterr().out


def _unsup_self_similarity(z1, z2, t):  # z1 @ z1.T: each view compared with itself
    return _ref_unsup_loss(z1, z1, t)


def _unsup_dot(z1, z2, t):
    rows = []
    for i in range(len(z1)):
        s = [float(torch.dot(z1[i], z2[j])) / t for j in range(len(z2))]
        rows.append(-s[i] + math.log(sum(math.exp(v) for v in s)))
    return sum(rows) / len(rows)


def _unsup_nt_xent(z1, z2, t):
    z = _unit_rows(torch.cat([z1, z2]))
    n, b = len(z), len(z1)
    rows = []
    for k in range(n):
        partner = (k + b) % n
        s = {j: float(torch.dot(z[k], z[j])) / t for j in range(n) if j != k}
        rows.append(-s[partner] + math.log(sum(math.exp(v) for v in s.values())))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("fn, phrase", [
    (_unsup_self_similarity, "SECOND view"),
    (_unsup_dot, "normalise the views first"),
    (lambda a, b, t: _ref_unsup_loss(a, b, 1.0), "divide the cosine similarities by the temperature"),
    (_unsup_nt_xent, "symmetric NT-Xent"),
], ids=["z1-z1", "dot-product", "no-temperature", "nt-xent"])
def test_unsup_loss_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 3.1") as err:
        ex.check_unsup_simcse_loss(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


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


CHAPTER03 = {"check_unsup_simcse_loss": "Exercise 3.1", "check_identical_views_loss": "Exercise 3.2",
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


def _ref_esimcse_logits(z1, z2, queue, t):
    """Loops: row i = [cos(z1_i, z2_j) / t for j] + [cos(z1_i, q_m) / t for m]."""
    a, b = _unit_rows(z1), _unit_rows(z2)
    q = _unit_rows(queue) if len(queue) else queue
    rows = [[float(torch.dot(a[i], b[j])) / t for j in range(len(b))] +
            [float(torch.dot(a[i], q[m])) / t for m in range(len(q))] for i in range(len(a))]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(a), len(b) + len(q))


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
    ex.check_esimcse_logits(_ref_esimcse_logits)
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


@pytest.mark.parametrize("fn, phrase", [
    (lambda a, p, q, t: torch.cat([_ref_esimcse_logits(a, q, torch.empty(0, a.shape[1]), t),
                                   _ref_esimcse_logits(a, p, torch.empty(0, a.shape[1]), t)], 1), "row i's target"),
    (lambda a, p, q, t: torch.cat([_cos(a, p), _unit_rows(p) @ _unit_rows(q).T], 1) / t, "ANCHORS"),
    (lambda a, p, q, t: torch.cat([_cos(a, p) / t, _unit_rows(a) @ _unit_rows(q).T], 1), "temperature too"),
    (lambda a, p, q, t: torch.cat([_cos(a, p), _unit_rows(a) @ q.T], 1) / t, "normalise the queue rows"),
], ids=["queue-first", "queue-vs-z2", "queue-no-temperature", "queue-unnormalised"])
def test_esimcse_logits_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 5.2") as err:
        ex.check_esimcse_logits(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


def test_esimcse_logits_without_the_queue_is_a_shape_error():
    with pytest.raises(AssertionError, match=r"Exercise 5.2: on B=4, M=6, tau=0.05 the result has shape \(4, 4\), "
                                             r"expected \(4, 10\)"):
        ex.check_esimcse_logits(lambda a, p, q, t: _cos(a, p) / t)


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


CHAPTER05 = {"check_repeat_tokens": "Exercise 5.1", "check_esimcse_logits": "Exercise 5.2",
             "check_ema_after": "Exercise 5.3", "check_steps_until": "Exercise 5.4"}


@pytest.mark.parametrize("check_name", list(CHAPTER05))
def test_chapter05_not_implemented_and_none(check_name):
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(CHAPTER05[check_name])
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


# ---- chapter 06 (independent references)
def _ref_replaced_labels(original, generated, mask):
    """DiffCSE's labels with explicit loops: 1 where the generator changed a real token, position 0 excluded."""
    n, seq = original.shape
    out = torch.zeros(n, seq, dtype=torch.long)
    for i in range(n):
        for t in range(1, seq):  # position 0 is reset to [CLS]: never replaced
            if mask[i, t] == 1 and int(generated[i, t]) != int(original[i, t]):
                out[i, t] = 1
    return out


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


def _ref_condition(embedding_output, h):
    out = embedding_output.clone()
    out[:, 0] = h  # index assignment on a copy keeps h in the graph
    return out


def test_chapter06_references_pass(capsys):
    ex.check_replaced_labels(_ref_replaced_labels)
    ex.check_rtd_loss(_ref_rtd_loss)
    ex.check_condition_first_position(_ref_condition)
    out = capsys.readouterr().out
    assert "Exercise 6.1: correct" in out and "Exercise 6.2: correct" in out and "Exercise 6.3: correct" in out


def test_chapter06_bool_and_float32_answers_accepted(capsys):
    ex.check_replaced_labels(lambda x, g, m: _ref_replaced_labels(x, g, m).bool())
    ex.check_rtd_loss(lambda lg, lb, m, pad: torch.tensor(_ref_rtd_loss(lg.float(), lb, m, pad)))
    assert "Exercise 6.1: correct" in capsys.readouterr().out


def test_rtd_batch_exercises_every_mistake():
    """The seeded inputs contain what the hints are about: rewritten [CLS], ids written at padding."""
    x, g, m = ex._rtd_batch(60, 4, 7)
    assert (g[:, 0] != x[:, 0]).any() and (g[:, 0] == x[:, 0]).any()
    assert ((g != x) & (m == 0)).any() and (m == 0).any()
    assert ((g != x) & (m == 1))[:, 1:].any()


def _labels_in_place(x, g, m):
    g[:, 0] = x[:, 0]  # writes into the caller's tensor
    return (g != x).long() * m


@pytest.mark.parametrize("fn, phrase", [
    (lambda x, g, m: (g != x).long() * m, "reset position 0"),
    (lambda x, g, m: _ref_replaced_labels(x, g, torch.ones_like(m)), "multiply by the attention mask"),
    (lambda x, g, m: (g != x).long(), "two things are missing"),
    (lambda x, g, m: (1 - _ref_replaced_labels(x, g, m)) * m, "label 1 means REPLACED"),
    (_labels_in_place, "changed its argument `generated` in place"),
], ids=["no-reset", "no-mask", "neither", "inverted", "in-place"])
def test_replaced_labels_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 6.1") as err:
        ex.check_replaced_labels(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


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


def _condition_added(e, h):
    out = e.clone()
    out[:, 0] += h
    return out


def _condition_in_place(e, h):
    e[:, 0] = h.detach()
    return e + 0 * h.sum()  # keeps a graph to h: only the in-place write is wrong


@pytest.mark.parametrize("fn, phrase", [
    (_condition_added, "do not add h"),
    (lambda e, h: torch.cat([e[:, :-1], h.unsqueeze(1)], dim=1), "not to the last position"),
    (lambda e, h: _ref_condition(e, h.detach()), "do not detach h"),
    (_condition_in_place, "changed its argument `embedding_output` in place"),
], ids=["added", "last-position", "detached", "in-place"])
def test_condition_first_position_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 6.3") as err:
        ex.check_condition_first_position(fn)
    assert phrase in str(err.value), str(err.value)


def test_condition_first_position_prepending_is_a_shape_error():
    with pytest.raises(AssertionError, match=r"has shape \(4, 7, 8\), expected \(4, 6, 8\)"):
        ex.check_condition_first_position(lambda e, h: torch.cat([h.unsqueeze(1), e], dim=1))


CHAPTER06 = {"check_replaced_labels": "Exercise 6.1", "check_rtd_loss": "Exercise 6.2",
             "check_condition_first_position": "Exercise 6.3"}


@pytest.mark.parametrize("check_name", list(CHAPTER06))
def test_chapter06_not_implemented_and_none(check_name):
    with pytest.raises(AssertionError, match="not implemented yet") as err:
        getattr(ex, check_name)(_raise_not_implemented)
    assert str(err.value).startswith(CHAPTER06[check_name])
    with pytest.raises(AssertionError, match="did you forget `return`"):
        getattr(ex, check_name)(_return_none)


# ---- chapter 07 (independent references)
def _ref_nt_xent(a, p, t):
    """Loops over the 2N rows: -log(e^{pos} / sum over the 2N - 1 other vectors)."""
    z = [v / v.norm() for v in torch.cat([a, p])]
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        partner = i + n if i < n else i - n
        logits = [float(z[i] @ z[j]) / t for j in range(2 * n) if j != i]
        pos = float(z[i] @ z[partner]) / t
        total += -(pos - math.log(sum(math.exp(x) for x in logits)))
    return total / (2 * n)


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


CHAPTER07 = {"check_nt_xent": ("Exercise 7.1", _ref_nt_xent), "check_positive_start_range":
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


def _simcse_direction(a, p, t):
    a, p = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(p, dim=-1)
    return torch.nn.functional.cross_entropy(a @ p.T / t, torch.arange(len(a)))


def _nt_xent_with_self(a, p, t):
    z = torch.nn.functional.normalize(torch.cat([a, p]), dim=-1)
    n = len(a)
    return torch.nn.functional.cross_entropy(z @ z.T / t, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


@pytest.mark.parametrize("fn, phrase", [
    (_simcse_direction, "one-directional"),
    (_nt_xent_with_self, "similarity with itself"),
    (lambda a, p, t: _ref_nt_xent(a * torch.arange(1, a.shape[1] + 1), p, t), None),  # unknown mistake
])
def test_nt_xent_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 7.1") as err:
        ex.check_nt_xent(fn)
    assert (phrase in str(err.value)) if phrase else ("Hint" not in str(err.value))


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
def _sup_logits_dot(a, p, n, t, w):
    """Eq. 8 on raw dot products, with loops: the rows are not normalised."""
    b = len(a)
    out = torch.zeros(b, 2 * b, dtype=torch.float64)
    for i in range(b):
        for j in range(b):
            out[i, j] = float(torch.dot(a[i], p[j])) / t
            out[i, b + j] = float(torch.dot(a[i], n[j])) / t + (w if i == j else 0.0)
    return out


def test_sup_logits_unnormalised_gets_the_cosine_hint():
    with pytest.raises(AssertionError, match="Exercise 4.1") as err:
        ex.check_sup_logits(_sup_logits_dot)
    assert "Hint:" in str(err.value) and "normalise z1, z2, z3 first" in str(err.value), str(err.value)


def test_count_false_negatives_rows_instead_of_pairs():
    with pytest.raises(AssertionError, match="Exercise 4.2") as err:
        ex.check_count_false_negatives(lambda b: len([x for x in b if b.count(x) > 1]))
    assert "Hint:" in str(err.value) and "counts rows with a repeated premise" in str(err.value), str(err.value)


def _nt_xent_dot(a, p, t):
    z = list(torch.cat([a, p]))  # not normalised
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        partner = i + n if i < n else i - n
        logits = [float(z[i] @ z[j]) / t for j in range(2 * n) if j != i]
        total += math.log(sum(math.exp(x) for x in logits)) - float(z[i] @ z[partner]) / t
    return total / (2 * n)


@pytest.mark.parametrize("fn, phrase", [
    (_nt_xent_dot, "use cosine similarity"),
    (lambda a, p, t: _ref_nt_xent(a, p, 1.0), "divide the cosines by the temperature"),
], ids=["dot-product", "no-temperature"])
def test_nt_xent_more_wrong_variants(fn, phrase):
    with pytest.raises(AssertionError, match="Exercise 7.1") as err:
        ex.check_nt_xent(fn)
    assert "Hint:" in str(err.value) and phrase in str(err.value), str(err.value)


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
