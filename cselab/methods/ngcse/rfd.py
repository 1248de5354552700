"""NGCSE's Relative Fitting Difficulty (RFD): how much harder the training pairs are to fit than STS-B dev's.

RFD_a and RFD_u are the gaps in alignment and uniformity (Wang & Isola) between the training
positives and STS-B dev's similar pairs, averaged over checkpoints (NGCSE §4, official ``tools.py``).
"""
from __future__ import annotations

import numpy as np
import torch

from ... import data as D
from ...evaluate import pair_columns
from ...losses import alignment, uniformity
from .groups import graded_levels

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
        train = pair_columns(train_pairs)
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
            cols = pair_columns(eval_pairs)
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
    levels = graded_levels(rows)
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
