"""Property tests for cselab.augment.sample_spans (DeCLUTR's span sampler, methods.md §7.1, §15).

Modelled on DeCLUTR's ``tests/common/test_contrastive_utils.py`` (hypothesis there; plain loops
over many seeds and random documents here): span lengths in [min, max], spans are contiguous
slices of the document (checked by an independent search), anchors are disjoint, positives sit
where the strategy says, the Beta(4, 2) / Beta(2, 4) length laws, and the clear error below
``num_anchors * max_length * 2`` tokens. ``reference_spans`` is an independent re-statement of
the §7.1 rules with NumPy's legacy generator, used to pin the draw order.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import kstest

from cselab.augment import SpanSample, sample_spans

STRATEGIES = [None, "subsuming", "adjacent"]
# (num_anchors, num_positives, min_length, max_length): the official defaults, DeCLUTR's test
# fixture bounds (8, 16), and a few odd shapes.
CONFIGS = [(2, 2, 32, 512), (2, 2, 8, 16), (1, 1, 8, 16), (1, 3, 5, 5), (3, 2, 4, 20), (4, 1, 1, 9), (5, 2, 2, 7)]


# ---------------------------------------------------------------------------- helpers
def reference_spans(n, k, p, lo, hi, strategy, rs):
    """§7.1 restated: slices drawn with a ``np.random.RandomState`` in the official order."""
    starts = list(range(0, n - hi + 1, hi))
    anchors, positives = [], []
    for i in range(k):
        la = int(rs.beta(4, 2) * (hi - lo) + lo)
        j = rs.choice([0, len(starts) - 1]) if len(starts) // (k - i) < k - i else rs.randint(len(starts))
        a = rs.randint(starts[j], starts[j] + hi - la + 1)
        del starts[max(0, j - 1): j + 2]
        anchors.append((a, a + la))
        row = []
        for _ in range(p):
            if strategy == "subsuming":
                lp = int(rs.beta(2, 4) * (la - lo) + lo)
                s = rs.randint(a, a + la - lp + 1)
            elif strategy == "adjacent":
                mp = min(hi, max(a, n - a - la))
                lp = int(rs.beta(2, 4) * (mp - lo) + lo)
                options = ([a - lp] if a - lp > 0 else []) + ([a + la] if a + la + lp <= n else [])
                # The official np.random.choice([]) raises when neither side fits (only when
                # lp == a, e.g. min == max); cselab then ends the positive at the anchor's start.
                s = rs.choice(options) if options else a - lp
            else:
                lp = int(rs.beta(2, 4) * (hi - lo) + lo)
                s = rs.randint(max(0, a - lp), min(a + la, n - lp) + 1)
            row.append((int(s), int(s) + lp))
        positives.append(row)
    return anchors, positives


def find_all(doc, piece):
    """Every start where ``piece`` occurs contiguously in ``doc`` (naive search)."""
    m = len(piece)
    return [s for s in range(len(doc) - m + 1) if doc[s] == piece[0] and doc[s:s + m] == piece]


def random_doc(rnd, n, vocab=None):
    """Distinct ids (every slice occurs once) or, with ``vocab``, ids with many repeats."""
    if vocab is None:
        return rnd.sample(range(10_000, 10_000 + 4 * n), n)
    return [rnd.randrange(vocab) for _ in range(n)]


def cases(count, seed):
    """(case, doc, config, strategy) over random lengths from the minimum up to 3x it."""
    rnd = random.Random(seed)
    for case in range(count):
        k, p, lo, hi = rnd.choice(CONFIGS)
        if hi == 512 and case % 4:  # keep the big configuration rarer (slow naive searches)
            k, p, lo, hi = CONFIGS[1]
        n = k * hi * 2 + rnd.randint(0, 2 * k * hi)
        vocab = rnd.choice([None, 3, 50])
        yield case, random_doc(rnd, n, vocab), (k, p, lo, hi), rnd.choice(STRATEGIES)


def check_invariants(doc, out, k, p, lo, hi, strategy):
    n = len(doc)
    assert isinstance(out, SpanSample)
    assert len(out.anchor_spans) == len(out.anchors) == k
    assert len(out.positive_spans) == len(out.positives) == k
    for (a0, a1), anchor, spans, pos in zip(out.anchor_spans, out.anchors, out.positive_spans, out.positives):
        assert 0 <= a0 < a1 <= n and lo <= a1 - a0 <= hi
        assert anchor == doc[a0:a1]
        assert len(spans) == len(pos) == p
        for (s, e), positive in zip(spans, pos):
            assert 0 <= s < e <= n and lo <= e - s <= hi
            assert positive == doc[s:e]
            if strategy is None:  # adjacent, overlapping or subsumed: touches the anchor
                assert e >= a0 and s <= a1
            elif strategy == "subsuming":
                assert a0 <= s and e <= a1
            else:
                assert e == a0 or s == a1
    ordered = sorted(out.anchor_spans)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(ordered, ordered[1:])), "anchors overlap"


# ---------------------------------------------------------------------------- exact draws
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_the_reference_draws_with_numpy_global_and_randomstate(strategy):
    rnd = random.Random(11)
    for seed in range(150):
        k, p, lo, hi = CONFIGS[seed % len(CONFIGS)]
        n = k * hi * 2 + rnd.randint(0, 3 * hi)
        doc = list(range(n))
        expected = reference_spans(n, k, p, lo, hi, strategy, np.random.RandomState(seed))
        np.random.seed(seed)
        got = sample_spans(doc, k, p, lo, hi, strategy)  # rng=None: NumPy's global generator
        assert (got.anchor_spans, got.positive_spans) == expected, (seed, k, p, lo, hi)
        got = sample_spans(doc, k, p, lo, hi, strategy, np.random.RandomState(seed))
        assert (got.anchor_spans, got.positive_spans) == expected


# ---------------------------------------------------------------------------- properties
@pytest.mark.parametrize("make_rng, seed", [(np.random.default_rng, 1), (random.Random, 2), (np.random.RandomState, 3)],
                         ids=["Generator", "Random", "RandomState"])
def test_invariants_over_many_seeds_and_documents(make_rng, seed):
    for case, doc, (k, p, lo, hi), strategy in cases(300, seed=seed):
        out = sample_spans(doc, k, p, lo, hi, strategy, make_rng(case))
        check_invariants(doc, out, k, p, lo, hi, strategy)


def test_spans_are_substrings_by_independent_search():
    rnd = random.Random(3)
    for case in range(120):
        k, p, lo, hi = rnd.choice(CONFIGS[1:])
        doc = random_doc(rnd, k * hi * 2 + rnd.randint(0, 40))  # distinct ids: one occurrence each
        out = sample_spans(doc, k, p, lo, hi, rnd.choice(STRATEGIES), np.random.default_rng(case))
        for (a0, _), anchor in zip(out.anchor_spans, out.anchors):
            assert find_all(doc, anchor) == [a0]
        for spans, pos in zip(out.positive_spans, out.positives):
            for (s, _), positive in zip(spans, pos):
                assert find_all(doc, positive) == [s]
        repeated = [t % 2 for t in doc]  # heavy repeats: still occurs, at the reported start
        out = sample_spans(repeated, k, p, lo, hi, None, np.random.default_rng(case))
        for (a0, _), anchor in zip(out.anchor_spans, out.anchors):
            assert a0 in find_all(repeated, anchor)


def test_default_strategy_reaches_every_relation():
    seen = set()
    doc = list(range(64))
    for seed in range(400):
        out = sample_spans(doc, 2, 2, 8, 16, rng=np.random.default_rng(seed))
        for (a0, a1), spans in zip(out.anchor_spans, out.positive_spans):
            for s, e in spans:
                if e == a0 or s == a1:
                    seen.add("adjacent")
                elif a0 <= s and e <= a1:
                    seen.add("subsumed")
                elif s <= a0 and a1 <= e:
                    seen.add("subsumes")
                else:
                    seen.add("overlaps")
    assert seen == {"adjacent", "subsumed", "subsumes", "overlaps"}


def test_adjacent_uses_both_sides():
    sides = set()
    for seed in range(200):
        out = sample_spans(list(range(64)), 2, 2, 8, 16, "adjacent", np.random.default_rng(seed))
        for (a0, a1), spans in zip(out.anchor_spans, out.positive_spans):
            sides.update("before" if e == a0 else "after" for s, e in spans)
    assert sides == {"before", "after"}


def test_subsuming_positive_never_longer_than_its_anchor():
    for seed in range(200):
        out = sample_spans(list(range(64)), 2, 3, 8, 16, "subsuming", random.Random(seed))
        for (a0, a1), spans in zip(out.anchor_spans, out.positive_spans):
            assert all(e - s <= a1 - a0 for s, e in spans)


def test_anchors_disjoint_with_many_anchors_at_the_minimum_length():
    for k in range(1, 9):
        for seed in range(60):
            doc = list(range(k * 10 * 2))
            out = sample_spans(doc, k, 1, 3, 10, rng=np.random.default_rng(seed))
            check_invariants(doc, out, k, 1, 3, 10, None)


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("make_rng", [np.random.default_rng, random.Random, np.random.RandomState],
                         ids=["Generator", "Random", "RandomState"])
def test_deterministic_under_a_seed_and_varies_across_seeds(make_rng):
    doc = random_doc(random.Random(0), 2500)
    runs = {}
    for seed in range(20):
        first = sample_spans(doc, rng=make_rng(seed))
        assert sample_spans(doc, rng=make_rng(seed)) == first
        runs[seed] = (tuple(first.anchor_spans), tuple(map(tuple, first.positive_spans)))
    assert len(set(runs.values())) == 20


def test_global_generator_is_repeatable_after_seeding():
    doc = list(range(2048))
    np.random.seed(5)
    first = sample_spans(doc)
    np.random.seed(5)
    assert sample_spans(doc) == first


# ---------------------------------------------------------------------------- length laws
def test_length_distributions_are_beta_4_2_for_anchors_and_beta_2_4_for_positives():
    lo, hi = 32, 512
    doc = list(range(2048))
    rng = np.random.default_rng(1234)
    anchor_u, positive_u = [], []
    for _ in range(3000):
        out = sample_spans(doc, 2, 2, lo, hi, rng=rng)
        anchor_u += [(e - s - lo) / (hi - lo) for s, e in out.anchor_spans]
        positive_u += [(e - s - lo) / (hi - lo) for spans in out.positive_spans for s, e in spans]
    anchor_u, positive_u = np.array(anchor_u), np.array(positive_u)
    assert abs(anchor_u.mean() - 4 / 6) < 0.01  # int() truncation lowers the mean by < 1/480
    assert abs(positive_u.mean() - 2 / 6) < 0.01
    sd = np.sqrt(4 * 2 / (6**2 * 7))  # both laws have the same variance
    assert abs(anchor_u.std() - sd) < 0.01 and abs(positive_u.std() - sd) < 0.01
    half_step = 0.5 / (hi - lo)  # centre the truncated lengths before the KS test
    assert kstest(anchor_u + half_step, beta_dist(4, 2).cdf).pvalue > 1e-3
    assert kstest(positive_u + half_step, beta_dist(2, 4).cdf).pvalue > 1e-3
    assert kstest(anchor_u + half_step, beta_dist(2, 4).cdf).pvalue < 1e-6  # the test has power


# ---------------------------------------------------------------------------- minimum length
@pytest.mark.parametrize("k, hi, needed", [(2, 512, 2048), (1, 512, 1024), (3, 16, 96)])
def test_error_below_the_minimum_names_document_and_minimum(k, hi, needed):
    with pytest.raises(ValueError, match=rf"wiki-17 has {needed - 1} tokens.*at least .*= {needed} tokens"):
        sample_spans(list(range(needed - 1)), k, 2, min(32, hi), hi, document="wiki-17")
    out = sample_spans(list(range(needed)), k, 2, min(32, hi), hi, rng=np.random.default_rng(0))
    assert len(out.anchors) == k


def test_default_error_message_mentions_the_fixes():
    with pytest.raises(ValueError, match="document has 2047 tokens") as info:
        sample_spans(list(range(2047)))
    assert "2048" in str(info.value) and "scale_to_document=True" in str(info.value)


# ---------------------------------------------------------------------------- scale_to_document
def test_scale_to_document_on_short_documents_keeps_the_invariants():
    rnd = random.Random(8)
    for case in range(300):
        k, p = rnd.randint(1, 4), rnd.randint(1, 3)
        n = rnd.randint(2 * k, 600)
        doc = random_doc(rnd, n, rnd.choice([None, 7]))
        strategy = rnd.choice(STRATEGIES)
        out = sample_spans(doc, k, p, 32, 512, strategy, np.random.default_rng(case), scale_to_document=True)
        hi = min(512, n // (2 * k))
        lo = min(32, hi)
        assert (out.min_length, out.max_length) == (lo, hi)
        assert n >= k * hi * 2
        check_invariants(doc, out, k, p, lo, hi, strategy)


def test_scale_to_document_leaves_long_documents_alone():
    doc = list(range(3000))
    plain = sample_spans(doc, rng=np.random.default_rng(4))
    scaled = sample_spans(doc, rng=np.random.default_rng(4), scale_to_document=True)
    assert scaled == plain and (scaled.min_length, scaled.max_length) == (32, 512)


def test_scale_to_document_too_short_still_raises():
    with pytest.raises(ValueError, match=r"tiny has 3 tokens.*2 \* num_anchors = 4"):
        sample_spans([1, 2, 3], 2, scale_to_document=True, document="tiny")


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs, match", [
    (dict(num_anchors=0), "num_anchors must be an integer >= 1"),
    (dict(num_anchors=1.5), "num_anchors must be an integer >= 1"),
    (dict(num_anchors=True), "num_anchors must be an integer >= 1"),
    (dict(num_positives=0), "num_positives must be an integer >= 1"),
    (dict(min_length=0), "min_length must be an integer >= 1"),
    (dict(max_length=-3), "max_length must be an integer >= 1"),
    (dict(min_length=600), r"min_length \(600\) must be <= max_length \(512\)"),
    (dict(sampling="subsumed"), "sampling must be None"),
    (dict(rng=42), "rng must be a numpy.random.Generator"),
])
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_spans(list(range(4096)), **kwargs)


def test_unpacks_as_anchors_and_positives():
    doc = list(range(2048))
    anchors, positives = sample_spans(doc, rng=random.Random(0))
    assert len(anchors) == 2 and [len(row) for row in positives] == [2, 2]
    assert all(isinstance(t, int) for t in anchors[0])
