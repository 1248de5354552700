"""cselab.similarity and binary pair classification (reference §9: fixed 0.5 threshold,
precision/recall/F1, Spearman between binary labels and cosines; here also an F1-optimal
threshold chosen on a dev set).

Expectations are computed independently: confusion matrices by hand, metrics with plain-Python
loops, Spearman from naive average ranks, cosines with numpy from ``encoder.encode`` outputs.
"""
from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

import cselab
import cselab.data as D
import cselab.evaluate as E


# ---------------------------------------------------------------- independent references
def naive_metrics(scores, labels, threshold) -> dict:
    tp = fp = tn = fn = 0
    for s, y in zip(scores, labels):
        if s > threshold:
            if y == 1:
                tp += 1
            else:
                fp += 1
        elif y == 1:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "accuracy": (tp + tn) / len(labels),
            "precision": precision, "recall": recall, "f1": f1}


def naive_average_ranks(values) -> list[float]:
    ranks = []
    for v in values:
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        ranks.append(below + (equal + 1) / 2)
    return ranks


def naive_spearman(x, y) -> float:
    rx, ry = naive_average_ranks(x), naive_average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def numpy_cosines(encoder, s1, s2) -> np.ndarray:
    """Encode the distinct sentences in first-seen order (the package's batch composition, so the
    embeddings are bit-identical; see tests/test_evaluate.py) and take the cosine with numpy."""
    distinct = list(dict.fromkeys(list(s1) + list(s2)))
    table = dict(zip(distinct, encoder.encode(distinct, show_progress=False).numpy().astype(np.float64)))
    a, b = np.stack([table[s] for s in s1]), np.stack([table[s] for s in s2])
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def labelled_sample() -> tuple[D.LabeledPairs, D.LabeledPairs]:
    """400 pairs of the shipped STS sample as binary pairs (gold >= 3 -> 1): 200 dev, 200 test."""
    scored = D.read_scored_pairs()
    labels = (scored.scores >= 3.0).astype(np.int64)
    dev = D.LabeledPairs(scored.sentences1[:200], scored.sentences2[:200], labels[:200], "sample/dev")
    test = D.LabeledPairs(scored.sentences1[200:400], scored.sentences2[200:400], labels[200:400], "sample/test")
    return dev, test


@pytest.fixture(scope="module")
def sample(tiny_encoder):
    """The dev/test sample with independently computed cosines (each encoded once per module)."""
    dev, test = labelled_sample()
    return {"dev": dev, "test": test,
            "dev_cos": numpy_cosines(tiny_encoder, dev.sentences1, dev.sentences2).tolist(),
            "test_cos": numpy_cosines(tiny_encoder, test.sentences1, test.sentences2).tolist()}


# ---------------------------------------------------------------- classification_metrics
def test_metrics_hand_computed_confusion_matrix():
    scores = [0.9, 0.8, 0.3, 0.6, 0.1, 0.55, 0.5]
    labels = [1, 0, 1, 1, 0, 0, 1]
    # > 0.5: pred 1 1 0 1 0 1 0 (0.5 itself is not above the threshold)
    # tp = {0, 3}, fp = {1, 5}, fn = {2, 6}, tn = {4}
    m = E.classification_metrics(scores, labels, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 2, 1)
    assert m["accuracy"] == pytest.approx(3 / 7)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert (m["n"], m["n_positive"], m["threshold"]) == (7, 4, 0.5)
    assert m["spearman"] == pytest.approx(100 * naive_spearman(labels, scores), abs=1e-12)


def test_metrics_second_hand_case_and_naive_agreement():
    scores = [0.2, 0.4, 0.45, 0.7, 0.71, 0.95]
    labels = [0, 1, 0, 0, 1, 1]
    m = E.classification_metrics(scores, labels, 0.42)  # pred 0 0 1 1 1 1: tp 2, fp 2, fn 1, tn 1
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 1, 1)
    assert (m["precision"], m["recall"]) == pytest.approx((0.5, 2 / 3))
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.uniform(-1, 1, 50).round(2)  # rounded: ties and scores equal to the threshold
        y = rng.integers(0, 2, 50)
        t = float(rng.choice(x))
        got, expected = E.classification_metrics(x, y, t), naive_metrics(x.tolist(), y.tolist(), t)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), key
        assert got["spearman"] == pytest.approx(100 * naive_spearman(y.tolist(), x.tolist()), abs=1e-9)


def test_metrics_are_fractions_and_spearman_is_x100():
    m = E.classification_metrics([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1], 0.5)
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["spearman"] == pytest.approx(100 * naive_spearman([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]))
    assert m["spearman"] > 1.0  # x 100, like spearman_on_pairs


def test_zero_division_gives_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none_predicted = E.classification_metrics([0.1, 0.2, 0.3], [1, 0, 1], 0.5)
        assert (none_predicted["precision"], none_predicted["recall"], none_predicted["f1"]) == (0.0, 0.0, 0.0)
        assert none_predicted["accuracy"] == pytest.approx(1 / 3)
        no_positive = E.classification_metrics([0.1, 0.7, 0.3], [0, 0, 0], 0.5)
        assert (no_positive["precision"], no_positive["recall"], no_positive["f1"]) == (0.0, 0.0, 0.0)
        assert math.isnan(no_positive["spearman"])  # constant labels: NaN, and no ConstantInputWarning
        nothing = E.classification_metrics([0.1, 0.2], [0, 0], 0.5)
        assert (nothing["accuracy"], nothing["f1"]) == (1.0, 0.0)
        assert math.isnan(E.classification_metrics([0.4, 0.4], [0, 1], 0.5)["spearman"])  # constant scores


@pytest.mark.parametrize("scores, labels, threshold, match", [
    ([0.1, 0.2], [0, 1, 1], 0.5, "3 entries but there are 2 pairs"),
    ([0.1, 0.2], [0, 2], 0.5, "must be 0 or 1.*entry 1 is 2"),
    ([0.1, 0.2], ["0", "1"], 0.5, "0/1 numbers"),
    ([0.1, float("nan")], [0, 1], 0.5, "NaN or infinity"),
    ([], [], 0.5, "non-empty"),
    ([0.1, 0.2], [0, 1], float("nan"), "finite"),
])
def test_metrics_bad_input(scores, labels, threshold, match):
    with pytest.raises(ValueError, match=match):
        E.classification_metrics(scores, labels, threshold)


def test_metrics_accept_bool_labels():
    a = E.classification_metrics([0.9, 0.1], [True, False], 0.5)
    assert (a["tp"], a["tn"], a["n_positive"]) == (1, 1, 1)


# ---------------------------------------------------------------- best_f1_threshold
def naive_f1(scores, labels, t) -> float:
    return naive_metrics(scores, labels, t)["f1"]


@pytest.mark.parametrize("seed", range(8))
def test_best_threshold_beats_a_fine_grid_and_is_exact(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 120)
    scores = [round(rng.uniform(-1, 1), rng.choice([1, 2, 6])) for _ in range(n)]  # some ties
    labels = [1 if rng.random() < 0.3 + 0.4 * (s + 1) / 2 else 0 for s in scores]
    if 1 not in labels:
        labels[0] = 1
    t = E.best_f1_threshold(scores, labels)
    best = naive_f1(scores, labels, t)
    assert E.classification_metrics(scores, labels, t)["f1"] == pytest.approx(best, abs=1e-15)
    grid = [-1.5 + 3.0 * i / 6000 for i in range(6001)]
    assert best >= max(naive_f1(scores, labels, g) for g in grid) - 1e-15
    # Every possible split: a threshold at each observed score and one below all of them.
    splits = sorted(set(scores)) + [min(scores) - 1]
    assert best == pytest.approx(max(naive_f1(scores, labels, g) for g in splits), abs=1e-15)


def test_best_threshold_is_a_midpoint_and_ties_go_to_the_smallest():
    # 0.2/0.4/0.6/0.8 with labels 1 0 0 1: all positive (tp 2, fp 2) and > 0.7 (tp 1, fn 1) both give F1 = 2/3.
    scores, labels = [0.2, 0.4, 0.6, 0.8], [1, 0, 0, 1]
    for t, f1 in ((0.1, 2 / 3), (0.3, 2 / 5), (0.5, 1 / 2), (0.7, 2 / 3), (0.8, 0.0)):
        assert naive_f1(scores, labels, t) == pytest.approx(f1)
    assert E.best_f1_threshold(scores, labels) == pytest.approx(0.2 - 1.0)  # smallest: everything positive
    assert E.best_f1_threshold(scores[::-1], labels[::-1]) == pytest.approx(0.2 - 1.0)
    # A clean separation is cut at the midpoint of the gap.
    assert E.best_f1_threshold([0.1, 0.3, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(0.45)
    # Unsorted input and repeated scores.
    assert E.best_f1_threshold([0.9, 0.3, 0.6, 0.3, 0.1], [1, 0, 1, 0, 0]) == pytest.approx(0.45)


def test_best_threshold_adjacent_floats_still_split():
    a = 0.7
    b = float(np.nextafter(a, 1.0))
    t = E.best_f1_threshold([a, b, a], [0, 1, 0])
    assert a <= t < b
    m = E.classification_metrics([a, b, a], [0, 1, 0], t)
    assert m["f1"] == 1.0


def test_best_threshold_all_positive_and_no_positive():
    t = E.best_f1_threshold([0.3, 0.5, 0.1], [1, 1, 1])
    assert t < 0.1 and E.classification_metrics([0.3, 0.5, 0.1], [1, 1, 1], t)["f1"] == 1.0
    with pytest.raises(ValueError, match="No positive label"):
        E.best_f1_threshold([0.3, 0.5], [0, 0])


# ---------------------------------------------------------------- similarity
def test_similarity_equals_numpy_cosine_of_encode(tiny_encoder):
    pairs = [("A man is playing a guitar.", "A man plays the guitar."),
             ("A cat sleeps.", "Stock markets fell sharply today."),
             ("A cat sleeps.", "A man is playing a guitar."),
             ("Two dogs run on the beach.", "Dogs are running by the sea.")]
    s1, s2 = [p[0] for p in pairs], [p[1] for p in pairs]
    got = cselab.similarity(tiny_encoder, pairs)
    assert got.shape == (4,) and got.dtype == np.float64
    np.testing.assert_allclose(got, numpy_cosines(tiny_encoder, s1, s2), atol=1e-12)
    # Encoding each side separately (other batch composition) agrees to float32 precision.
    a = tiny_encoder.encode(s1, show_progress=False).numpy().astype(np.float64)
    b = tiny_encoder.encode(s2, show_progress=False).numpy().astype(np.float64)
    np.testing.assert_allclose(got, (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), atol=1e-5)
    # Columns give the same as rows, and so does a list of lists.
    np.testing.assert_array_equal(cselab.similarity(tiny_encoder, (s1, s2)), got)
    np.testing.assert_array_equal(cselab.similarity(tiny_encoder, [list(p) for p in pairs]), got)
    assert cselab.similarity(tiny_encoder, [("same words", "same words")])[0] == 1.0


def test_similarity_encodes_each_distinct_sentence_once(tiny_encoder):
    seen = []

    class Spy:
        def encode(self, sentences, **kwargs):
            seen.append(list(sentences))
            return tiny_encoder.encode(sentences, **kwargs)

    cselab.similarity(Spy(), [("a", "b"), ("b", "a"), ("a", "c")], batch_size=2)
    assert seen == [["a", "b", "c"]]


@pytest.mark.parametrize("pairs, error, match", [
    ((["a", "b"], ["c"]), ValueError, "sentences1 has 2 sentences but sentences2 has 1"),
    ((("a", "b"), ("c", "d")), ValueError, "Ambiguous"),
    ([("a", "b", "c")], ValueError, "pair 0"),
    (["ab", "cd"], ValueError, "pair 0"),
    ([], ValueError, "No sentence pairs"),
    ("a b", TypeError, "single string"),
    ([("a", 3)], TypeError, "sentence2 of pair 0 is int"),
])
def test_similarity_bad_pairs(tiny_encoder, pairs, error, match):
    with pytest.raises(error, match=match):
        cselab.similarity(tiny_encoder, pairs)


def test_similarity_exported():
    assert cselab.similarity is E.similarity and "similarity" in cselab.__all__
    assert cselab.pair_classification is E.pair_classification


# ---------------------------------------------------------------- pair_classification
def test_fixed_threshold_half_like_the_reference(tiny_encoder, sample):
    test, cos = sample["test"], sample["test_cos"]
    got = cselab.pair_classification(tiny_encoder, test, threshold=0.5, show_progress=False)
    expected = naive_metrics(cos, test.labels.tolist(), 0.5)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["threshold"] == 0.5 and got["dev_f1"] is None
    assert (got["n"], got["n_positive"]) == (len(test), int(sum(test.labels)))
    assert got["spearman"] == pytest.approx(100 * naive_spearman(test.labels.tolist(), cos), abs=1e-6)


def test_threshold_chosen_on_dev_and_applied_to_test(tiny_encoder, sample):
    dev, test, dev_cos, test_cos = sample["dev"], sample["test"], sample["dev_cos"], sample["test_cos"]
    got = cselab.pair_classification(tiny_encoder, test, dev=dev, show_progress=False)
    # Independent choice on dev: the best F1 over every split of the dev scores.
    splits = sorted(set(dev_cos)) + [min(dev_cos) - 1]
    best_dev = max(naive_f1(dev_cos, dev.labels.tolist(), t) for t in splits)
    assert got["dev_f1"] == pytest.approx(best_dev, abs=1e-12)
    assert naive_f1(dev_cos, dev.labels.tolist(), got["threshold"]) == pytest.approx(best_dev, abs=1e-12)
    # ... applied unchanged to the test pairs.
    expected = naive_metrics(test_cos, test.labels.tolist(), got["threshold"])
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["n"] == len(test)
    # The threshold does not come from the test pairs: dev and test swapped give another one.
    swapped = cselab.pair_classification(tiny_encoder, dev, dev=test, show_progress=False)
    assert swapped["threshold"] == pytest.approx(E.best_f1_threshold(test_cos, test.labels), abs=1e-12)
    assert swapped["threshold"] != pytest.approx(got["threshold"], abs=1e-6)


def test_plain_pairs_with_labels_equal_labeled_pairs(tiny_encoder):
    _, test = labelled_sample()
    s1, s2, y = test.sentences1[:60], test.sentences2[:60], test.labels[:60].tolist()
    reference = cselab.pair_classification(tiny_encoder, D.LabeledPairs(s1, s2, np.array(y)), threshold=0.6)
    columns = cselab.pair_classification(tiny_encoder, (s1, s2), labels=y, threshold=0.6)
    rows = cselab.pair_classification(tiny_encoder, list(zip(s1, s2)), labels=np.array(y), threshold=0.6)
    assert columns == reference and rows == reference


def test_neither_threshold_nor_dev_is_refused(tiny_encoder):
    _, test = labelled_sample()
    with pytest.raises(ValueError, match=r"No threshold: pass threshold=.*dev=.*never chosen on the evaluated"):
        cselab.pair_classification(tiny_encoder, test)
    with pytest.raises(ValueError, match="No threshold"):
        cselab.pair_classification(tiny_encoder, (["a"], ["b"]), labels=[1])


def test_pair_classification_argument_errors(tiny_encoder):
    dev, test = labelled_sample()
    with pytest.raises(ValueError, match="either threshold= .* or dev="):
        cselab.pair_classification(tiny_encoder, test, threshold=0.5, dev=dev)
    with pytest.raises(ValueError, match="already carry labels"):
        cselab.pair_classification(tiny_encoder, test, labels=test.labels, threshold=0.5)
    with pytest.raises(ValueError, match="Pass labels="):
        cselab.pair_classification(tiny_encoder, (["a", "b"], ["c", "d"]), threshold=0.5)
    with pytest.raises(ValueError, match="3 entries but there are 2 pairs"):
        cselab.pair_classification(tiny_encoder, (["a", "b"], ["c", "d"]), labels=[0, 1, 1], threshold=0.5)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        cselab.pair_classification(tiny_encoder, [("a", "c"), ("b", "d")], labels=[0, 5], threshold=0.5)
    with pytest.raises(ValueError, match="sentences2 has 1"):
        cselab.pair_classification(tiny_encoder, (["a", "b"], ["c"]), labels=[0, 1], threshold=0.5)
    with pytest.raises(TypeError, match="dev must be cselab.data.LabeledPairs"):
        cselab.pair_classification(tiny_encoder, test, dev=(test.sentences1, test.sentences2))
    no_pos = D.LabeledPairs(dev.sentences1[:5], dev.sentences2[:5], np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="No positive label"):
        cselab.pair_classification(tiny_encoder, test, dev=no_pos)


# ---------------------------------------------------------------- real MRPC, end to end
@pytest.fixture(scope="module")
def mrpc_run(shared_data_dir, tiny_encoder):
    """pair_classification on MRPC test with the threshold chosen on MRPC train; the cosines it
    used are captured with a spy on cosine_scores."""
    train, test = D.read_mrpc("train", shared_data_dir), D.read_mrpc("test", shared_data_dir)
    captured = {}
    real = E.cosine_scores

    def spy(encoder, pairs, *args, **kwargs):
        captured[pairs.source] = result = real(encoder, pairs, *args, **kwargs)
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(E, "cosine_scores", spy)
        result = cselab.pair_classification(tiny_encoder, test, dev=train, show_progress=False)
    print(f"\nMRPC, tiny random encoder, threshold chosen on train: {result}")
    return {"train": train, "test": test, "result": result, "cos": captured}


@pytest.mark.shared_data
@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_mrpc_end_to_end_is_internally_consistent(mrpc_run):
    train, test, result, cos = mrpc_run["train"], mrpc_run["test"], mrpc_run["result"], mrpc_run["cos"]
    assert set(cos) == {"MRPC/train", "MRPC/test"}
    train_cos, test_cos = cos["MRPC/train"].tolist(), cos["MRPC/test"].tolist()
    assert len(train_cos) == 4076 and len(test_cos) == 1725
    assert all(-1.0 - 1e-9 <= c <= 1.0 + 1e-9 for c in test_cos)
    # Predictions recomputed independently from the cosines give the same metrics.
    expected = naive_metrics(test_cos, test.labels.tolist(), result["threshold"])
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert (result["n"], result["n_positive"]) == (1725, 1147)
    assert result["tp"] + result["fp"] + result["tn"] + result["fn"] == 1725
    # The threshold is the F1-optimum on train (checked against every split of the train scores).
    # Sweep the threshold upwards past each distinct train score (plain Python, no sorting tricks).
    labels = train.labels.tolist()
    counts: dict[float, list[int]] = {}  # score -> [negatives, positives]
    for c, y in zip(train_cos, labels):
        counts.setdefault(c, [0, 0])[y] += 1
    actual = sum(labels)
    predicted, true_pos = len(labels), actual  # threshold below every score: all predicted positive
    best = 2 * true_pos / (predicted + actual)
    for value in sorted(counts):
        predicted -= sum(counts[value])
        true_pos -= counts[value][1]
        best = max(best, 2 * true_pos / (predicted + actual))
    assert result["dev_f1"] == pytest.approx(best, abs=1e-12)
    assert naive_f1(train_cos, train.labels.tolist(), result["threshold"]) == pytest.approx(best, abs=1e-12)
    assert min(train_cos) - 1.0 <= result["threshold"] <= max(train_cos)


@pytest.mark.shared_data
@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_mrpc_cosines_match_numpy_on_a_sample(mrpc_run, tiny_encoder):
    """The captured test cosines equal numpy's cosine of encode outputs (first 150 pairs; the batch
    composition differs from the package's, so to float32 precision)."""
    test = mrpc_run["test"]
    s1, s2 = test.sentences1[:150], test.sentences2[:150]
    a = tiny_encoder.encode(s1, show_progress=False).numpy().astype(np.float64)
    b = tiny_encoder.encode(s2, show_progress=False).numpy().astype(np.float64)
    expected = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(mrpc_run["cos"]["MRPC/test"][:150], expected, atol=1e-5)


@pytest.mark.shared_data
@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_mrpc_fixed_half_threshold(mrpc_run, tiny_encoder, monkeypatch):
    """threshold=0.5 (the reference project's fixed value) on the real test pairs. The cosines
    captured in the dev run are served again instead of re-encoding 3,000 sentences."""
    test = mrpc_run["test"]
    served = []

    def cached(encoder, pairs, *args, **kwargs):
        assert pairs is test
        served.append(pairs.source)
        return mrpc_run["cos"]["MRPC/test"]

    monkeypatch.setattr(E, "cosine_scores", cached)
    fixed = cselab.pair_classification(tiny_encoder, test, threshold=0.5, show_progress=False)
    assert served == ["MRPC/test"]  # no dev pass with a fixed threshold
    expected = naive_metrics(mrpc_run["cos"]["MRPC/test"].tolist(), test.labels.tolist(), 0.5)
    for key, value in expected.items():
        assert fixed[key] == pytest.approx(value, abs=1e-12), key
    assert fixed["threshold"] == 0.5 and fixed["dev_f1"] is None
    assert fixed["spearman"] == pytest.approx(mrpc_run["result"]["spearman"], abs=1e-12)  # threshold-free
    print(f"\nMRPC test, tiny random encoder, fixed threshold 0.5: {fixed}")
