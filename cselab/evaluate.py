"""STS evaluation with SimCSE's SentEval protocol (SimCSE App. B; reference §10).

- similarity = cosine of the two sentence embeddings, no regressor, for all 7 tasks;
- metric = Spearman correlation x 100;
- STS12-16 in the "all" setting: one correlation over the concatenation of the year's
  sub-datasets (``mean`` and ``wmean`` are computed too, for comparison);
- STS-B and SICK-R on the requested split (``test`` for the paper's tables).

The printed table has SimCSE's columns; like SimCSE's ``evaluation.py`` its ``Avg.``
is the mean of the values rounded to 2 decimals (``exact_avg=True`` prints the exact mean,
which is what the returned dictionary always holds).

Binary pairs (paraphrase / text matching, reference §9): :func:`similarity` gives the cosine of
any sentence pairs; :func:`pair_classification` thresholds it (fixed, e.g. the reference's 0.5,
or the F1-optimal threshold on a dev set) and reports accuracy/precision/recall/F1 as fractions
and Spearman x 100; :func:`classification_metrics` and :func:`best_f1_threshold` are the pure parts.

Retrieval: :func:`nearest_neighbours` lists, for each query, the closest sentences of a pool by cosine.
"""
from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from . import data as D
from .losses import alignment, uniformity

def _embed_pairs(encoder, pairs, batch_size: int, show_progress: bool | None = None):
    """Encode each distinct sentence once. Returns two (n, dim) tensors.

    ``pairs``: anything with ``sentences1`` and ``sentences2`` (ScoredPairs, LabeledPairs).
    """
    unique = list(dict.fromkeys(list(pairs.sentences1) + list(pairs.sentences2)))
    emb = encoder.encode(unique, batch_size=batch_size, show_progress=show_progress)  # (u, dim)
    where = {s: i for i, s in enumerate(unique)}
    return emb[[where[s] for s in pairs.sentences1]], emb[[where[s] for s in pairs.sentences2]]


def cosine_scores(encoder, pairs: D.ScoredPairs | D.LabeledPairs, batch_size: int = 128,
                  show_progress: bool | None = None) -> np.ndarray:
    """Cosine similarity of each pair, (n,) float64 (SentEval: ``nan_to_num`` of the cosine).

    ``pairs``: :class:`cselab.data.ScoredPairs` or :class:`cselab.data.LabeledPairs`.
    """
    a, b = _embed_pairs(encoder, pairs, batch_size, show_progress)
    a, b = a.double(), b.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    # A sentence paired with itself shares one embedding; its cosine is exactly 1, and rounding
    # noise (1 +- 4e-16) must not break the ties Spearman sees (STS12 has 79 such pairs).
    cos[(a == b).all(-1)] = 1.0
    return np.nan_to_num(cos.numpy())


def sts_correlations(encoder, task: str, split: str = "test", data_dir: str | os.PathLike | None = None,
                     batch_size: int = 128, show_progress: bool | None = None) -> dict:
    """Per-subset and aggregated correlations of one task, like SentEval's ``STSEval.run``.

    Returns ``{subset: {"pearson", "spearman", "n"}, "all": {...}, "mean": {...}, "wmean": {...}}``
    with raw correlations (not x 100).
    """
    subsets = D.load_sts_task(task, split, data_dir)
    result: dict = {}
    sys_all, gold_all = [], []
    for name, pairs in subsets.items():
        sims = cosine_scores(encoder, pairs, batch_size, show_progress)
        result[name] = {"pearson": pearsonr(sims, pairs.scores)[0], "spearman": spearmanr(sims, pairs.scores)[0],
                        "n": len(pairs)}
        sys_all.append(sims)
        gold_all.append(pairs.scores)
    sys_cat, gold_cat = np.concatenate(sys_all), np.concatenate(gold_all)
    sizes = np.array([result[n]["n"] for n in subsets], dtype=float)
    result["all"] = {"pearson": pearsonr(sys_cat, gold_cat)[0], "spearman": spearmanr(sys_cat, gold_cat)[0],
                     "n": int(sizes.sum())}
    for metric in ("pearson", "spearman"):
        values = np.array([result[n][metric] for n in subsets])
        result.setdefault("mean", {})[metric] = float(values.mean())
        result.setdefault("wmean", {})[metric] = float((values * sizes).sum() / sizes.sum())
    return result


def evaluate_sts(encoder, data_dir: str | os.PathLike | None = None, tasks: Iterable[str] | None = None,
                 split: str = "test", batch_size: int = 128, print_table: bool = True,
                 exact_avg: bool = False, show_progress: bool | None = None) -> dict[str, float]:
    """Spearman x 100 of cosine similarity on the STS tasks, SimCSE protocol.

    Args:
        encoder: anything with ``encode(sentences, batch_size=...) -> (n, dim)``.
        data_dir: data root (default ``$CSELAB_DATA_DIR``, else the cache).
        tasks: subset of ``STS12..STS16, STSBenchmark, SICKRelatedness``; default all seven for
            ``split="test"``, and STS-B + SICK-R otherwise (STS12-16 have no dev split).
        split: split of STS-B and SICK-R (``train``/``dev``/``test``).
        batch_size: encoding batch size (SentEval: 128).
        print_table: print SimCSE's table.
        exact_avg: print the exact average instead of SimCSE's mean of rounded values.

    Returns:
        ``{task: spearman x 100, ..., "avg": exact mean over the tasks}`` in SimCSE's order.
    """
    if tasks is None:
        tasks = D.STS_TASKS if split == "test" else ("STSBenchmark", "SICKRelatedness")
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in D.STS_TASKS]
    if unknown or not tasks:
        raise ValueError(f"Unknown or no STS task(s) {unknown or tasks}; choose from {list(D.STS_TASKS)}.")
    tasks = [t for t in D.STS_TASKS if t in tasks]  # SimCSE's column order
    scores = {t: 100.0 * float(sts_correlations(encoder, t, split, data_dir, batch_size, show_progress)["all"]["spearman"])
              for t in tasks}
    scores["avg"] = float(np.mean([scores[t] for t in tasks]))
    if print_table:
        print(format_table(scores, split=split, exact_avg=exact_avg))
    return scores


def format_table(scores: dict[str, float], split: str = "test", exact_avg: bool = False) -> str:
    """SimCSE's result table: one column per task, values to 2 decimals, then ``Avg.``."""
    tasks = [t for t in scores if t != "avg"]
    cells = [f"{scores[t]:.2f}" for t in tasks]
    avg = scores["avg"] if exact_avg else float(np.mean([float(c) for c in cells]))
    names, cells = tasks + ["Avg."], cells + [f"{avg:.2f}"]
    widths = [max(len(n), len(c)) for n, c in zip(names, cells)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    row = lambda items: "|" + "|".join(f" {x:^{w}} " for x, w in zip(items, widths)) + "|"  # noqa: E731
    return "\n".join([f"------ {split} ------", rule, row(names), rule, row(cells), rule])


def spearman_on_pairs(encoder, pairs: D.ScoredPairs, batch_size: int = 128, show_progress: bool | None = None) -> float:
    """Spearman x 100 of cosine similarity on any :class:`cselab.data.ScoredPairs`."""
    return 100.0 * float(spearmanr(cosine_scores(encoder, pairs, batch_size, show_progress), pairs.scores)[0])


def word_overlap_scores(pairs: D.ScoredPairs, idf: bool = True) -> np.ndarray:
    """Cosine of word-count vectors for every pair: the bag-of-words baseline (TF-IDF with ``idf``).

    Words are the lowercased whitespace tokens; ``idf(w) = log(N / n_w)`` over the N distinct
    sentences of ``pairs`` (n_w = how many contain w). No network: the score any encoder must beat
    to have learned more than which words two sentences share.
    """
    from collections import Counter

    texts = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    n_w = Counter(w for t in texts for w in set(t.lower().split()))

    def vector(text: str) -> dict[str, float]:
        return {w: c * (math.log(len(texts) / n_w[w]) if idf else 1.0) for w, c in Counter(text.lower().split()).items()}

    def cosine(u: dict[str, float], v: dict[str, float]) -> float:
        dot = sum(x * v.get(w, 0.0) for w, x in u.items())
        norms = math.sqrt(sum(x * x for x in u.values()) * sum(x * x for x in v.values()))
        return dot / norms if norms else 0.0

    return np.array([cosine(vector(a), vector(b)) for a, b in zip(pairs.sentences1, pairs.sentences2)])


def word_overlap_spearman(pairs: D.ScoredPairs, idf: bool = True) -> float:
    """Spearman x 100 of :func:`word_overlap_scores` (BoW cosine, or TF-IDF cosine with ``idf``)."""
    return 100.0 * float(spearmanr(word_overlap_scores(pairs, idf), pairs.scores)[0])


def alignment_uniformity(encoder, data_dir: str | os.PathLike | None = None, split: str = "dev",
                         pairs: D.ScoredPairs | None = None, threshold: float = 4.0,
                         batch_size: int = 128, show_progress: bool | None = None) -> dict[str, float]:
    """Alignment and uniformity of an encoder as in SimCSE §5 (Wang & Isola 2020).

    Positive pairs are the STS-B pairs with gold score >= ``threshold`` (4.0); uniformity is
    over all distinct sentences of the split. Pass ``pairs`` to use other scored pairs
    (e.g. the course's shipped sample, whose scores are on the same 0-5 scale).

    Returns:
        ``{"alignment": ..., "uniformity": ..., "n_positive": ..., "n_sentences": ...}``.
    """
    pairs = pairs if pairs is not None else D.read_stsb(split, data_dir)
    keep = pairs.scores >= threshold
    if not keep.any():
        raise ValueError(f"No pair in {pairs.source} has a gold score >= {threshold}.")
    sentences = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    everything = encoder.encode(sentences, batch_size=batch_size, show_progress=show_progress)  # (u, dim)
    where = {s: i for i, s in enumerate(sentences)}
    first = [where[s] for s, k in zip(pairs.sentences1, keep) if k]
    second = [where[s] for s, k in zip(pairs.sentences2, keep) if k]
    return {
        "alignment": float(alignment(everything[first], everything[second])),
        "uniformity": float(uniformity(everything)),
        "n_positive": int(keep.sum()),
        "n_sentences": len(sentences),
    }


# ------------------------------------------------------------------ pair similarity and binary classification
class _Columns:
    """Two parallel sentence lists, shaped like ScoredPairs for :func:`_embed_pairs`."""

    def __init__(self, sentences1: list[str], sentences2: list[str]):
        self.sentences1, self.sentences2 = sentences1, sentences2


def _as_columns(pairs) -> _Columns:
    """``[(s1, s2), ...]`` (rows) or ``(s1_list, s2_list)`` (columns) -> validated columns.

    An outer tuple of length 2 is read as columns; anything else as rows. The one shape that fits
    both, a tuple of two 2-tuples, is refused as ambiguous.
    """
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs must be a list of (sentence1, sentence2) pairs or a (sentences1, sentences2) "
                        "tuple of lists, not a single string.")
    if hasattr(pairs, "sentences1") and hasattr(pairs, "sentences2"):
        first, second = list(pairs.sentences1), list(pairs.sentences2)
    elif isinstance(pairs, tuple) and len(pairs) == 2 and not any(isinstance(c, str) for c in pairs):
        if all(isinstance(c, tuple) and len(c) == 2 for c in pairs):
            raise ValueError("Ambiguous pairs: a tuple of two 2-tuples could be two (s1, s2) pairs or the columns "
                             "(sentences1, sentences2). Pass a list of pairs [(s1, s2), ...] or a tuple of two "
                             "lists ([s1, ...], [s2, ...]).")
        first, second = list(pairs[0]), list(pairs[1])
        if len(first) != len(second):
            raise ValueError(f"sentences1 has {len(first)} sentences but sentences2 has {len(second)}: "
                             "the two lists must have one sentence per pair.")
    else:
        rows = list(pairs)
        for i, row in enumerate(rows):
            if isinstance(row, str) or len(row) != 2:
                raise ValueError(f"pair {i} is {row!r}; each pair must be (sentence1, sentence2). Pass a list of "
                                 "pairs, or a tuple of two lists (sentences1, sentences2).")
        first, second = [r[0] for r in rows], [r[1] for r in rows]
    if not first:
        raise ValueError("No sentence pairs: pass at least one (sentence1, sentence2) pair.")
    for name, column in (("sentence1", first), ("sentence2", second)):
        for i, s in enumerate(column):
            if not isinstance(s, str):
                raise TypeError(f"{name} of pair {i} is {type(s).__name__}, not str.")
    return _Columns(first, second)


def similarity(encoder, pairs, batch_size: int = 128, show_progress: bool | None = None) -> np.ndarray:
    """Cosine similarity of each sentence pair, (n,) float64, in input order.

    Args:
        encoder: anything with ``encode(sentences, batch_size=..., show_progress=...) -> (n, dim)``
            (a :class:`cselab.SentenceEncoder` encodes in eval mode, dropout off).
        pairs: a list of ``(sentence1, sentence2)`` pairs, or a tuple of two lists
            ``(sentences1, sentences2)``. A tuple of exactly two 2-tuples is ambiguous and refused.
        batch_size: encoding batch size.

    Each distinct sentence is encoded once. As in :func:`cosine_scores`, a pair of identical
    sentences gets exactly 1.0 and a zero vector gives 0.0 (``nan_to_num``).
    """
    return cosine_scores(encoder, _as_columns(pairs), batch_size, show_progress)


def _sentence_list(sentences, what: str) -> list[str]:
    """A non-empty list of strings, else TypeError/ValueError naming ``what``."""
    if isinstance(sentences, (str, bytes)):
        raise TypeError(f"{what} must be a list of sentences, not a single string.")
    sentences = list(sentences)
    if not sentences:
        raise ValueError(f"{what} is empty: pass at least one sentence.")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"{what}[{i}] is {type(s).__name__}, not str.")
    return sentences


def nearest_neighbours(encoder, queries, pool, k: int = 5, batch_size: int = 128, exclude_query: bool = True,
                       show_progress: bool | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` sentences of ``pool`` closest to each query by cosine: semantic search in a few lines.

    Each distinct sentence of ``queries`` and ``pool`` is encoded once, in one call of
    ``encoder.encode``; the cosines are computed in float64 (a zero vector has cosine 0).

    Args:
        encoder: anything with ``encode(sentences, batch_size=..., show_progress=...) -> (n, dim)``.
        queries: list of query sentences.
        pool: list of candidate sentences (kept as given: a repeated sentence is a repeated candidate).
        k: neighbours per query (fewer when the pool has fewer candidates).
        exclude_query: skip pool entries equal to the query itself (else a query in the pool is
            its own first neighbour).

    Returns:
        One list per query of ``(sentence, cosine)``, highest cosine first; equal cosines keep the
        pool's order.
    """
    queries, pool = _sentence_list(queries, "queries"), _sentence_list(pool, "pool")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    unique = list(dict.fromkeys(queries + pool))
    emb = torch.as_tensor(encoder.encode(unique, batch_size=batch_size, show_progress=show_progress)).double()
    emb = torch.nn.functional.normalize(emb, dim=-1)  # (u, dim); a zero row stays zero
    where = {s: i for i, s in enumerate(unique)}
    cos = (emb[[where[s] for s in queries]] @ emb[[where[s] for s in pool]].T).numpy()  # (n_queries, n_pool)
    found = []
    for query, row in zip(queries, cos):
        order = [j for j in np.argsort(-row, kind="stable") if not (exclude_query and pool[j] == query)]
        found.append([(pool[j], float(row[j])) for j in order[:k]])
    return found


def _binary_labels(labels, n: int | None = None, what: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of 0/1, got shape {y.shape}.")
    if n is not None and len(y) != n:
        raise ValueError(f"{what} has {len(y)} entries but there are {n} pairs: give one label per pair.")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{what} must be 0/1 numbers, got dtype {y.dtype}.")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} must be 0 or 1 (1 = match); entry {i} is {y[i].item()!r}.")
    return y.astype(np.int64)


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("scores contain NaN or infinity.")
    return x, _binary_labels(labels, len(x))


def classification_metrics(scores, labels, threshold: float) -> dict:
    """Binary metrics of ``prediction = scores > threshold`` against 0/1 ``labels`` (1 = positive).

    Returns ``{"threshold", "accuracy", "precision", "recall", "f1", "spearman", "n", "n_positive",
    "tp", "fp", "tn", "fn"}``:

    * accuracy, precision, recall, F1 are **fractions in [0, 1]** (like the reference project's
      printout and sklearn);
    * spearman is **x 100**, like every Spearman that cselab reports for STS
      (``spearman_on_pairs``, ``evaluate_sts``): ``100 * spearmanr(labels, scores)``, the
      reference project's correlation between binary gold labels and cosines. It is NaN
      (no warning) when the labels or the scores are all equal;
    * zero division gives 0 without a warning (sklearn's ``zero_division=0``): precision when
      nothing is predicted positive, recall when no label is positive, F1 when both;
    * F1 = 2 tp / (2 tp + fp + fn); ``n_positive`` = number of labels equal to 1.
    """
    x, y = _scores_and_labels(scores, labels)
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}.")
    pred = x > threshold
    pos = y == 1
    tp, fp = int((pred & pos).sum()), int((pred & ~pos).sum())
    fn, tn = int((~pred & pos).sum()), int((~pred & ~pos).sum())
    n = len(x)
    if np.all(y == y[0]) or np.all(x == x[0]):
        rho = float("nan")
    else:
        rho = 100.0 * float(spearmanr(y, x)[0])
    return {
        "threshold": threshold,
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "spearman": rho,
        "n": n,
        "n_positive": tp + fn,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def best_f1_threshold(scores, labels) -> float:
    """The threshold ``t`` that maximises the F1 of ``scores > t`` on these (dev) labels.

    Candidates: ``min(scores) - 1`` (everything positive), the midpoints between consecutive
    sorted distinct scores, and ``max(scores)`` (nothing positive). Each candidate gives a
    different prediction, so this is an exact search over every possible split of the scores.
    **Ties go to the smallest threshold** (the most pairs predicted positive). Where a midpoint
    rounds up onto the larger of two adjacent floats, the smaller score itself is used (same split).

    Raises ValueError when no label is positive (F1 is 0 for every threshold).
    """
    x, y = _scores_and_labels(scores, labels)
    total_pos = int(y.sum())
    if total_pos == 0:
        raise ValueError("No positive label: F1 is 0 for every threshold, so it cannot choose one.")
    values, inverse = np.unique(x, return_inverse=True)  # ascending distinct scores
    pos_at = np.bincount(inverse, weights=y, minlength=len(values))
    all_at = np.bincount(inverse, minlength=len(values))
    # candidate j < k: predict positive every score >= values[j]; candidate k: nothing positive
    tp = np.append(np.cumsum(pos_at[::-1])[::-1], 0.0).astype(np.int64)
    predicted = np.append(np.cumsum(all_at[::-1])[::-1], 0).astype(np.int64)
    f1 = 2 * tp / (predicted + total_pos)  # 2tp + fp + fn = predicted + actual positives; exact ties stay ties
    j = int(np.argmax(f1))  # first maximum = smallest threshold
    if j == 0:
        return float(values[0] - 1.0)
    if j == len(values):
        return float(values[-1])
    mid = (values[j - 1] + values[j]) / 2
    return float(mid if mid < values[j] else values[j - 1])


def pair_classification(encoder, pairs, labels=None, threshold: float | None = None,
                        dev: D.LabeledPairs | None = None, batch_size: int = 128,
                        show_progress: bool | None = None) -> dict:
    """Paraphrase / text-matching evaluation: cosine of each pair, ``prediction = cos > threshold``.

    This is the reference project's evaluation (reference §9: HarderThenHarder/transformers_tasks,
    fixed ``threshold=0.5``, precision/recall/F1, Spearman between binary labels and cosines), with
    the threshold either fixed or chosen on a dev set.

    Args:
        encoder: anything with ``encode`` (a SentenceEncoder encodes in eval mode).
        pairs: :class:`cselab.data.LabeledPairs` (e.g. ``read_mrpc("test")``), or your own pairs as
            a list of ``(s1, s2)`` or a tuple ``(sentences1, sentences2)``, with ``labels``.
        labels: 0/1 per pair (1 = match); only with plain pairs (LabeledPairs carry their own).
        threshold: a fixed cosine threshold (``0.5`` reproduces the reference project).
        dev: labelled pairs on which to choose the threshold that maximises F1
            (:func:`best_f1_threshold`; ties -> the smallest threshold). Pass ``threshold`` or
            ``dev``, not both and not neither: the threshold is never chosen on the evaluated pairs.
        batch_size: encoding batch size.

    Returns:
        :func:`classification_metrics` on ``pairs`` (accuracy, precision, recall, F1 as fractions in
        [0, 1]; spearman x 100; n, n_positive, tp, fp, tn, fn; threshold), plus ``dev_f1``: the F1 on
        ``dev`` at the chosen threshold (None for a fixed threshold).
    """
    if isinstance(pairs, D.LabeledPairs):
        if labels is not None:
            raise ValueError(f"{pairs.source or 'These LabeledPairs'} already carry labels: do not pass labels too.")
        columns, labels = pairs, pairs.labels
    else:
        if labels is None:
            raise ValueError("Pass labels=[0/1 per pair] with plain sentence pairs (or pass cselab.data.LabeledPairs).")
        columns = _as_columns(pairs)
    y = _binary_labels(labels, len(columns.sentences1))
    if len(columns.sentences2) != len(y):
        raise ValueError(f"sentences2 has {len(columns.sentences2)} sentences but there are {len(y)} labels.")
    if threshold is not None and dev is not None:
        raise ValueError("Pass either threshold= (fixed) or dev= (threshold chosen on dev by F1), not both.")
    dev_f1 = None
    if threshold is None:
        if dev is None:
            raise ValueError("No threshold: pass threshold= (e.g. 0.5, the reference project's fixed value) or "
                             "dev=LabeledPairs to choose the F1-maximising threshold on dev. It is never chosen on "
                             "the evaluated pairs.")
        if not isinstance(dev, D.LabeledPairs):
            raise TypeError(f"dev must be cselab.data.LabeledPairs, got {type(dev).__name__}.")
        dev_scores = cosine_scores(encoder, dev, batch_size, show_progress)
        threshold = best_f1_threshold(dev_scores, dev.labels)
        dev_f1 = classification_metrics(dev_scores, dev.labels, threshold)["f1"]
    result = classification_metrics(cosine_scores(encoder, columns, batch_size, show_progress), y, threshold)
    result["dev_f1"] = dev_f1
    return result


# ------------------------------------------------------------------ NGCSE: relative fitting difficulty (RFD)
RFD_TERMS = ("train_alignment", "train_uniformity", "eval_alignment", "eval_uniformity", "rfd_a", "rfd_u")


def rfd_terms(train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor,
              train_points: torch.Tensor | None = None, eval_points: torch.Tensor | None = None) -> dict[str, float]:
    """One checkpoint's terms of NGCSE's Relative Fitting Difficulty, from embeddings (see :func:`rfd`).

    Alignment ``E ||f(x) - f(y)||^2`` of the positive pairs and uniformity
    ``log E exp(-2 ||f(u) - f(v)||^2)`` of a set of sentences (Wang & Isola 2020, on the unit sphere),
    once on training data and once on evaluation data, and their per-step gaps::

        rfd_a = train_alignment - eval_alignment        rfd_u = train_uniformity - eval_uniformity

    Args:
        train_x, train_y: (n, dim) embeddings of held-out training pairs (anchor, positive).
        eval_x, eval_y: (m, dim) embeddings of evaluation positive pairs (STS-B dev, gold >= 4).
        train_points, eval_points: (p, dim) sentences for the uniformity; default the anchors
            ``train_x`` / ``eval_x``.
    """
    train_points = train_x if train_points is None else train_points
    eval_points = eval_x if eval_points is None else eval_points
    out = {
        "train_alignment": float(alignment(train_x, train_y)),
        "train_uniformity": float(uniformity(train_points)),
        "eval_alignment": float(alignment(eval_x, eval_y)),
        "eval_uniformity": float(uniformity(eval_points)),
    }
    out["rfd_a"] = out["train_alignment"] - out["eval_alignment"]
    out["rfd_u"] = out["train_uniformity"] - out["eval_uniformity"]
    return out


class _RfdData:
    """The sentences of one RFD measurement, chosen as the official ``tools.py`` does (see :func:`rfd`)."""

    def __init__(self, train_pairs, eval_pairs, train_sentences=None, eval_sentences=None, threshold: float = 4.0,
                 low_threshold: float = 1.0, max_pairs: int = 1000, max_sentences: int = 1000):
        if max_pairs < 1 or max_sentences < 2:
            raise ValueError(f"max_pairs must be >= 1 and max_sentences >= 2, got {max_pairs} and {max_sentences}.")
        train = _as_columns(train_pairs)
        self.train_x, self.train_y = train.sentences1[:max_pairs], train.sentences2[:max_pairs]
        # official load_jsonl(mode='single'): the anchors of the rows, capped separately from the pairs
        self.train_points = self._points(train_sentences, train.sentences1, max_sentences, "train_sentences")
        if isinstance(eval_pairs, D.ScoredPairs):
            scores = np.asarray(eval_pairs.scores, dtype=np.float64)
            keep = [i for i, s in enumerate(scores) if s >= threshold][:max_pairs]
            if not keep:
                raise ValueError(f"No evaluation pair in {eval_pairs.source or 'eval_pairs'} has a gold score >= "
                                 f"{threshold}: RFD needs positive pairs.")
            self.eval_x = [eval_pairs.sentences1[i] for i in keep]
            self.eval_y = [eval_pairs.sentences2[i] for i in keep]
            # official load_stsb(mode='all'): both sentences of every clearly similar or dissimilar pair
            extremes = [s for i, g in enumerate(scores) if g >= threshold or g <= low_threshold
                        for s in (eval_pairs.sentences1[i], eval_pairs.sentences2[i])]
            default_points = extremes
        else:
            cols = _as_columns(eval_pairs)
            self.eval_x, self.eval_y = cols.sentences1[:max_pairs], cols.sentences2[:max_pairs]
            default_points = [s for pair in zip(cols.sentences1, cols.sentences2) for s in pair]
        self.eval_points = self._points(eval_sentences, default_points, max_sentences, "eval_sentences")

    @staticmethod
    def _points(given, default, max_sentences: int, what: str) -> list[str]:
        if given is not None:
            if isinstance(given, str):
                raise TypeError(f"{what} must be a list of sentences, not a single string.")
            given = list(given)
            for i, s in enumerate(given):
                if not isinstance(s, str):
                    raise TypeError(f"{what}[{i}] is {type(s).__name__}, not str.")
        points = list(default if given is None else given)[:max_sentences]
        if len(points) < 2:
            raise ValueError(f"{what}: uniformity needs at least 2 sentences, got {len(points)}.")
        return points

    def measure(self, encoder, dropout: bool, seed: int, batch_size: int) -> dict[str, float]:
        paired = lambda x, y: [s for pair in zip(x, y) for s in pair]  # noqa: E731  official: pairs side by side
        train = _embed_all(encoder, paired(self.train_x, self.train_y), dropout, seed, batch_size)
        evals = _embed_all(encoder, paired(self.eval_x, self.eval_y), dropout, seed + 1, batch_size)
        train_points = _embed_all(encoder, self.train_points, dropout, seed + 2, batch_size)
        eval_points = _embed_all(encoder, self.eval_points, dropout, seed + 3, batch_size)
        return rfd_terms(train[0::2], train[1::2], evals[0::2], evals[1::2], train_points, eval_points)


def _embed_all(encoder, sentences: list[str], dropout: bool, seed: int, batch_size: int) -> torch.Tensor:
    """Every occurrence embedded (a repeated sentence gets its own dropout mask). (n, dim) float32 CPU.

    ``dropout=True`` runs the encoder in training mode, as the official ``tools.py:load_model``
    (``model.train()``); the global RNG is left untouched (``fork_rng``), so measuring during
    training does not change the run, and the draw is fixed by ``seed``.
    """
    if not dropout:
        return encoder.encode(sentences, batch_size=batch_size, show_progress=False, normalize=False)
    if not all(hasattr(encoder, a) for a in ("tokenize", "collate", "train")):
        raise TypeError(f"dropout=True needs a cselab SentenceEncoder (tokenize/collate/forward), got "
                        f"{type(encoder).__name__}; pass dropout=False to use its encode().")
    ids = encoder.tokenize(sentences)["input_ids"]
    device = encoder.device
    was_training = encoder.training
    out = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        encoder.train()
        try:
            with torch.no_grad():
                for start in range(0, len(ids), batch_size):
                    out.append(encoder(**encoder.collate(ids[start:start + batch_size])).float().cpu())
        finally:
            encoder.train(was_training)
    return torch.cat(out)


def rfd(encoders, train_pairs, eval_pairs, *, train_sentences=None, eval_sentences=None, threshold: float = 4.0,
        low_threshold: float = 1.0, max_pairs: int = 1000, max_sentences: int = 1000, dropout: bool = True,
        seed: int = 0, batch_size: int = 128) -> dict:
    """NGCSE's Relative Fitting Difficulty (RFD) of training data w.r.t. evaluation data.

    Source. The paper (Li et al., AAAI-24, arXiv 2309.06453 v2) introduces RFD "to measure the
    complexity of the similarity pattern" (v1 called it Fitting Difficulty Increment, FDI: "the
    fitting difficulty gap between the evaluation dataset and the held-out training dataset").
    The paper's equation was not available to us; the definition below is the official code's,
    BDBC-KG-NLP/NGCSE @921ff50: ``plot.py:collect_rfd`` computes::

        RFD_u = mean over logged steps >= 125 of (train_uniformity - eval_uniformity)
        RFD_a = mean over logged steps >= 125 of (train_alignment  - eval_alignment)

    from the logs ``train_alignment_and_uniformity`` / ``eval_alignment_and_uniformity`` written
    by ``tools.py:cal_alignment_and_uniformity`` for every saved checkpoint (``align_loss`` /
    ``uniform_loss`` = Wang & Isola, alpha = 2, t = 2), with:

    - train: 1000 rows of the held-out 10 % of the training data; alignment over
      (``sentence``, positive) pairs (the positive is the sentence itself for dropout,
      ``'5'`` for NLI/STS data, ``'4'`` for STS_HT); uniformity over the anchors (unsupervised
      data) or anchors + all their levels (hybrid/supervised data), the first 1000 sentences;
    - eval: STS-B dev; alignment over the first 1000 pairs with gold >= 4; uniformity over both
      sentences of every pair with gold >= 4 or <= 1, the first 1000 sentences;
    - embeddings: the raw pooled vector (``sent_emb=True``, no head), with the model in
      **training mode** (dropout on), so a dropout pair (x, x) is not trivially aligned.

    Positive RFD: the training pairs are harder to fit than the evaluation pairs. The official
    logs give RFD_a = +0.074, RFD_u = +0.209 for supervised SimCSE on NLI (``data/nli/sup``) and
    RFD_a = -0.149, RFD_u = -0.265 for dropout on Wiki (``data/wiki/dropout``).

    Our choices: ``encoders`` is one encoder (the gap at that checkpoint) or a sequence of
    checkpoints (their mean, i.e. the RFD when every checkpoint after the start is passed); during
    training use :func:`rfd_tracker` with the trainer's ``extra_metrics`` and average with
    :func:`rfd_from_history`. Dropout masks are seeded (``seed``); plain pairs as ``eval_pairs``
    are all positives and their uniformity set is both sides of every pair.

    Args:
        encoders: a :class:`cselab.SentenceEncoder` (e.g. ``method.eval_encoder(encoder)``) or a list of them.
        train_pairs: held-out training pairs (anchor, positive): a list of ``(s1, s2)``, a tuple of
            two lists, or ScoredPairs/LabeledPairs.
        eval_pairs: :class:`cselab.data.ScoredPairs` (STS-B dev: filtered by gold score) or plain pairs.
        train_sentences, eval_sentences: the uniformity sets (defaults above).
        threshold, low_threshold: gold scores of evaluation positives (>= 4) and of the clearly
            dissimilar pairs that join the uniformity set (<= 1).
        max_pairs, max_sentences: the official caps (1000 each).
        dropout: embed in training mode (official); False uses ``encode`` (eval mode).
        seed: seed of the dropout masks.
        batch_size: sentences per forward pass.

    Returns:
        ``{"rfd_a", "rfd_u", "n_checkpoints", "checkpoints": [rfd_terms of each]}``.
    """
    data = _RfdData(train_pairs, eval_pairs, train_sentences, eval_sentences, threshold, low_threshold,
                    max_pairs, max_sentences)
    many = isinstance(encoders, (list, tuple))
    encoders = list(encoders) if many else [encoders]
    if not encoders:
        raise ValueError("rfd needs at least one encoder (checkpoint).")
    terms = [data.measure(enc, dropout, seed, batch_size) for enc in encoders]
    return {"rfd_a": float(np.mean([t["rfd_a"] for t in terms])),
            "rfd_u": float(np.mean([t["rfd_u"] for t in terms])),
            "n_checkpoints": len(terms), "checkpoints": terms}


def rfd_training_data(rows, positive: str | None = None) -> dict[str, list]:
    """RFD's training side from graded-group rows (:func:`cselab.data.read_graded_groups`), as official ``tools.py``.

    Pairs (anchor, positive): an *other* row is its sentence twice (dropout, unsupervised data); a
    generated group pairs ``sent0`` with ``positive`` (default ``level5``: ``'5'`` for NLI/STS data;
    pass ``"level4"`` for STS_HT, whose InfoNCE positive is ``'4'``). Uniformity sentences: the
    anchors when every row is *other*, else every anchor followed by its levels (hybrid and
    supervised data). Returns ``{"train_pairs", "train_sentences"}``, keyword arguments of
    :func:`rfd` and :func:`rfd_tracker`::

        rfd(encoder, eval_pairs=read_stsb("dev"), **rfd_training_data(read_graded_groups("nli.csv")))
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rfd_training_data needs at least one row.")
    positive = positive or "level5"
    levels = D.graded_levels(rows)
    pairs, sentences = [], []
    for i, row in enumerate(rows):
        filled = [row[c] for c in levels if row.get(c) is not None]
        if filled and row.get(positive) is None:
            raise ValueError(f"row {i}: the positive column {positive!r} is empty (the row fills {levels}).")
        pairs.append((row["sent0"], row[positive] if filled else row["sent0"]))
        sentences += [row["sent0"], *filled]
    return {"train_pairs": pairs, "train_sentences": sentences}


def rfd_tracker(train_pairs, eval_pairs, **kwargs):
    """An ``extra_metrics`` callable for :func:`cselab.train.train` that logs RFD's terms at every evaluation.

    ``train(config, out, extra_metrics=rfd_tracker(held_out_pairs, read_stsb("dev")))`` adds the
    columns of :data:`RFD_TERMS` (train/eval alignment and uniformity, and the per-step gaps
    ``rfd_a``/``rfd_u``) to the metrics; :func:`rfd_from_history` then averages them into RFD.
    Keyword arguments are those of :func:`rfd` (except ``encoders``); the sentences are chosen once.
    """
    dropout = kwargs.pop("dropout", True)
    seed = kwargs.pop("seed", 0)
    batch_size = kwargs.pop("batch_size", 128)
    data = _RfdData(train_pairs, eval_pairs, **kwargs)

    def track(encoder) -> dict[str, float]:
        return data.measure(encoder, dropout, seed, batch_size)

    return track


def rfd_from_history(history, start_step: int = 1) -> dict[str, float]:
    """RFD from a run's logged terms: the mean over steps >= ``start_step`` of train - eval (official ``collect_rfd``).

    ``history``: rows with ``step`` and the :data:`RFD_TERMS` columns (``TrainResult.history`` or
    the lines of ``metrics.jsonl`` of a run with :func:`rfd_tracker`); rows without them are
    skipped. ``start_step=1`` leaves out the starting model (step 0), like the official 125 with
    evaluations every 125 steps.
    """
    rows = [r for r in history if r.get("step", -1) >= start_step
            and all(k in r for k in ("train_alignment", "eval_alignment", "train_uniformity", "eval_uniformity"))]
    if not rows:
        raise ValueError(f"No logged RFD terms at step >= {start_step}: train with extra_metrics=rfd_tracker(...).")
    return {
        "rfd_a": float(np.mean([r["train_alignment"] - r["eval_alignment"] for r in rows])),
        "rfd_u": float(np.mean([r["train_uniformity"] - r["eval_uniformity"] for r in rows])),
        "n_steps": len(rows),
    }
