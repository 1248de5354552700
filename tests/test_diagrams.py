"""cselab.diagrams: every method draws with the Agg backend, and its boxes name the method's key parts.

The expected components below are written from the papers (and reference §2-§8), not read from
cselab.diagrams: a table that drops a component, or mislabels one, fails here.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

import cselab.diagrams as D  # noqa: E402
from cselab.methods import METHOD_FIELDS  # noqa: E402

# method -> words that must appear in its box labels (case-insensitive)
EXPECTED = {
    "unsup-simcse": ["the same sentence", "dropout", "shared encoder", "infonce", "in-batch negatives"],
    "sup-simcse": ["premise", "entailment", "contradiction", "hard negative", "shared encoder", "infonce"],
    "esimcse": ["word repetition", "momentum encoder", "ema", "queue", "dropout", "infonce"],
    "diffcse": ["dropout", "masked", "generator", "edited sentence", "discriminator", "conditioned on h",
                "rtd", "simcse loss"],
    "declutr": ["document", "anchor span", "positive spans", "mlm", "infonce"],
    "ngcse": ["llm", "paraphrase", "intermediate", "dissimilar", "5:", "4:", "3:", "infonce",
              "hierarchical triplet"],
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def box_labels(ax) -> dict[str, str]:
    """key -> label of every drawn box (the text whose gid is a box patch's label)."""
    keys = {p.get_label() for p in ax.patches if isinstance(p, FancyBboxPatch)}
    return {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid() in keys}


def test_every_method_of_the_trainer_has_a_diagram():
    assert set(D.DIAGRAMS) == set(METHOD_FIELDS) == set(EXPECTED)


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_draws_with_agg_and_names_the_key_components(method):
    assert matplotlib.get_backend().lower() == "agg"
    ax = D.method_diagram(method)
    ax.figure.canvas.draw()  # renders every artist: errors in layout or text show here
    labels = box_labels(ax)
    assert len(labels) == len(D.DIAGRAMS[method].boxes)
    text = " | ".join(labels.values()).lower()
    missing = [word for word in EXPECTED[method] if word not in text]
    assert not missing, f"{method}: no box mentions {missing}; boxes: {list(labels.values())}"
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) >= len(labels) - 1  # a connected diagram


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_views_flow_from_the_input_to_the_losses(method):
    spec = D.DIAGRAMS[method]
    kind = {b.key: b.kind for b in spec.boxes}
    assert all(k in D.KINDS for k in kind.values())
    out = {key: [e for s, e, _ in spec.edges if s == key] for key in kind}
    into = {key: [s for s, e, _ in spec.edges if e == key] for key in kind}
    assert {k for k in kind if not into[k]} == {k for k, v in kind.items() if v == "input"}
    assert {k for k in kind if not out[k]} <= {k for k, v in kind.items() if v == "loss"}
    reached, todo = set(), [k for k, v in kind.items() if v == "input"]
    while todo:  # everything is reachable from the input
        key = todo.pop()
        if key not in reached:
            reached.add(key)
            todo += out[key]
    assert reached == set(kind)


def _segment_hits_box(a, b, centre, half_w, half_h, steps=200) -> bool:
    return any(abs(a[0] + (b[0] - a[0]) * t / steps - centre[0]) < half_w
               and abs(a[1] + (b[1] - a[1]) * t / steps - centre[1]) < half_h for t in range(steps + 1))


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_layout_labels_fit_and_arrows_miss_other_boxes(method):
    spec = D.DIAGRAMS[method]
    centres = {b.key: (b.col, -b.row) for b in spec.boxes}
    assert len(set(centres.values())) == len(centres), "two boxes at one place"
    for start, end, _ in spec.edges:
        for key, c in centres.items():
            if key not in (start, end):
                assert not _segment_hits_box(centres[start], centres[end], c, D.BOX_W / 2, D.BOX_H / 2), (
                    f"{method}: the arrow {start} -> {end} crosses box {key}")
    ax = D.method_diagram(method)
    renderer = ax.figure.canvas.get_renderer()
    extent = {p.get_label(): p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)}
    for t in ax.texts:
        if t.get_gid() in extent:
            inner, outer = t.get_window_extent(renderer), extent[t.get_gid()]
            assert outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1, (
                f"{method}: the label of {t.get_gid()!r} does not fit its box")


def test_draws_on_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert D.method_diagram("unsup-simcse", ax=right) is right
    assert not left.patches and right.patches
    assert "SimCSE" in right.get_title()


def test_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown method 'simclr'") as info:
        D.method_diagram("simclr")
    assert all(name in str(info.value) for name in METHOD_FIELDS)
