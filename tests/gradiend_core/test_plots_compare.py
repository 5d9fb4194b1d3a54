"""gradiend_core.plots_compare: the figures hold the stored tables' cells, labels and region counts."""
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Circle

from gradiend_core.compare.cross_encoding import anchor_aligned_matrix, cross_encoding_matrix
from gradiend_core.compare.similarity import SIMILARITY_COLUMNS
from gradiend_core.errors import DataError
from gradiend_core.plots_compare import (encoding_heatmap_figure, plot_encoding_heatmap, plot_similarity_heatmap,
                                         plot_topk_overlap_heatmap, plot_topk_venn, similarity_heatmap_figure,
                                         topk_overlap_heatmap_figure, topk_venn_figure)

PNG = b"\x89PNG\r\n\x1a\n"
IDS = ["3SG__3PL", "masc__fem"]


def _sim_table(measure, values, group_by="none", group="all", shared=None, sizes=(4, 4)):
    rows = []
    for (r, c), v in values.items():
        rows.append({"measure": measure, "part": "encoder-weight", "topk": "4", "value_kind": "", "group_by": group_by,
                     "group": group, "row_id": r, "col_id": c, "value": v, "n_row": sizes[IDS.index(r)],
                     "n_col": sizes[IDS.index(c)], "n_shared": (shared or {}).get((r, c), 0)})
    return pd.DataFrame(rows, columns=SIMILARITY_COLUMNS)


def _cell_texts(ax):
    """{(row, col): text} of the annotations, keyed by their data position."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}


def _ticks(ax):
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_similarity_heatmap_cells_and_labels(tmp_path):
    vals = {(IDS[0], IDS[0]): 1.0, (IDS[0], IDS[1]): -0.25, (IDS[1], IDS[0]): -0.25, (IDS[1], IDS[1]): 1.0}
    fig = similarity_heatmap_figure(_sim_table("cosine_signed", vals), "cosine_signed")
    ax = fig.axes[0]
    assert _ticks(ax) == (IDS, IDS)
    assert _cell_texts(ax) == {(0, 0): "1.00", (0, 1): "-0.25", (1, 0): "-0.25", (1, 1): "1.00"}
    img = ax.images[0]
    np.testing.assert_allclose(img.get_array(), [[1.0, -0.25], [-0.25, 1.0]])
    assert img.get_clim() == (-1.0, 1.0)  # signed measures span [-1, 1]
    assert "cosine_signed" in ax.get_title() and "cosine_signed" in fig.get_suptitle()
    out = plot_similarity_heatmap(_sim_table("cosine_signed", vals), tmp_path / "s" / "sim.png", "cosine_signed")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(DataError, match="no 'spearman' rows"):
        similarity_heatmap_figure(_sim_table("cosine", vals), "spearman")


def test_grouped_similarity_heatmap_has_one_panel_per_group():
    vals = {(r, c): (1.0 if r == c else 0.5) for r in IDS for c in IDS}
    table = pd.concat([_sim_table("cosine", vals, "layer", "layer 0"),
                       _sim_table("cosine", {k: v / 2 for k, v in vals.items()}, "layer", "layer 1")])
    fig = similarity_heatmap_figure(table, "cosine", "layer")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["layer 0", "layer 1"]
    assert _cell_texts(panels[1])[(0, 1)] == "0.25" and panels[1].images[0].get_clim() == (0.0, 1.0)


def test_topk_overlap_heatmap_shows_counts_and_fractions(tmp_path):
    shared = {(IDS[0], IDS[0]): 4, (IDS[0], IDS[1]): 3, (IDS[1], IDS[0]): 3, (IDS[1], IDS[1]): 6}
    table = _sim_table("topk_overlap", {k: float(v) for k, v in shared.items()}, shared=shared, sizes=(4, 6))
    fig = topk_overlap_heatmap_figure(table)
    ax = fig.axes[0]
    assert _cell_texts(ax) == {(0, 0): "4\n(100%)", (0, 1): "3\n(75%)", (1, 0): "3\n(75%)", (1, 1): "6\n(100%)"}
    np.testing.assert_allclose(ax.images[0].get_array(), [[1, .75], [.75, 1]])
    assert plot_topk_overlap_heatmap(table, tmp_path / "ov.png").read_bytes()[:8] == PNG


def _topk_table(sets):
    return pd.DataFrame([{"gradiend_id": g, "part": "decoder-weight", "global_index": i}
                         for g, s in sets.items() for i in s])


def _region_texts(ax):
    return {t.get_gid(): t.get_text() for t in ax.texts}


def test_topk_venn_two_and_three(tmp_path):
    sets = {"a": [6, 7, 8, 9], "b": [5, 6, 7, 14], "c": [0, 1, 2, 3, 9]}
    fig = topk_venn_figure(_topk_table(sets), ["a", "b"])
    ax = fig.axes[0]
    assert len([p for p in ax.patches if isinstance(p, Circle)]) == 2
    assert _region_texts(ax) == {"a": "2", "b": "2", "a+b": "2"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (4)", "b (4)"]
    assert "union 6" in ax.get_title()
    ax3 = topk_venn_figure(_topk_table(sets)).axes[0]
    assert len([p for p in ax3.patches if isinstance(p, Circle)]) == 3
    assert _region_texts(ax3) == {"a": "1", "b": "2", "c": "4", "a+b": "2", "a+c": "1", "b+c": "0", "a+b+c": "0"}
    xy = {t.get_gid(): np.array(t.get_position()) for t in ax3.texts}
    centres = {c.get_label()[0]: np.array(c.center) for c in ax3.patches}
    for name in "abc":  # each exclusive count sits inside its own circle only
        inside = {k for k, c in centres.items() if np.linalg.norm(xy[name] - c) < 1.0}
        assert inside == {name}
    assert all(np.linalg.norm(xy["a+b+c"] - c) < 1.0 for c in centres.values())
    assert plot_topk_venn(_topk_table(sets), tmp_path / "v.png", ["a", "b", "c"]).read_bytes()[:8] == PNG


def test_encoding_heatmaps_raw_and_normalised(tmp_path):
    enc = pd.DataFrame([("g1", "A", .8), ("g1", "A", 1.0), ("g1", "B", -.8), ("g2", "A", .2), ("g2", "B", .5)],
                       columns=["gradiend_id", "class", "encoded"])
    directions = {"g1": {"A": 1, "B": -1}, "g2": {"B": 1, "A": -1}}
    cross = cross_encoding_matrix(enc, directions)
    ax = encoding_heatmap_figure(cross).axes[0]
    assert _ticks(ax) == (["A", "B"], ["g1", "g2"])
    assert _cell_texts(ax) == {(0, 0): "0.90", (0, 1): "-0.80", (1, 0): "0.20", (1, 1): "0.50"}
    norm = encoding_heatmap_figure(cross, normalized=True).axes[0]
    assert _cell_texts(norm) == {(0, 0): "1.00", (0, 1): "-0.89", (1, 0): "0.40", (1, 1): "1.00"}
    assert "diagonal" in norm.get_title()
    anchor = encoding_heatmap_figure(anchor_aligned_matrix(enc, directions), "anchor").axes[0]
    assert _ticks(anchor) == (["A", "B"], ["A", "B"])
    assert math.isclose(float(anchor.images[0].get_array()[0, 0]), (.9 - .2) / 2)  # g1 +, g2 negated
    assert plot_encoding_heatmap(cross, tmp_path / "x.png", normalized=True).read_bytes()[:8] == PNG
