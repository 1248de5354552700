"""Tests for cselab.losses against independent references.

Every expected value comes from a naive per-row Python loop over float64 numpy arrays
(np.dot of normalised vectors / tau), from scipy, or from a closed form -- never from the
code under test. Background: reference/methods.md §2.1 (SimCSE unsup), §3.1 (sup, Eq. 8),
§7.2 (NT-Xent), §14.1 and §14.3.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from cselab.losses import (alignment, cosine_matrix, decoupled_loss, info_nce, nt_xent_logits, in_batch_logits,
                           uniformity)


# ---------------------------------------------------------------------------- helpers
def _randn(seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _triple(seed: int, batch: int, dim: int = 8):
    return _randn(seed, batch, dim), _randn(seed + 100, batch, dim), _randn(seed + 200, batch, dim)


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def naive_simcse(anchors, positives, tau, negatives=None, alpha=1.0, decoupled=False) -> np.ndarray:
    """Per-row loss of SimCSE (paper Eq. 1 / Eq. 8), optionally decoupled (positive out of the denominator)."""
    a, p = _unit(anchors), _unit(positives)
    n = None if negatives is None else _unit(negatives)
    batch = len(a)
    out = []
    for i in range(batch):
        s_pos = [float(np.dot(a[i], p[j])) / tau for j in range(batch)]
        s_neg = [] if n is None else [float(np.dot(a[i], n[j])) / tau for j in range(batch)]
        denom = 0.0
        for j in range(batch):
            if not (decoupled and j == i):
                denom += math.exp(s_pos[j])
            if n is not None:
                denom += (alpha if i == j else 1.0) * math.exp(s_neg[j])
        if decoupled:
            out.append(-s_pos[i] + math.log(denom))
        else:
            out.append(-math.log(math.exp(s_pos[i]) / denom))
    return np.array(out)


def naive_ntxent(anchors, positives, tau, decoupled=False) -> np.ndarray:
    """Per-row symmetric NT-Xent over the 2B vectors [anchors; positives]; row k's partner is (k + B) mod 2B."""
    z = np.concatenate([_unit(anchors), _unit(positives)])
    m = len(z)
    batch = m // 2
    out = []
    for k in range(m):
        partner = (k + batch) % m
        s = [float(np.dot(z[k], z[j])) / tau for j in range(m)]
        denom = 0.0
        for j in range(m):
            if j == k or (decoupled and j == partner):
                continue
            denom += math.exp(s[j])
        out.append(-s[partner] + math.log(denom))
    return np.array(out)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# ---------------------------------------------------------------------------- cosine_matrix
def test_cosine_matrix_matches_naive_loop():
    a, b = _randn(0, 5, 7), _randn(1, 3, 7)
    got = _np(cosine_matrix(a, b))
    an, bn = _np(a), _np(b)
    want = np.array([[np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for y in bn] for x in an])
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, want, atol=1e-12)


# ---------------------------------------------------------------------------- default SimCSE
@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("tau", [0.01, 0.05, 0.5, 1.0])
def test_default_matches_naive_loop(batch, tau):
    a, p, _ = _triple(batch * 7, batch)
    got = info_nce(a, p, temperature=tau)
    want = naive_simcse(_np(a), _np(p), tau).mean()
    assert got.dim() == 0
    assert got.item() == pytest.approx(want, abs=1e-6, rel=1e-9)


def test_default_temperature_is_005():
    a, p, _ = _triple(3, 6)
    assert info_nce(a, p).item() == pytest.approx(naive_simcse(_np(a), _np(p), 0.05).mean(), abs=1e-6)


def test_default_float32_close_to_float64_reference():
    a, p, _ = _triple(4, 8)
    got = info_nce(a.float(), p.float(), temperature=0.05)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(naive_simcse(_np(a), _np(p), 0.05).mean(), abs=1e-4)


def test_default_is_one_directional():
    """SimCSE scores anchors against positives only (§14.1): swapping the views changes the loss."""
    a, p, _ = _triple(5, 6)
    ab, ba = info_nce(a, p, temperature=0.1).item(), info_nce(p, a, temperature=0.1).item()
    assert ab == pytest.approx(naive_simcse(_np(a), _np(p), 0.1).mean(), abs=1e-6)
    assert ba == pytest.approx(naive_simcse(_np(p), _np(a), 0.1).mean(), abs=1e-6)
    assert abs(ab - ba) > 1e-4


# ---------------------------------------------------------------------------- hard negatives (Eq. 8)
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("tau", [0.05, 0.2])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_hard_negatives_match_eq8(batch, tau, alpha):
    a, p, n = _triple(batch * 11 + 1, batch)
    got = info_nce(a, p, temperature=tau, negatives=n, hard_negative_weight=math.log(alpha))
    want = naive_simcse(_np(a), _np(p), tau, negatives=_np(n), alpha=alpha).mean()
    assert got.item() == pytest.approx(want, abs=1e-6, rel=1e-9)


def test_hard_negative_weight_log2_equals_alpha2():
    a, p, n = _triple(21, 6)
    got = info_nce(a, p, temperature=0.05, negatives=n, hard_negative_weight=math.log(2)).item()
    want_alpha2 = naive_simcse(_np(a), _np(p), 0.05, negatives=_np(n), alpha=2.0).mean()
    want_alpha1 = naive_simcse(_np(a), _np(p), 0.05, negatives=_np(n), alpha=1.0).mean()
    assert got == pytest.approx(want_alpha2, abs=1e-6)
    assert abs(got - want_alpha1) > 1e-4  # the weight does something


def test_hard_negatives_denominator_holds_all_b_negatives():
    """Other rows' hard negatives are in every row's denominator (§3.1), not just the row's own."""
    a, p, n = _triple(22, 5)
    got = info_nce(a, p, temperature=0.05, negatives=n, reduction="none")
    an, pn, nn = _unit(_np(a)), _unit(_np(p)), _unit(_np(n))
    own_only = []
    for i in range(5):
        s = [np.dot(an[i], pn[j]) / 0.05 for j in range(5)]
        den = sum(math.exp(x) for x in s) + math.exp(np.dot(an[i], nn[i]) / 0.05)
        own_only.append(-s[i] + math.log(den))
    all_b = naive_simcse(_np(a), _np(p), 0.05, negatives=_np(n))
    np.testing.assert_allclose(_np(got), all_b, atol=1e-6)
    assert np.abs(_np(got) - np.array(own_only)).max() > 1e-3


def test_hard_negative_weight_only_touches_own_negative():
    """With a large alpha, Eq. 8 (weight on s[i, B+i] only) differs clearly from weighting every hard
    negative of the row; the loss must follow Eq. 8 row by row."""
    a, p, n = _triple(23, 4)
    alpha = 50.0
    got = _np(info_nce(a, p, temperature=0.1, negatives=n, hard_negative_weight=math.log(alpha), reduction="none"))
    np.testing.assert_allclose(got, naive_simcse(_np(a), _np(p), 0.1, negatives=_np(n), alpha=alpha), atol=1e-6)
    an, pn, nn = _unit(_np(a)), _unit(_np(p)), _unit(_np(n))
    all_weighted = []
    for i in range(4):
        s = [np.dot(an[i], pn[j]) / 0.1 for j in range(4)]
        den = sum(math.exp(x) for x in s) + sum(alpha * math.exp(np.dot(an[i], nn[j]) / 0.1) for j in range(4))
        all_weighted.append(-s[i] + math.log(den))
    assert np.abs(got - np.array(all_weighted)).max() > 1e-2


def test_hard_negative_weight_minus_inf_is_alpha_zero():
    """alpha = 0 (log alpha = -inf) drops each row's own hard negative from Eq. 8's denominator.
    The official cl_forward adds the weight to one element, so it stays finite there."""
    a, p, n = _triple(24, 4)
    got = info_nce(a, p, temperature=0.05, negatives=n, hard_negative_weight=float("-inf"))
    want = naive_simcse(_np(a), _np(p), 0.05, negatives=_np(n), alpha=0.0).mean()
    assert got.item() == pytest.approx(want, abs=1e-6)


# ---------------------------------------------------------------------------- symmetric NT-Xent
@pytest.mark.parametrize("batch", [1, 2, 5, 12])
@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0])
def test_symmetric_matches_naive_loop(batch, tau):
    a, p, _ = _triple(batch * 13 + 2, batch)
    got = info_nce(a, p, temperature=tau, symmetric=True, reduction="none")
    want = naive_ntxent(_np(a), _np(p), tau)
    assert tuple(got.shape) == (2 * batch,)
    np.testing.assert_allclose(_np(got), want, atol=1e-6, rtol=1e-9)
    mean = info_nce(a, p, temperature=tau, symmetric=True)
    assert mean.item() == pytest.approx(want.mean(), abs=1e-6)


def test_symmetric_is_symmetric_in_views():
    a, p, _ = _triple(25, 6)
    assert info_nce(a, p, symmetric=True).item() == pytest.approx(info_nce(p, a, symmetric=True).item(), abs=1e-9)


# ---------------------------------------------------------------------------- decoupled (DCL)
@pytest.mark.parametrize("batch", [2, 3, 9])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_decoupled_matches_naive_loop(batch, tau):
    a, p, _ = _triple(batch * 17 + 3, batch)
    got = info_nce(a, p, temperature=tau, decoupled=True, reduction="none")
    want = naive_simcse(_np(a), _np(p), tau, decoupled=True)
    assert tuple(got.shape) == (batch,)
    np.testing.assert_allclose(_np(got), want, atol=1e-6, rtol=1e-9)


@pytest.mark.parametrize("batch", [2, 3, 9])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_decoupled_symmetric_matches_naive_loop(batch, tau):
    a, p, _ = _triple(batch * 19 + 4, batch)
    got = info_nce(a, p, temperature=tau, decoupled=True, symmetric=True, reduction="none")
    want = naive_ntxent(_np(a), _np(p), tau, decoupled=True)
    assert tuple(got.shape) == (2 * batch,)
    np.testing.assert_allclose(_np(got), want, atol=1e-6, rtol=1e-9)


@pytest.mark.parametrize("batch", [1, 2, 6])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_decoupled_with_hard_negatives_matches_naive_loop(batch, alpha):
    a, p, n = _triple(batch * 23 + 5, batch)
    got = info_nce(a, p, temperature=0.05, negatives=n, hard_negative_weight=math.log(alpha),
                   decoupled=True, reduction="none")
    want = naive_simcse(_np(a), _np(p), 0.05, negatives=_np(n), alpha=alpha, decoupled=True)
    np.testing.assert_allclose(_np(got), want, atol=1e-6, rtol=1e-9)


def test_decoupled_can_be_negative():
    """Not a cross-entropy: with well-separated pairs the DCL loss is below 0."""
    eye = torch.eye(4, dtype=torch.float64)
    got = info_nce(eye, eye.clone(), temperature=0.1, decoupled=True).item()
    assert got == pytest.approx(-10.0 + math.log(3.0), abs=1e-9)
    assert got < 0


def test_decoupled_relation_to_standard():
    """loss_std_i = loss_dcl_i + log(1 + exp(s_ii - logsumexp_{j!=i} s_ij)) = softplus(-loss_dcl_i)+loss_dcl_i."""
    a, p, _ = _triple(26, 7)
    dcl = _np(info_nce(a, p, temperature=0.2, decoupled=True, reduction="none"))
    std = _np(info_nce(a, p, temperature=0.2, reduction="none"))
    np.testing.assert_allclose(std, dcl + np.log1p(np.exp(-dcl)), atol=1e-9)


# ---------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("batch", [1, 2, 7, 64])
@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_identical_embeddings_closed_forms(batch, tau):
    v = _randn(27, 1, 16)
    x = v.expand(batch, 16).clone()
    assert info_nce(x, x.clone(), temperature=tau).item() == pytest.approx(math.log(batch), abs=1e-9)
    assert info_nce(x, x.clone(), temperature=tau, symmetric=True).item() == pytest.approx(
        math.log(2 * batch - 1), abs=1e-9)
    assert info_nce(x, x.clone(), temperature=tau, negatives=x.clone()).item() == pytest.approx(
        math.log(2 * batch), abs=1e-9)
    assert info_nce(x, x.clone(), temperature=tau, negatives=x.clone(), hard_negative_weight=math.log(3.0)).item() \
        == pytest.approx(math.log(2 * batch + 2), abs=1e-9)
    if batch >= 2:
        assert info_nce(x, x.clone(), temperature=tau, decoupled=True).item() == pytest.approx(
            math.log(batch - 1), abs=1e-9)
        assert info_nce(x, x.clone(), temperature=tau, decoupled=True, symmetric=True).item() == pytest.approx(
            math.log(2 * batch - 2), abs=1e-9)
    assert info_nce(x, x.clone(), temperature=tau, decoupled=True, negatives=x.clone()).item() == pytest.approx(
        math.log(2 * batch - 1), abs=1e-9)


@pytest.mark.parametrize("batch", [1, 2, 5, 32])
@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_orthonormal_closed_form(batch, tau):
    eye = torch.eye(batch, 2 * batch, dtype=torch.float64)  # one-hot rows, padded dims
    got = info_nce(eye, eye.clone(), temperature=tau, reduction="none")
    want = -1.0 / tau + math.log(math.exp(1.0 / tau) + batch - 1)
    np.testing.assert_allclose(_np(got), np.full(batch, want), atol=1e-9)
    assert info_nce(eye, eye.clone(), temperature=tau).item() == pytest.approx(want, abs=1e-9)


# ---------------------------------------------------------------------------- reduction
def test_reduction_none_shapes_and_mean():
    a, p, n = _triple(28, 6)
    assert tuple(info_nce(a, p, reduction="none").shape) == (6,)
    assert tuple(info_nce(a, p, negatives=n, reduction="none").shape) == (6,)
    assert tuple(info_nce(a, p, symmetric=True, reduction="none").shape) == (12,)
    assert tuple(info_nce(a, p, decoupled=True, reduction="none").shape) == (6,)
    assert tuple(info_nce(a, p, decoupled=True, symmetric=True, reduction="none").shape) == (12,)
    for kwargs in ({}, {"negatives": n}, {"symmetric": True}, {"decoupled": True}):
        rows = info_nce(a, p, reduction="none", **kwargs)
        assert info_nce(a, p, **kwargs).item() == pytest.approx(rows.mean().item(), abs=1e-12)
        assert info_nce(a, p, reduction="mean", **kwargs).dim() == 0


# ---------------------------------------------------------------------------- scale invariance
@pytest.mark.parametrize("kwargs", [{}, {"symmetric": True}, {"decoupled": True},
                                    {"decoupled": True, "symmetric": True}, {"neg": True},
                                    {"neg": True, "hard_negative_weight": 0.7}])
def test_scale_invariance(kwargs):
    kwargs = dict(kwargs)
    a, p, n = _triple(29, 5)
    use_neg = kwargs.pop("neg", False)
    extra = {"negatives": n} if use_neg else {}
    base = info_nce(a, p, temperature=0.05, **extra, **kwargs).item()
    extra_scaled = {"negatives": 0.01 * n} if use_neg else {}
    assert info_nce(3.0 * a, 0.25 * p, temperature=0.05, **extra_scaled, **kwargs).item() == pytest.approx(base, abs=1e-9)
    # per-row positive factors too: only directions matter
    ra, rp = torch.linspace(0.1, 10.0, 5, dtype=torch.float64)[:, None], torch.linspace(7.0, 0.2, 5, dtype=torch.float64)[:, None]
    extra_rows = {"negatives": n * rp.flip(0)} if use_neg else {}
    assert info_nce(a * ra, p * rp, temperature=0.05, **extra_rows, **kwargs).item() == pytest.approx(base, abs=1e-9)


def test_temperature_matters():
    a, p, _ = _triple(30, 5)
    assert abs(info_nce(a, p, temperature=0.05).item() - info_nce(a, p, temperature=1.0).item()) > 1e-3


# ---------------------------------------------------------------------------- gradients
def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.clone().requires_grad_(True)


@pytest.mark.parametrize("name,fn,needs_neg", [
    ("default", lambda a, p: info_nce(a, p, temperature=0.2), False),
    ("hard negatives + weight", lambda a, p, n: info_nce(a, p, temperature=0.2, negatives=n,
                                                         hard_negative_weight=math.log(2.0)), True),
    ("symmetric", lambda a, p: info_nce(a, p, temperature=0.2, symmetric=True), False),
    ("decoupled", lambda a, p: info_nce(a, p, temperature=0.2, decoupled=True), False),
    ("decoupled symmetric", lambda a, p: info_nce(a, p, temperature=0.2, decoupled=True, symmetric=True), False),
    ("decoupled + negatives", lambda a, p, n: info_nce(a, p, temperature=0.2, negatives=n, decoupled=True,
                                                       hard_negative_weight=0.3), True),
    ("reduction none", lambda a, p: info_nce(a, p, temperature=0.2, reduction="none"), False),
])
def test_gradcheck(name, fn, needs_neg):
    a, p, n = _triple(31, 3, 4)
    inputs = (_leaf(a), _leaf(p), _leaf(n)) if needs_neg else (_leaf(a), _leaf(p))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True), name


def _naive_torch_loss(a, p, tau, n=None, alpha=1.0, symmetric=False, decoupled=False):
    """Float64 torch loss built from scalar ops in Python loops (autograd-able), independent of info_nce."""
    def unit(v):
        return v / torch.sqrt((v * v).sum())

    if symmetric:
        z = [unit(v) for v in a] + [unit(v) for v in p]
        m, b = len(z), len(a)
        rows = []
        for k in range(m):
            partner = (k + b) % m
            terms = [torch.exp((z[k] * z[j]).sum() / tau) for j in range(m)
                     if j != k and not (decoupled and j == partner)]
            rows.append(-(z[k] * z[partner]).sum() / tau + torch.log(sum(terms)))
        return sum(rows) / m
    au, pu = [unit(v) for v in a], [unit(v) for v in p]
    nu = None if n is None else [unit(v) for v in n]
    b = len(au)
    rows = []
    for i in range(b):
        terms = [torch.exp((au[i] * pu[j]).sum() / tau) for j in range(b) if not (decoupled and j == i)]
        if nu is not None:
            terms += [(alpha if i == j else 1.0) * torch.exp((au[i] * nu[j]).sum() / tau) for j in range(b)]
        rows.append(-(au[i] * pu[i]).sum() / tau + torch.log(sum(terms)))
    return sum(rows) / b


@pytest.mark.parametrize("kwargs", [{}, {"neg": True, "alpha": 2.0}, {"symmetric": True}, {"decoupled": True},
                                    {"decoupled": True, "symmetric": True}, {"decoupled": True, "neg": True, "alpha": 0.5}])
def test_gradients_match_naive_torch(kwargs):
    kwargs = dict(kwargs)
    use_neg, alpha = kwargs.pop("neg", False), kwargs.pop("alpha", 1.0)
    a0, p0, n0 = _triple(32, 5, 6)
    tau = 0.1

    a, p, n = _leaf(a0), _leaf(p0), _leaf(n0)
    extra = {"negatives": n, "hard_negative_weight": math.log(alpha)} if use_neg else {}
    loss = info_nce(a, p, temperature=tau, **extra, **kwargs)
    loss.backward()

    ra, rp, rn = _leaf(a0), _leaf(p0), _leaf(n0)
    ref = _naive_torch_loss(ra, rp, tau, n=rn if use_neg else None, alpha=alpha, **kwargs)
    ref.backward()

    assert loss.item() == pytest.approx(ref.item(), abs=1e-9)
    np.testing.assert_allclose(_np(a.grad), _np(ra.grad), atol=1e-9)
    np.testing.assert_allclose(_np(p.grad), _np(rp.grad), atol=1e-9)
    if use_neg:
        np.testing.assert_allclose(_np(n.grad), _np(rn.grad), atol=1e-9)


# ---------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("tau", [0.0, -0.05, float("nan")])
def test_bad_temperature(tau):
    a, p, _ = _triple(33, 3)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, p, temperature=tau)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as err:
        info_nce(_randn(0, 4, 8), _randn(1, 5, 8))
    assert "(4, 8)" in str(err.value) and "(5, 8)" in str(err.value)
    with pytest.raises(ValueError) as err:
        info_nce(_randn(0, 4, 8), _randn(1, 4, 6))
    assert "(4, 8)" in str(err.value) and "(4, 6)" in str(err.value)


def test_one_dimensional_input():
    with pytest.raises(ValueError, match="2-D") as err:
        info_nce(_randn(0, 8), _randn(1, 8))
    assert "(8,)" in str(err.value)
    with pytest.raises(ValueError, match=r"\(8,\)"):
        info_nce(_randn(0, 1, 8), _randn(1, 8))


def test_three_dimensional_input():
    with pytest.raises(ValueError, match="2-D"):
        info_nce(_randn(0, 2, 3, 4), _randn(1, 2, 3, 4))


def test_negatives_wrong_shape():
    a, p, _ = _triple(34, 4)
    with pytest.raises(ValueError, match="negatives") as err:
        info_nce(a, p, negatives=_randn(2, 3, 8))
    assert "(3, 8)" in str(err.value)


def test_hard_negative_weight_without_negatives():
    a, p, _ = _triple(35, 4)
    with pytest.raises(ValueError, match="hard_negative_weight"):
        info_nce(a, p, hard_negative_weight=0.5)


def test_symmetric_with_negatives():
    a, p, n = _triple(36, 4)
    with pytest.raises(ValueError, match="symmetric"):
        info_nce(a, p, negatives=n, symmetric=True)


@pytest.mark.parametrize("reduction", ["sum", "MEAN", None])
def test_unknown_reduction(reduction):
    a, p, _ = _triple(37, 4)
    with pytest.raises(ValueError, match="reduction"):
        info_nce(a, p, reduction=reduction)


@pytest.mark.parametrize("symmetric", [False, True])
def test_decoupled_batch_one(symmetric):
    a, p, _ = _triple(38, 1)
    with pytest.raises(ValueError, match="decoupled"):
        info_nce(a, p, decoupled=True, symmetric=symmetric)


def test_uniformity_needs_two_points():
    with pytest.raises(ValueError, match="n >= 2"):
        uniformity(_randn(0, 1, 4))
    with pytest.raises(ValueError, match="n >= 2"):
        uniformity(_randn(0, 4))


def test_alignment_shape_mismatch():
    with pytest.raises(ValueError) as err:
        alignment(_randn(0, 3, 4), _randn(1, 2, 4))
    assert "(3, 4)" in str(err.value) and "(2, 4)" in str(err.value)


# ---------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("alpha", [1, 2, 3, 0.5])
def test_alignment_matches_numpy(alpha):
    x, y = _randn(40, 10, 6), _randn(41, 10, 6)
    xn, yn = _unit(_np(x)), _unit(_np(y))
    want = np.mean([np.linalg.norm(xn[i] - yn[i]) ** alpha for i in range(10)])
    assert alignment(x, y, alpha=alpha).item() == pytest.approx(want, abs=1e-9)


def test_alignment_default_alpha2_closed_form():
    x, y = _randn(42, 12, 5), _randn(43, 12, 5)
    xn, yn = _unit(_np(x)), _unit(_np(y))
    cos = np.array([np.dot(xn[i], yn[i]) for i in range(12)])
    assert alignment(x, y).item() == pytest.approx(np.mean(2 - 2 * cos), abs=1e-9)


def test_alignment_identical_and_antipodal():
    x = _randn(44, 6, 3)
    assert alignment(x, 5.0 * x).item() == pytest.approx(0.0, abs=1e-12)
    assert alignment(x, -x).item() == pytest.approx(4.0, abs=1e-9)  # ||2u||^2


def test_alignment_unnormalised():
    x, y = _randn(45, 7, 4), _randn(46, 7, 4)
    xn, yn = _np(x), _np(y)
    want = np.mean([np.linalg.norm(xn[i] - yn[i]) ** 2 for i in range(7)])
    assert alignment(x, y, normalize=False).item() == pytest.approx(want, abs=1e-9)
    assert abs(alignment(x, y, normalize=False).item() - alignment(x, y).item()) > 1e-3


# ---------------------------------------------------------------------------- uniformity
@pytest.mark.parametrize("n,d,t", [(2, 2, 2.0), (5, 3, 2.0), (20, 8, 1.0), (9, 4, 4.0)])
def test_uniformity_matches_numpy(n, d, t):
    x = _randn(n * 3 + d, n, d)
    sq = pdist(_unit(_np(x)), "sqeuclidean")  # distinct pairs i < j
    assert len(sq) == n * (n - 1) // 2
    want = math.log(np.mean(np.exp(-t * sq)))
    assert uniformity(x, t=t).item() == pytest.approx(want, abs=1e-9)


def test_uniformity_default_t_is_2():
    x = _randn(47, 8, 5)
    want = math.log(np.mean(np.exp(-2.0 * pdist(_unit(_np(x)), "sqeuclidean"))))
    assert uniformity(x).item() == pytest.approx(want, abs=1e-9)


def test_uniformity_identical_points_is_zero():
    x = _randn(48, 1, 6).expand(5, 6).clone()
    assert uniformity(x).item() == pytest.approx(0.0, abs=1e-12)
    assert uniformity(x * torch.arange(1, 6, dtype=torch.float64)[:, None]).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("t", [1.0, 2.0, 3.5])
def test_uniformity_antipodal_pair(t):
    u = _randn(49, 1, 4)
    x = torch.cat([u, -3.0 * u])
    assert uniformity(x, t=t).item() == pytest.approx(-4.0 * t, abs=1e-9)


def test_uniformity_unnormalised():
    x = _randn(50, 6, 3) * 2.0
    want = math.log(np.mean(np.exp(-2.0 * pdist(_np(x), "sqeuclidean"))))
    assert uniformity(x, normalize=False).item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert abs(uniformity(x, normalize=False).item() - uniformity(x).item()) > 1e-3


def test_uniformity_at_most_zero_on_sphere():
    for seed in range(5):
        assert uniformity(_randn(seed, 10, 3)).item() <= 1e-12


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_hard_negative_weight_must_be_finite_or_minus_inf(weight):
    x = torch.randn(4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="hard_negative_weight"):
        info_nce(x, x + 0.1, negatives=-x, hard_negative_weight=weight)


# ----------------------------------------------------------------------------- queue (ESimCSE)
def _naive_queue_loss(a, p, q, tau, n=None):
    """Row by row with math.exp: -log e^{s_ii} / (sum_j e^{s_ij} [+ sum_j e^{cos(a_i,n_j)}] + sum_m e^{cos(a_i,q_m)})."""
    import math as _m

    def cos(x, y):
        return float(x @ y / (x.norm() * y.norm()))

    total = 0.0
    for i in range(len(a)):
        terms = [cos(a[i], p[j]) / tau for j in range(len(p))]
        if n is not None:
            terms += [cos(a[i], n[j]) / tau for j in range(len(n))]
        terms += [cos(a[i], q[m]) / tau for m in range(len(q))]
        total += -terms[i] + _m.log(sum(_m.exp(t) for t in terms))
    return total / len(a)


@pytest.mark.parametrize("m", [1, 5, 12])
def test_queue_negatives_match_a_naive_loop(m):
    g = torch.Generator().manual_seed(m)
    a, p = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    q = torch.randn(m, 6, generator=g, dtype=torch.float64)
    got = info_nce(a, p, temperature=0.1, queue=q)
    assert got.item() == pytest.approx(_naive_queue_loss(a, p, q, 0.1), rel=1e-12)
    n = torch.randn(4, 6, generator=g, dtype=torch.float64)
    got = info_nce(a, p, temperature=0.1, negatives=n, queue=q)
    assert got.item() == pytest.approx(_naive_queue_loss(a, p, q, 0.1, n), rel=1e-12)


def test_empty_queue_is_plain_in_batch_info_nce():
    g = torch.Generator().manual_seed(0)
    a, p = torch.randn(2, 5, 8, generator=g)
    plain = info_nce(a, p)
    assert torch.equal(info_nce(a, p, queue=torch.empty(0, 8)), plain)
    assert torch.equal(info_nce(a, p, queue=None), plain)


def test_queue_identical_to_anchors_closed_form():
    # anchors = positives, orthogonal rows, and a queue holding copies of the anchors:
    # row i has 1/tau for its positive and for its own queue copy, 0 elsewhere:
    # loss = log(2 e^{1/tau} + (B - 1) + (M - 1)) - 1/tau  with M = B copies
    b, tau = 4, 0.5
    a = torch.eye(b, dtype=torch.float64)
    got = info_nce(a, a, temperature=tau, queue=a.clone())
    want = math.log(2 * math.exp(1 / tau) + 2 * (b - 1)) - 1 / tau
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_queue_receives_no_gradient_when_detached_and_anchors_do():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 6, generator=g, requires_grad=True)
    p = torch.randn(4, 6, generator=g)
    source = torch.randn(7, 6, generator=g, requires_grad=True)
    info_nce(a, p, queue=source.detach()).backward()
    assert a.grad is not None and a.grad.abs().max() > 0
    assert source.grad is None


def test_queue_shape_errors():
    a = torch.randn(4, 6)
    with pytest.raises(ValueError, match="queue must be"):
        info_nce(a, a, queue=torch.randn(3, 5))
    with pytest.raises(ValueError, match="queue"):
        info_nce(a, a, queue=torch.randn(3, 6), symmetric=True)


# ----------------------------------------------------------------------------- replaced-token detection (DiffCSE)
def _naive_rtd(logits, replaced, mask, include_padding):
    import math as _m

    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if not include_padding and mask[i, t] == 0:
                continue
            a, b = float(logits[i, t, 0]), float(logits[i, t, 1])
            target = float(logits[i, t, int(replaced[i, t])])
            total += _m.log(_m.exp(a) + _m.exp(b)) - target
            count += 1
    return total / count


@pytest.mark.parametrize("include_padding", [True, False])
def test_rtd_loss_matches_a_naive_loop(include_padding):
    from cselab.losses import replaced_token_detection_loss

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    replaced = (torch.rand(3, 5, generator=g) < 0.4).long() * mask
    got = replaced_token_detection_loss(logits, replaced, mask, include_padding=include_padding)
    assert got.item() == pytest.approx(_naive_rtd(logits, replaced, mask, include_padding), rel=1e-12)


def test_rtd_padding_changes_the_mean_exactly_as_counted():
    from cselab.losses import replaced_token_detection_loss

    # every real position costs log 2 (zero logits); padding positions are confidently "not replaced"
    logits = torch.zeros(2, 4, 2, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    logits[1, 2:, 0] = 50.0  # padding: label 0, cost ~ 0
    replaced = torch.zeros(2, 4, dtype=torch.long)
    with_pad = replaced_token_detection_loss(logits, replaced, mask, include_padding=True)
    without = replaced_token_detection_loss(logits, replaced, mask, include_padding=False)
    assert without.item() == pytest.approx(math.log(2), rel=1e-12)
    assert with_pad.item() == pytest.approx(6 * math.log(2) / 8, rel=1e-9)  # 6 real positions of 8


def test_rtd_shape_errors():
    from cselab.losses import replaced_token_detection_loss

    with pytest.raises(ValueError, match=r"\(n, seq, 2\)"):
        replaced_token_detection_loss(torch.zeros(2, 3, 3), torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        replaced_token_detection_loss(torch.zeros(2, 3, 2), torch.zeros(2, 3), torch.ones(2, 4))


# ---------------------------------------------------------------------------- NGCSE hierarchical triplet loss
def _naive_ht(anchor, levels, margins) -> float:
    """reference §8.3, transcribed with loops over float64 numpy: s_k = cos(anchor, level_k),
    L = 1/(K-2) sum_{k=1}^{K-2} mean_i ReLU(s_{k+1} - s_k + m_{k-1}), last margin reused."""
    a = np.asarray(anchor, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    n, k_minus_1 = lv.shape[0], lv.shape[1]
    total = 0.0
    for k in range(1, k_minus_1):  # k = 1 .. K-2 (1-based level index of the upper level)
        m = margins[k - 1] if k - 1 < len(margins) else margins[-1]
        row_sum = 0.0
        for i in range(n):
            s_k = np.dot(a[i], lv[i, k - 1]) / (np.linalg.norm(a[i]) * np.linalg.norm(lv[i, k - 1]))
            s_next = np.dot(a[i], lv[i, k]) / (np.linalg.norm(a[i]) * np.linalg.norm(lv[i, k]))
            row_sum += max(0.0, s_next - s_k + m)
        total += row_sum / n
    return total / (k_minus_1 - 1)


@pytest.mark.parametrize("n,levels_count,margins", [
    (1, 2, (5e-3,)), (6, 2, (5e-3, 5e-2)), (6, 3, (5e-3, 5e-2)), (5, 4, (5e-3, 5e-2)),
    (7, 5, (0.3,)), (4, 3, (0.0, 0.0)), (3, 4, (0.2, 0.1, 0.05, 0.9)),
])
def test_ht_matches_naive_loop(n, levels_count, margins):
    from cselab.losses import hierarchical_triplet_loss

    anchor = _randn(n * 10 + levels_count, n, 6)
    levels = _randn(n * 10 + levels_count + 1, n, levels_count, 6)
    got = hierarchical_triplet_loss(anchor, levels, margins)
    assert got.dim() == 0 and got.dtype == torch.float64
    assert got.item() == pytest.approx(_naive_ht(_np(anchor), _np(levels), margins), rel=1e-9, abs=1e-12)
    # float32 inputs agree with the float64 reference to 1e-6
    got32 = hierarchical_triplet_loss(anchor.float(), levels.float(), margins)
    assert got32.item() == pytest.approx(_naive_ht(_np(anchor), _np(levels), margins), abs=1e-6)


def test_ht_hand_computed_small_case():
    from cselab.losses import hierarchical_triplet_loss

    # row 0: anchor e1; levels with cosines 0.6, 0.8, 0.0 (the positive is *less* similar than the middle one)
    # row 1: anchor (0, 2); levels with cosines 1.0, 0.8, 0.0 (the hierarchy holds by 0.2 and 0.8)
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    levels = torch.tensor([[[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]],
                           [[0.0, 3.0], [0.6, 0.8], [-1.0, 0.0]]], dtype=torch.float64)
    # pair 1 (m = 0.1): row 0 ReLU(0.8 - 0.6 + 0.1) = 0.3, row 1 ReLU(0.8 - 1 + 0.1) = 0 -> mean 0.15
    # pair 2 (m = 0.2): row 0 ReLU(0 - 0.8 + 0.2) = 0,   row 1 ReLU(0 - 0.8 + 0.2) = 0 -> mean 0
    # L = (0.15 + 0) / 2
    got = hierarchical_triplet_loss(anchor, levels, (0.1, 0.2))
    assert got.item() == pytest.approx(0.075, abs=1e-12)
    assert _naive_ht(anchor.numpy(), levels.numpy(), (0.1, 0.2)) == pytest.approx(0.075, abs=1e-12)
    # one margin 0.7, reused for both pairs: pair 1 rows 0.9 and 0.5 -> mean 0.7; pair 2 rows
    # ReLU(-0.1) = 0 twice -> 0; L = 0.7 / 2
    assert hierarchical_triplet_loss(anchor, levels, (0.7,)).item() == pytest.approx(0.35, abs=1e-12)


def test_ht_k4_closed_form_of_reference():
    """reference §8.3, K = 4: L3 = 1/2 [ReLU(cos(s,s_m) - cos(s,s_p) + m1) + ReLU(cos(s,s_n) - cos(s,s_m) + m2)]."""
    from cselab.losses import hierarchical_triplet_loss

    def cos(u, v) -> float:
        u, v = _np(u)[0], _np(v)[0]
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    m1, m2 = 5e-3, 5e-2
    for seed in range(5):
        s, sp, sm, sn = (_randn(300 + 4 * seed + j, 1, 16) for j in range(4))
        want = 0.5 * (max(0.0, cos(s, sm) - cos(s, sp) + m1) + max(0.0, cos(s, sn) - cos(s, sm) + m2))
        got = hierarchical_triplet_loss(s, torch.stack([sp, sm, sn], dim=1), (m1, m2))
        assert got.item() == pytest.approx(want, abs=1e-12)


def test_ht_k3_is_a_single_triplet_term():
    from cselab.losses import hierarchical_triplet_loss

    anchor, levels = _randn(400, 5, 8), _randn(401, 5, 2, 8)
    a, lv = _unit(_np(anchor)), _np(levels)
    s1 = np.einsum("nd,nd->n", a, _unit(lv[:, 0]))
    s2 = np.einsum("nd,nd->n", a, _unit(lv[:, 1]))
    want = np.maximum(0.0, s2 - s1 + 0.1).mean()  # 1/(K-2) = 1; only margins[0] is used
    assert hierarchical_triplet_loss(anchor, levels, (0.1, 99.0)).item() == pytest.approx(want, abs=1e-12)


def test_ht_zero_when_hierarchy_holds_by_more_than_the_margins():
    from cselab.losses import hierarchical_triplet_loss

    # cosines 0.9 > 0.5 > -0.2: gaps 0.4 and 0.7 exceed the margins 0.3 and 0.6
    angles = np.arccos([0.9, 0.5, -0.2])
    levels = torch.tensor([[[math.cos(t), math.sin(t)] for t in angles]] * 3, dtype=torch.float64)
    anchor = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    assert hierarchical_triplet_loss(anchor, levels, (0.3, 0.6)).item() == 0.0
    # a margin just above the gap makes the term active, by exactly the excess
    assert hierarchical_triplet_loss(anchor, levels, (0.45, 0.6)).item() == pytest.approx(0.05 / 2, abs=1e-12)


def test_ht_sgd_on_free_levels_restores_the_order():
    from cselab.losses import hierarchical_triplet_loss

    anchor = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    # inverted hierarchy: s_1 = cos 1.2 < s_2 = cos 0.8 < s_3 = cos 0.4
    levels = torch.tensor([[[math.cos(t), math.sin(t), 0.1] for t in (1.2, 0.8, 0.4)]],
                          dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([levels], lr=0.5)

    def sims():
        with torch.no_grad():
            return [float(np.dot(_unit(anchor.numpy())[0], _unit(levels[0, k].numpy()[None])[0])) for k in range(3)]

    before = sims()
    loss0 = hierarchical_triplet_loss(anchor, levels, (5e-3, 5e-2))
    loss0.backward()
    opt.step()
    opt.zero_grad()
    after = sims()
    loss1 = hierarchical_triplet_loss(anchor, levels, (5e-3, 5e-2))
    assert loss1.item() < loss0.item()
    assert after[0] > before[0] and after[2] < before[2]  # the top level rises, the bottom level falls
    for _ in range(200):
        loss = hierarchical_triplet_loss(anchor, levels, (5e-3, 5e-2))
        if loss.item() == 0.0:
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
    s = sims()
    assert s[0] > s[1] + 5e-3 - 1e-9 and s[1] > s[2] + 5e-2 - 1e-9
    assert hierarchical_triplet_loss(anchor, levels, (5e-3, 5e-2)).item() == 0.0


def test_ht_gradcheck():
    from cselab.losses import hierarchical_triplet_loss

    anchor = _randn(500, 3, 4).requires_grad_()
    levels = _randn(501, 3, 3, 4).requires_grad_()
    # margins large enough that every hinge is active and away from its kink
    assert torch.autograd.gradcheck(lambda a, lv: hierarchical_triplet_loss(a, lv, (3.0,)), (anchor, levels))


@pytest.mark.parametrize("anchor_shape,levels_shape,margins,match", [
    ((4, 8), (4, 1, 8), (0.1,), r"K >= 3"),
    ((4, 8), (4, 8), (0.1,), r"3-D \(n, K-1, dim\)"),
    ((4, 8, 1), (4, 2, 8), (0.1,), r"anchor must be 2-D"),
    ((4, 8), (5, 2, 8), (0.1,), r"\(n, K-1, dim\)"),
    ((4, 8), (4, 2, 7), (0.1,), r"\(n, K-1, dim\)"),
    ((0, 8), (0, 2, 8), (0.1,), r"n >= 1"),
    ((4, 8), (4, 2, 8), (), r"margins is empty"),
    ((4, 8), (4, 2, 8), (0.1, -0.1), r"finite and >= 0"),
    ((4, 8), (4, 2, 8), (float("nan"),), r"finite and >= 0"),
])
def test_ht_bad_inputs(anchor_shape, levels_shape, margins, match):
    from cselab.losses import hierarchical_triplet_loss

    with pytest.raises(ValueError, match=match):
        hierarchical_triplet_loss(torch.zeros(anchor_shape), torch.ones(levels_shape), margins)


# ------------------------------------------------------------------ dispersive loss (Wang & He 2025)
def _dispersive_loop(z, tau):
    """log of the mean over all n^2 ordered pairs of exp(-||z_i - z_j||^2 / tau), with Python loops."""
    n = len(z)
    total = sum(math.exp(-float(((z[i] - z[j]) ** 2).sum()) / tau) for i in range(n) for j in range(n))
    return math.log(total / n ** 2)


@pytest.mark.parametrize("n, dim, tau", [(1, 3, 0.5), (4, 8, 0.5), (7, 5, 2.0), (16, 32, 0.1)])
def test_dispersive_matches_a_naive_loop(n, dim, tau):
    from cselab.losses import dispersive

    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert float(dispersive(z, tau)) == pytest.approx(_dispersive_loop(z, tau), rel=1e-10, abs=1e-12)
    zn = torch.nn.functional.normalize(z, dim=-1)
    assert float(dispersive(z, tau, normalize=True)) == pytest.approx(_dispersive_loop(zn, tau), rel=1e-10, abs=1e-12)


def test_dispersive_closed_forms_and_uniformity():
    from cselab.losses import dispersive, uniformity

    same = torch.ones(5, 3, dtype=torch.float64)  # collapse: every distance 0 -> log 1 = 0
    assert float(dispersive(same)) == pytest.approx(0.0, abs=1e-12)
    far = torch.eye(4, dtype=torch.float64) * 1e3  # pairs infinitely far apart: only the n diagonal terms remain
    assert float(dispersive(far)) == pytest.approx(math.log(1 / 4), abs=1e-12)
    z = torch.randn(9, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    n, t = 9, 2.0  # on the sphere with tau = 1/t: exp(L) = (n (n-1) exp(uniformity) + n) / n^2
    expected = math.log((n * (n - 1) * math.exp(float(uniformity(z, t))) + n) / n ** 2)
    assert float(dispersive(z, 1 / t, normalize=True)) == pytest.approx(expected, rel=1e-10)


def test_dispersive_gradient_pushes_points_apart_and_bad_arguments():
    from cselab.losses import dispersive

    z = torch.tensor([[0.0, 0.0], [0.1, 0.0]], dtype=torch.float64, requires_grad=True)
    dispersive(z).backward()
    assert torch.isfinite(z.grad).all()  # no NaN from the zero diagonal distances
    assert z.grad[0, 0] > 0 > z.grad[1, 0]  # descending the gradient moves the two points apart
    for bad, match in [(torch.zeros(3), "n, dim"), (torch.zeros(0, 2), "n >= 1")]:
        with pytest.raises(ValueError, match=match):
            dispersive(bad)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        dispersive(torch.zeros(2, 2), temperature=0)


# ---------------------------------------------------------------------------- the pieces info_nce is made of
@pytest.mark.parametrize("alpha", [None, 1.0, 2.0])
def test_simcse_logits_with_cross_entropy_and_dcl_match_the_naive_loops(alpha):
    a, p, n = _triple(7, 5)
    kwargs = {} if alpha is None else {"negatives": n, "hard_negative_weight": math.log(alpha)}
    logits, targets = in_batch_logits(a, p, 0.05, **kwargs)
    assert logits.shape == (5, 5 if alpha is None else 10) and targets.tolist() == list(range(5))
    ref = dict(negatives=None if alpha is None else n, alpha=alpha or 1.0)
    np.testing.assert_allclose(_np(torch.nn.functional.cross_entropy(logits, targets, reduction="none")),
                               naive_simcse(a, p, 0.05, **ref), rtol=1e-10)
    np.testing.assert_allclose(_np(decoupled_loss(logits, targets)), naive_simcse(a, p, 0.05, decoupled=True, **ref),
                               rtol=1e-10)


def test_simcse_logits_append_one_column_per_queue_entry():
    a, p, _ = _triple(8, 4)
    queue = _randn(9, 3, 8)
    logits, _ = in_batch_logits(a, p, 0.1, queue=queue)
    assert logits.shape == (4, 7)
    expected = _unit(_np(a)) @ _unit(_np(queue)).T / 0.1  # numpy cosines, (B, M)
    np.testing.assert_allclose(_np(logits[:, 4:]), expected, rtol=1e-10)
    assert in_batch_logits(a, p, 0.1, queue=queue[:0])[0].shape == (4, 4)  # M = 0 adds nothing


def test_nt_xent_logits_with_cross_entropy_and_dcl_match_the_naive_loops():
    a, p, _ = _triple(11, 4)
    logits, targets = nt_xent_logits(a, p, 0.05)
    assert logits.shape == (8, 8) and targets.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert torch.isinf(logits.diagonal()).all()  # a vector is not its own negative
    np.testing.assert_allclose(_np(torch.nn.functional.cross_entropy(logits, targets, reduction="none")),
                               naive_ntxent(a, p, 0.05), rtol=1e-10)
    np.testing.assert_allclose(_np(decoupled_loss(logits, targets)), naive_ntxent(a, p, 0.05, decoupled=True),
                               rtol=1e-10)
