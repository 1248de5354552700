"""STS evaluation with SimCSE's SentEval protocol (SimCSE App. B; reference §10).

- similarity = cosine of the two sentence embeddings, no regressor, for all 7 tasks;
- metric = Spearman correlation x 100;
- STS12-16 in the "all" setting: one correlation over the concatenation of the year's
  sub-datasets (``mean`` and ``wmean`` are computed too, for comparison);
- STS-B and SICK-R on the requested split (``test`` for the paper's tables).

The printed table has SimCSE's columns; like SimCSE's ``evaluation.py`` its ``Avg.``
is the mean of the values rounded to 2 decimals (``exact_avg=True`` prints the exact mean,
which is what the returned dictionary always holds).
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from . import data as D
from .losses import alignment, uniformity

def _embed_pairs(encoder, pairs: D.ScoredPairs, batch_size: int, show_progress: bool | None = None):
    """Encode each distinct sentence once. Returns two (n, dim) tensors."""
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    emb = encoder.encode(unique, batch_size=batch_size, show_progress=show_progress)  # (u, dim)
    where = {s: i for i, s in enumerate(unique)}
    return emb[[where[s] for s in pairs.sentences1]], emb[[where[s] for s in pairs.sentences2]]


def cosine_scores(encoder, pairs: D.ScoredPairs, batch_size: int = 128, show_progress: bool | None = None) -> np.ndarray:
    """Cosine similarity of each pair, (n,) float64 (SentEval: ``nan_to_num`` of the cosine)."""
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
