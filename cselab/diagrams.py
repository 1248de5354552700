"""One diagram per method: how it builds its views from the input, which encoder reads them, which loss.

Every method of :data:`cselab.methods.METHOD_FIELDS` is a small table (:data:`DIAGRAMS`): boxes
placed on a grid (column = stage: input, views, encoder, embeddings, loss) and the arrows between
them. One function draws any table with matplotlib, so a new method is a new table, not new
drawing code::

    cselab.diagrams.method_diagram("unsup-simcse")     # a new figure; or pass ax=...

The tables follow the papers and the official code as summarised in ``cselab/methods/*.py``;
each :class:`Diagram` names its source (paper section or figure).
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

# box kind -> (face colour, legend text)
KINDS: dict[str, tuple[str, str]] = {
    "input": ("#e0e0e0", "input"),
    "view": ("#cfe2f3", "views"),
    "encoder": ("#fce5cd", "encoder / network"),
    "embedding": ("#d9ead3", "embeddings"),
    "loss": ("#f4cccc", "loss"),
}
BOX_W, BOX_H = 0.86, 0.66  # box size in grid units (columns are 1 apart, rows 1 apart)


@dataclass(frozen=True)
class Box:
    """One box: ``label`` centred at grid position (``col``, ``row``); row 0 is the top."""

    key: str
    label: str
    col: float
    row: float
    kind: str


@dataclass(frozen=True)
class Diagram:
    """A method as boxes and arrows. ``edges``: ``(from_key, to_key, label)``; ``source`` cites the paper."""

    title: str
    source: str
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str, str], ...]


def _diagram(title: str, source: str, boxes: list[tuple], edges: list[tuple]) -> Diagram:
    """Build a :class:`Diagram` from plain tuples; an edge without a label gets ``""``."""
    return Diagram(title, source, tuple(Box(*b) for b in boxes),
                   tuple((e[0], e[1], e[2] if len(e) > 2 else "") for e in edges))


DIAGRAMS: dict[str, Diagram] = {
    "unsup-simcse": _diagram(
        "Unsupervised SimCSE", "Gao et al. 2021, §3, Eq. 1, Figure 1(a)",
        [("x", "sentence x_i\n(batch of B)", 0, 1, "input"),
         ("v1", "copy 1: x_i", 1, 0.5, "view"),
         ("v2", "copy 2: x_i\n(the same sentence)", 1, 1.5, "view"),
         ("f", "shared encoder f\none pass over [x; x]\ndropout masks m, m'", 2, 1, "encoder"),
         ("z1", "z_i\n(dropout mask m)", 3, 0.5, "embedding"),
         ("z2", "z_i+\n(dropout mask m')", 3, 1.5, "embedding"),
         ("l", "InfoNCE (Eq. 1), τ 0.05\npositive: z_i+\nin-batch negatives:\nz_j+ of the others", 4, 1, "loss")],
        [("x", "v1"), ("x", "v2"), ("v1", "f"), ("v2", "f"), ("f", "z1"), ("f", "z2"),
         ("z1", "l"), ("z2", "l")]),
    "sup-simcse": _diagram(
        "Supervised SimCSE", "Gao et al. 2021, §4, Eq. 8, Figure 1(b)",
        [("x", "NLI triplet\n(labelled data)", 0, 1, "input"),
         ("p", "premise x_i", 1, 0, "view"),
         ("e", "entailment x_i+", 1, 1, "view"),
         ("c", "contradiction x_i-", 1, 2, "view"),
         ("f", "shared encoder f\none pass over 3B", 2, 1, "encoder"),
         ("h", "h_i (anchor)", 3, 0, "embedding"),
         ("hp", "h_i+ (positive)", 3, 1, "embedding"),
         ("hn", "h_i- (hard negative)", 3, 2, "embedding"),
         ("l", "InfoNCE (Eq. 8), τ 0.05\nnegatives: all h_j+ and\nall h_j- of the batch\n"
               "(own h_i- weighted α)", 4, 1, "loss")],
        [("x", "p"), ("x", "e"), ("x", "c"), ("p", "f"), ("e", "f"), ("c", "f"),
         ("f", "h"), ("f", "hp"), ("f", "hn"), ("h", "l"), ("hp", "l"), ("hn", "l")]),
    "esimcse": _diagram(
        "ESimCSE", "Wu et al. 2022, §3.1 (word repetition), §3.2 (momentum contrast)",
        [("x", "sentence x_i", 0, 1, "input"),
         ("v2", "word repetition x_i+:\nsome subwords doubled\n(dup_rate 0.32)", 1, 0, "view"),
         ("v1", "x_i (original)", 1, 1, "view"),
         ("f", "encoder f\n(dropout on)", 2, 0.5, "encoder"),
         ("m", "momentum encoder\nEMA of f (m 0.995)\ndropout off", 2, 2, "encoder"),
         ("z", "z_i, z_i+", 3, 0.5, "embedding"),
         ("q", "queue: momentum\nembeddings of past\nbatches (FIFO, 160)", 3, 2, "embedding"),
         ("l", "InfoNCE, τ 0.05\npositive: z_i+\nnegatives: in-batch\nz_j+ and the queue", 4, 1, "loss")],
        [("x", "v1"), ("x", "v2"), ("v1", "f"), ("v2", "f"), ("v1", "m", "x_i"), ("f", "m", "EMA"),
         ("f", "z"), ("m", "q"), ("z", "l"), ("q", "l", "negatives")]),
    "diffcse": _diagram(
        "DiffCSE", "Chuang et al. 2022, §3, Figure 1",
        [("x", "sentence x", 0, 1, "input"),
         ("v", "x twice\n(two dropout views)", 1, 0, "view"),
         ("mk", "masked copy of each\nview (30 % of tokens)", 1, 2, "view"),
         ("f", "sentence encoder f", 2, 0, "encoder"),
         ("g", "generator G\n(frozen MLM)\nfills the masks", 2, 2, "encoder"),
         ("h", "sentence\nembedding h", 3, 0, "embedding"),
         ("x2", "edited sentence x''\n(some tokens\nreplaced)", 3, 2, "view"),
         ("lc", "SimCSE loss\n(InfoNCE, in-batch\nnegatives)", 4, 0, "loss"),
         ("d", "discriminator D\nconditioned on h\n(h replaces the\n[CLS] input)", 4, 2, "encoder"),
         ("lr", "RTD loss: each token\nreplaced or original?", 5, 2, "loss"),
         ("t", "total loss\nSimCSE + λ RTD\n(λ 0.005)", 5, 0, "loss")],
        [("x", "v"), ("v", "mk", "mask"), ("v", "f"), ("mk", "g"), ("f", "h"), ("g", "x2"), ("h", "lc"),
         ("h", "d", "condition"), ("x2", "d"), ("d", "lr"), ("lc", "t"), ("lr", "t")]),
    "declutr": _diagram(
        "DeCLUTR", "Giorgi et al. 2021, §2 (span sampling), §2.2 (loss)",
        [("doc", "one document\n(long text)", 0, 1.2, "input"),
         ("a", "anchor span\n(long, 32-512 tokens)\nMLM-masked (15 %)", 1, 0.4, "view"),
         ("p", "positive spans nearby\n(short; adjacent,\noverlapping or inside)", 1, 2, "view"),
         ("f", "shared encoder f\n(mean pooling)", 2, 1.2, "encoder"),
         ("t", "masked-token logits\n(MLM head)", 3, 0, "embedding"),
         ("e", "anchor embedding e_i", 3, 1.2, "embedding"),
         ("pe", "positive embedding\n(mean of its spans)", 3, 2.4, "embedding"),
         ("lm", "MLM loss on the\nmasked anchor tokens\n(added 1 : 1)", 4, 0, "loss"),
         ("l", "InfoNCE (NT-Xent)\nτ 0.05; negatives:\nthe other anchors\nand positives", 4, 1.8, "loss")],
        [("doc", "a"), ("doc", "p"), ("a", "f"), ("p", "f"), ("f", "t"), ("f", "e"), ("f", "pe"),
         ("t", "lm"), ("e", "l"), ("pe", "l")]),
    "ngcse": _diagram(
        "NGCSE", "Li et al., AAAI-24, arXiv 2309.06453; hierarchical triplet loss",
        [("s", "unlabelled\nsentence s", 0, 1.5, "input"),
         ("llm", "LLM prompt\n(STS pattern)", 1, 0.5, "encoder"),
         ("lv", "graded levels\n5: paraphrase s_p\n4: intermediate s_m\n3: dissimilar s_n",
          2, 0.5, "view"),
         ("o", "unlabelled rows:\ns twice (dropout)", 2, 2.5, "view"),
         ("f", "shared encoder f", 3, 1.5, "encoder"),
         ("z", "embeddings of s\nand of its levels", 4, 1.5, "embedding"),
         ("ht", "hierarchical triplet loss\ncos(s, 5) > cos(s, 4)\n> cos(s, 3), by margins", 5, 0.5, "loss"),
         ("l", "InfoNCE, τ 0.05\npositive: level 4\nin-batch negatives", 5, 2.5, "loss"),
         ("t", "total loss\nInfoNCE + β HT", 6, 1.5, "loss")],
        [("s", "llm"), ("llm", "lv"), ("s", "o"), ("lv", "f"), ("o", "f"), ("f", "z"),
         ("z", "ht"), ("z", "l"), ("ht", "t"), ("l", "t")]),
}


def diagram_spec(method: str) -> Diagram:
    """The table of ``method``; ValueError naming the known methods for any other name."""
    if method not in DIAGRAMS:
        raise ValueError(f"Unknown method {method!r}; known: {sorted(DIAGRAMS)}.")
    return DIAGRAMS[method]


def _xy(box: Box) -> tuple[float, float]:
    """Data coordinates of a box centre (rows grow downwards)."""
    return float(box.col), -float(box.row)


def _border_point(box: Box, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from ``box``'s centre to ``toward`` leaves the box."""
    (x, y), (tx, ty) = _xy(box), toward
    dx, dy = tx - x, ty - y
    scale = min(BOX_W / 2 / abs(dx) if dx else float("inf"), BOX_H / 2 / abs(dy) if dy else float("inf"))
    return x + dx * scale, y + dy * scale


def _draw_box(ax: Axes, box: Box) -> None:
    """A rounded box filled by its kind's colour, with the label centred."""
    x, y = _xy(box)
    colour = KINDS[box.kind][0]
    ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, facecolor=colour,
                                edgecolor="#555555", boxstyle="round,pad=0,rounding_size=0.06",
                                mutation_aspect=1.0, label=box.key))
    ax.text(x, y, box.label, ha="center", va="center", fontsize=7.5, gid=box.key)


def _draw_edge(ax: Axes, start: Box, end: Box, label: str) -> None:
    """An arrow from border to border, with an optional label at its middle."""
    a, b = _border_point(start, _xy(end)), _border_point(end, _xy(start))
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color="#333333", lw=1,
                                 shrinkA=1, shrinkB=1))
    if label:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, label, ha="center", va="center", fontsize=6.5,
                style="italic", bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


def _draw_legend(ax: Axes, spec: Diagram) -> None:
    """One colour patch per box kind the diagram uses, below the axes, in :data:`KINDS` order."""
    kinds = [k for k in KINDS if any(b.kind == k for b in spec.boxes)]
    ax.legend(handles=[Patch(facecolor=KINDS[k][0], edgecolor="#555555", label=KINDS[k][1]) for k in kinds],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(kinds), fontsize=7, frameon=False)


def method_diagram(method: str, ax: Axes | None = None) -> Axes:
    """Draw ``method``'s views -> encoder -> loss diagram on ``ax`` (a new figure when None); returns the axes.

    ``method``: a name of :data:`cselab.methods.METHOD_FIELDS` (``unsup-simcse``, ``sup-simcse``,
    ``esimcse``, ``diffcse``, ``declutr``, ``ngcse``). The boxes and arrows come from
    :data:`DIAGRAMS`; the title names the paper section or figure the diagram follows.
    """
    spec = diagram_spec(method)
    top, bottom = min(b.row for b in spec.boxes), max(b.row for b in spec.boxes)
    cols, rows = max(b.col for b in spec.boxes) + 1, bottom - top + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(2.1 * cols, 1.1 * rows + 0.9))
    boxes = {b.key: b for b in spec.boxes}
    for box in spec.boxes:
        _draw_box(ax, box)
    for start, end, label in spec.edges:
        _draw_edge(ax, boxes[start], boxes[end], label)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(-(bottom + 0.5), -(top - 0.5))
    ax.set_axis_off()
    ax.set_title(f"{spec.title}  ({spec.source})", fontsize=9)
    _draw_legend(ax, spec)
    return ax


__all__ = ["DIAGRAMS", "KINDS", "Box", "Diagram", "diagram_spec", "method_diagram"]
