"""Cell diagrams and the alpha-history plot: PNGs are written, zero edges are left out, dead
nodes follow the derive rule."""
from __future__ import annotations

import json
import math
import os

import pytest

from nnunet_scnas import CELL_TYPES, EDGES, OPS, Genotype
from nnunet_scnas.tools.diagram import live_nodes, plot_alpha_history, render_cell, render_genotype

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path, min_bytes=20_000):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG_MAGIC and os.path.getsize(path) >= min_bytes


def test_render_genotype_writes_one_png_per_cell_type(tmp_path):
    g = Genotype.load(os.path.join(os.path.dirname(__file__), "..", "docs", "example_genotype.json"))
    paths = render_genotype(g, str(tmp_path / "cells"))
    assert [os.path.basename(p) for p in paths] == [f"cell_{t}.png" for t in CELL_TYPES]
    assert all(_is_png(p) for p in paths)
    assert not [f for f in os.listdir(tmp_path / "cells") if f.startswith(".")]  # no temporary left


@pytest.mark.parametrize("cell_type", ["reduction", "dec_normal"])
def test_zero_edges_are_not_drawn_and_every_other_edge_is(tmp_path, random_genotype, cell_type):
    ops = random_genotype.cells[cell_type]
    assert "zero" in ops  # so that there is something to leave out
    drawn = render_cell(random_genotype, cell_type, str(tmp_path / "cell.png"))
    assert drawn == [(i, j, op) for (i, j), op in zip(EDGES, ops) if op != "zero"]
    assert _is_png(tmp_path / "cell.png")


def test_nodes_without_a_path_from_the_inputs_are_dead():
    ops = {t: ["conv_3x3x3"] * len(EDGES) for t in CELL_TYPES}
    # node 2: all incoming edges zero; node 3: fed only by node 2; c_{k-2}: all outgoing edges zero
    for k, (i, j) in enumerate(EDGES):
        if j == 2 or (j == 3 and i != 2) or (i == 0 and j != 2):
            ops["reduction"][k] = "zero"
    g = Genotype({t: tuple(v) for t, v in ops.items()})
    assert live_nodes(g, "reduction") == [False, True, False, False, True, True]
    assert live_nodes(g, "enc_normal") == [True] * 6


def test_cell_type_is_checked(tmp_path, random_genotype):
    with pytest.raises(ValueError, match="unknown cell type 'stem'"):
        render_cell(random_genotype, "stem", str(tmp_path / "x.png"))


def _history(epochs):
    out = []
    for e in range(epochs):
        table = []
        for _ in EDGES:  # drifts towards op 0
            logits = [e * 0.5 if k == 0 else 0.0 for k in range(len(OPS))]
            z = sum(math.exp(v) for v in logits)
            table.append([math.exp(v) / z for v in logits])
        out.append({"epoch": e, "tau": 1.0, "softmax_alpha": {t: table for t in CELL_TYPES}})
    return out


@pytest.mark.parametrize("epochs", [1, 12])
def test_alpha_history_plot_is_written(tmp_path, epochs):
    path = tmp_path / "alpha_history.png"
    history = json.loads(json.dumps(_history(epochs)))  # exactly what alpha_history.json holds
    plot_alpha_history(history, str(path))
    assert _is_png(path)


def test_alpha_history_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_alpha_history([], str(tmp_path / "a.png"))
    bad = _history(2)
    bad[1]["softmax_alpha"]["expansion"] = bad[1]["softmax_alpha"]["expansion"][:3]
    with pytest.raises(ValueError, match=r"epoch 1, expansion: expected 14 edges x 8 ops"):
        plot_alpha_history(bad, str(tmp_path / "a.png"))
    del bad[0]["softmax_alpha"]["enc_normal"]
    with pytest.raises(ValueError, match=r"epoch 0, enc_normal: expected 14 edges"):
        plot_alpha_history(bad, str(tmp_path / "a.png"))
    assert not os.path.exists(tmp_path / "a.png")


def test_figures_ignore_global_style_changes(tmp_path):
    """nnU-Net's progress plot runs seaborn.set(font_scale=2.5) in the same process."""
    import matplotlib
    from nnunet_scnas.tools import diagram
    seen = {}
    real = diagram._save

    def spy(fig, path):
        seen["font"] = matplotlib.rcParams["font.size"]
        real(fig, path)
    matplotlib.rcParams["font.size"] = 40.0
    try:
        diagram._save = spy
        diagram.plot_alpha_history([{"epoch": 0, "tau": 1.0, "softmax_alpha": {
            t: [[1 / 8] * 8 for _ in range(14)] for t in ("enc_normal", "reduction", "dec_normal", "expansion")}}],
            str(tmp_path / "a.png"))
    finally:
        diagram._save = real
        matplotlib.rcParams["font.size"] = matplotlib.rcParamsDefault["font.size"]
    assert seen["font"] == matplotlib.rcParamsDefault["font.size"]
