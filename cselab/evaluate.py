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


def pair_columns(pairs) -> _Columns:
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
    return cosine_scores(encoder, pair_columns(pairs), batch_size, show_progress)


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
        columns = pair_columns(pairs)
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
