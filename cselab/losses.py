"""Contrastive losses and embedding-quality measures, computed from embeddings.

- :func:`info_nce`: SimCSE's in-batch InfoNCE (paper Eq. 1 and Eq. 8), with an optional queue of
  shared negatives (ESimCSE), the symmetric NT-Xent form (SimCLR, DeCLUTR), and the decoupled
  form (DCL, Yeh et al. 2021).
- :func:`replaced_token_detection_loss`: DiffCSE's conditional ELECTRA objective (per-token 2-way CE).
- :func:`hierarchical_triplet_loss`: NGCSE's hierarchical triplet (HT) loss over graded levels
  (Li et al. AAAI-24, official ``_ng_forward`` ``loss3``; reference §8.3).
- :func:`alignment` and :func:`uniformity`: Wang & Isola (2020), Eq. 4-5 / their reference code.

Every function takes embeddings, not models, and documents the shapes it expects.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dim() != 2:
        raise ValueError(f"{name_a} must be 2-D (batch, dim), got shape {tuple(a.shape)}.")
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (batch, dim); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine similarities. a: (n, dim), b: (m, dim) -> (n, m)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def _check_info_nce(anchors, positives, temperature, negatives, hard_negative_weight, symmetric, reduction,
                    queue) -> None:
    """The argument checks of :func:`info_nce`: each error names the argument and the fix."""
    _check_pair("anchors", anchors, "positives", positives)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    if hard_negative_weight != hard_negative_weight or hard_negative_weight == float("inf"):
        raise ValueError(f"hard_negative_weight must be a finite number or -inf (alpha = 0), got {hard_negative_weight}.")
    if negatives is not None:
        _check_pair("anchors", anchors, "negatives", negatives)
        if symmetric:
            raise ValueError("negatives are not defined for the symmetric (NT-Xent) form; use symmetric=False.")
    elif hard_negative_weight != 0.0:
        raise ValueError("hard_negative_weight needs negatives: pass negatives=... or leave the weight at 0.")
    if queue is not None:
        if queue.dim() != 2 or queue.shape[1] != anchors.shape[1]:
            raise ValueError(f"queue must be (M, dim) with dim = {anchors.shape[1]} like the anchors; "
                             f"got shape {tuple(queue.shape)}.")
        if symmetric:
            raise ValueError("a queue is not defined for the symmetric (NT-Xent) form; use symmetric=False.")


def in_batch_logits(anchors: torch.Tensor, positives: torch.Tensor, temperature: float,
                  negatives: torch.Tensor | None = None, hard_negative_weight: float = 0.0,
                  queue: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCSE's one-directional logits and targets (Eq. 1; Eq. 8 with ``negatives``; ESimCSE's queue).

    Columns: the B positives, then the B hard negatives (``hard_negative_weight`` = log alpha added
    to each row's own one, ``s[i, B + i]``), then the M queue entries. Row ``i`` targets column ``i``.
    Returns ``(logits (B, B [+ B] [+ M]), targets (B,))``.
    """
    logits = cosine_matrix(anchors, positives) / temperature  # (B, B)
    if negatives is not None:
        hard = cosine_matrix(anchors, negatives) / temperature  # (B, B)
        if hard_negative_weight != 0.0:
            # add log(alpha) to the diagonal only (-inf, alpha = 0, must not leak 0 * inf = NaN elsewhere)
            hard = hard + torch.zeros_like(hard).fill_diagonal_(hard_negative_weight)
        logits = torch.cat([logits, hard], dim=1)  # (B, 2B)
    if queue is not None and queue.shape[0] > 0:
        logits = torch.cat([logits, cosine_matrix(anchors, queue) / temperature], dim=1)  # (B, ... + M)
    return logits, torch.arange(anchors.shape[0], device=anchors.device)


def nt_xent_logits(anchors: torch.Tensor, positives: torch.Tensor,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent's logits and targets (SimCLR; DeCLUTR): the 2B vectors ``[anchors; positives]``
    against each other, self-similarity masked out, each row targeting its partner (2B - 2
    negatives per row). Returns ``(logits (2B, 2B), targets (2B,))``."""
    batch = anchors.shape[0]
    z = torch.cat([anchors, positives], dim=0)  # (2B, dim)
    logits = cosine_matrix(z, z) / temperature  # (2B, 2B)
    self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a vector is not its own negative
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(0, batch)]).to(z.device)
    return logits, targets


def decoupled_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DCL (Yeh et al. 2021), per row: ``-s_it + logsumexp_{j != t} s_ij`` with ``t`` the target,
    i.e. the positive left out of the denominator. Not a cross-entropy: it can be negative. (rows,)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    others = logits.clone()
    others[rows, targets] = float("-inf")
    return torch.logsumexp(others, dim=1) - logits[rows, targets]


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    temperature: float = 0.05,
    negatives: torch.Tensor | None = None,
    hard_negative_weight: float = 0.0,
    symmetric: bool = False,
    decoupled: bool = False,
    reduction: str = "mean",
    queue: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE over cosine similarities with in-batch negatives: logits, then cross-entropy (or DCL).

    Default (SimCSE, paper Eq. 1; official ``cl_forward``): row ``i`` scores anchor ``i``
    against every positive ``j``; the target is ``j = i``, so each row has B - 1 in-batch
    negatives and the loss is one-directional::

        s_ij = cos(anchors_i, positives_j) / temperature            # (B, B)
        loss_i = -log softmax_j(s_ij)[i]

    ``negatives`` (supervised SimCSE, Eq. 8): the hard negatives of *every* row join each
    row's denominator, (B, 2B), and ``hard_negative_weight`` (= log alpha) is added to the
    logit of the row's *own* hard negative only. ``queue`` (ESimCSE's momentum queue, reference
    §5.2; MoCo): M more negatives shared by every row, (B, B + M); pass them detached.
    See :func:`in_batch_logits`.

    ``symmetric=True`` (NT-Xent of SimCLR / DeCLUTR, :func:`nt_xent_logits`): 2B rows, each
    targeting its partner, 2B - 2 negatives per row.

    ``decoupled=True`` (DCL, :func:`decoupled_loss`): the positive is removed from the
    denominator. Combines with either form above.

    Args:
        anchors: (B, dim).
        positives: (B, dim); positives[i] is the positive of anchors[i].
        temperature: tau > 0 (SimCSE: 0.05).
        negatives: optional (B, dim) hard negatives; negatives[i] belongs to anchors[i].
        hard_negative_weight: log alpha added to each row's own hard-negative logit.
        symmetric: NT-Xent over both directions.
        decoupled: drop the positive from the denominator.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (one loss per row: B rows, 2B if symmetric).
        queue: optional (M, dim) negatives for every row; M = 0 adds nothing.

    Returns:
        The loss, a scalar for ``reduction="mean"``.
    """
    _check_info_nce(anchors, positives, temperature, negatives, hard_negative_weight, symmetric, reduction, queue)
    if symmetric:
        logits, targets = nt_xent_logits(anchors, positives, temperature)
    else:
        logits, targets = in_batch_logits(anchors, positives, temperature, negatives, hard_negative_weight, queue)
    if decoupled:
        if logits.shape[1] - (2 if symmetric else 1) < 1:  # NT-Xent's own column is masked out too
            raise ValueError("the decoupled loss needs at least one negative per row: use a batch of 2 or more.")
        losses = decoupled_loss(logits, targets)
    else:
        losses = F.cross_entropy(logits, targets, reduction="none")
    return losses.mean() if reduction == "mean" else losses


def hierarchical_triplet_loss(
    anchor: torch.Tensor,
    levels: torch.Tensor,
    margins: tuple[float, ...] | list[float] = (5e-3, 5e-2),
) -> torch.Tensor:
    """NGCSE's hierarchical triplet (HT) loss (Li et al. AAAI-24; official ``_ng_forward`` ``loss3``, reference §8.3).

    Each anchor comes with K - 1 graded sentences, most similar first (NGCSE's STS pattern:
    ``'5'`` positive, ``'4'`` intermediate, ``'3'`` negative). With ``s_k = cos(anchor, level_k)``::

        L = 1/(K-2) * sum_{k=1}^{K-2} mean_i ReLU(s_{k+1} - s_k + m_{k-1})

    i.e. every adjacent pair of levels must keep the order ``s_k >= s_{k+1} + m_{k-1}``. The
    margins are indexed 0-based per adjacent pair; when ``margins`` is shorter than K - 2 its
    last value is reused (official: ``margins[0][idx if idx < len else len - 1]``), and extra
    values are ignored. For K = 4: ``L = [ReLU(s_2 - s_1 + m_0) + ReLU(s_3 - s_2 + m_1)] / 2``.

    Args:
        anchor: (n, dim).
        levels: (n, K - 1, dim), ``levels[:, 0]`` the most similar to the anchor; K >= 3.
        margins: non-negative finite margins (NGCSE Wiki.STS_HT: (5e-3, 5e-2); NLI.STS_HT: (5e-3, 1e-1)).

    Returns:
        A scalar tensor.
    """
    if anchor.dim() != 2:
        raise ValueError(f"anchor must be 2-D (n, dim), got shape {tuple(anchor.shape)}.")
    if levels.dim() != 3:
        raise ValueError(f"levels must be 3-D (n, K-1, dim) with the most similar level first, "
                         f"got shape {tuple(levels.shape)}.")
    if levels.shape[0] != anchor.shape[0] or levels.shape[2] != anchor.shape[1]:
        raise ValueError(f"levels {tuple(levels.shape)} must be (n, K-1, dim) with (n, dim) = "
                         f"{tuple(anchor.shape)} like the anchor.")
    if anchor.shape[0] == 0:
        raise ValueError("hierarchical_triplet_loss needs at least one anchor (n >= 1).")
    if levels.shape[1] < 2:
        raise ValueError(f"the hierarchical triplet loss needs K >= 3 sentences per group (anchor + at least 2 "
                         f"graded levels) to have one adjacent pair of levels; got K - 1 = {levels.shape[1]} level(s).")
    margins = [float(m) for m in margins]
    if not margins:
        raise ValueError("margins is empty: give at least one margin, e.g. (5e-3, 5e-2).")
    bad = [m for m in margins if not (math.isfinite(m) and m >= 0.0)]
    if bad:
        raise ValueError(f"margins must be finite and >= 0 (a negative margin rewards an inverted hierarchy); "
                         f"got {margins}.")
    sims = F.cosine_similarity(anchor.unsqueeze(1), levels, dim=-1)  # (n, K-1): s_1 .. s_{K-1}
    pairs = levels.shape[1] - 1  # K - 2 adjacent pairs of levels
    margin = torch.tensor([margins[min(k, len(margins) - 1)] for k in range(pairs)],
                          dtype=sims.dtype, device=sims.device)  # (K-2,)
    # column k: the (k+1)-th level must stay below the k-th by the margin
    violations = F.relu(sims[:, 1:] - sims[:, :-1] + margin)  # (n, K-2)
    return violations.mean(dim=0).sum() / pairs  # mean over anchors, then average over the K-2 pairs


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2, normalize: bool = True) -> torch.Tensor:
    """Alignment of positive pairs, E ||f(x) - f(y)||^alpha (Wang & Isola 2020, Eq. 4). Lower is better.

    Args:
        x, y: (n, dim); row i of x and y form a positive pair.
        alpha: exponent (the paper uses 2).
        normalize: L2-normalise the rows first (the measure is defined on the unit sphere).
    """
    _check_pair("x", x, "y", y)
    if normalize:
        x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2, normalize: bool = True) -> torch.Tensor:
    """Uniformity, log E exp(-t ||f(x) - f(y)||^2) over distinct pairs (Wang & Isola 2020, Eq. 5).

    Lower is better; on the unit sphere it is at most 0 (all points equal, collapse).

    Args:
        x: (n, dim) with n >= 2.
        t: the Gaussian potential's scale (the paper uses 2).
        normalize: L2-normalise the rows first.
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"uniformity needs a (n, dim) tensor with n >= 2, got shape {tuple(x.shape)}.")
    if normalize:
        x = F.normalize(x, dim=-1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def dispersive(z: torch.Tensor, temperature: float = 0.5, normalize: bool = False) -> torch.Tensor:
    """The dispersive loss, InfoNCE-L2 variant (Wang & He 2025, "Diffuse and Disperse", §3, Table 1).

    InfoNCE without its positive term: only the log-sum-exp over pairs remains, a batch-dependent
    repulsion ``log E_{i,j} exp(-||z_i - z_j||^2 / tau)`` over **all** n^2 pairs of the batch (the
    diagonal included, each contributing exp(0) = 1). On the unit sphere with ``tau = 1/t`` it is
    Wang & Isola's uniformity up to those diagonal terms:
    ``exp(L) = (n (n - 1) exp(uniformity(z, t)) + n) / n^2``.

    Args:
        z: (n, dim) representations, n >= 1.
        temperature: tau > 0 (the paper's default is 0.5 on raw, unnormalised features).
        normalize: L2-normalise the rows first.

    Returns:
        A scalar tensor; lower = more spread out. Its minimum, log(1 / n), is reached when all
        pairs are infinitely far apart.
    """
    if z.dim() != 2 or z.shape[0] < 1:
        raise ValueError(f"dispersive needs a (n, dim) tensor with n >= 1, got shape {tuple(z.shape)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if normalize:
        z = F.normalize(z, dim=-1)
    squares = z.pow(2).sum(-1)  # (n,)
    distances = (squares[:, None] + squares[None, :] - 2 * z @ z.T).clamp_min(0)  # (n, n) ||z_i - z_j||^2
    return torch.logsumexp(-distances.flatten() / temperature, dim=0) - 2 * math.log(z.shape[0])


def replaced_token_detection_loss(logits: torch.Tensor, replaced: torch.Tensor, attention_mask: torch.Tensor,
                                  include_padding: bool = True) -> torch.Tensor:
    """ELECTRA-style replaced-token detection, DiffCSE's auxiliary loss (DiffCSE §3, Eq. 2).

    A two-way cross-entropy per position: did the generator replace this token (1) or not (0)?

    Args:
        logits: (n, seq, 2) discriminator outputs.
        replaced: (n, seq) 0/1 labels; the official code sets them to
            ``(generated != original) * attention_mask``, so padding is labelled 0.
        attention_mask: (n, seq), 1 for real tokens.
        include_padding: True averages over **all** ``n * seq`` positions, padding included
            (official ``cl_forward``: ``CrossEntropyLoss`` over ``view(-1, 2)``, reference §6.1);
            False averages over real tokens only.

    Returns:
        A scalar tensor.
    """
    if logits.dim() != 3 or logits.shape[-1] != 2:
        raise ValueError(f"logits must be (n, seq, 2), got shape {tuple(logits.shape)}.")
    if replaced.shape != logits.shape[:2] or attention_mask.shape != logits.shape[:2]:
        raise ValueError(f"replaced {tuple(replaced.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         f"must both be (n, seq) = {tuple(logits.shape[:2])}.")
    per_token = F.cross_entropy(logits.reshape(-1, 2), replaced.reshape(-1).long(), reduction="none")  # (n*seq,)
    if include_padding:
        return per_token.mean()
    mask = attention_mask.reshape(-1).to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)
