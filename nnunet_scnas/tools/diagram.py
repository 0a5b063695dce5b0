"""Pictures of a search result: each cell type's DAG (like Fig. 2 of the SCNAS paper) and the
course of softmax(alpha) over the search epochs.

Why matplotlib only: nnU-Net already depends on it, whereas graphviz's ``dot`` binary is
usually missing on the machines that run searches. Everything is drawn with the agg backend
(no display) and written through a temporary file, so a reader never sees half a PNG.

Cell layout: the two cell inputs on the left, the four intermediate nodes in between (their
order is the DAG's topological order), the cell output (concatenation of the four nodes,
``cells.py``) on the right. ``zero`` edges are not drawn: they are not built either. A node
without any non-zero path from the cell inputs is dead (it outputs zeros, or a constant after an
op's norm) and is drawn grey with its edges; ``derive`` never produces one, hand-written
genotypes can. An input that feeds no live node is grey too.
"""
from __future__ import annotations

import functools
import os

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .._io import atomic_write  # noqa: E402
from ..genotypes import CELL_TYPES, EDGES, N_INPUTS, N_NODES, Genotype, _node_name  # noqa: E402
from ..operations import OPS  # noqa: E402


def default_style(draw):
    """Draw with matplotlib's defaults: nnU-Net's progress plot calls seaborn.set(font_scale=2.5)
    in the trainer's process, which otherwise blows up every later figure's fonts."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}):
            return draw(*args, **kwargs)
    return wrapper

OP_COLOURS = dict(zip(OPS, plt.get_cmap("tab10").colors))
DEAD_COLOUR = "0.75"
OUTPUT = N_INPUTS + N_NODES  # index of the output node in the layout
# node -> (x, y): inputs left, intermediate nodes zig-zag left to right, output right
_POS = {0: (0.0, 1.8), 1: (0.0, -1.8), 2: (2.4, 1.3), 3: (4.0, -1.3), 4: (5.6, 1.3), 5: (7.2, -1.3),
        OUTPUT: (9.2, 0.0)}
_RADIUS = 0.5
_LABEL_POSITIONS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78)  # along an edge, tried in this order


def live_nodes(genotype: Genotype, cell_type: str) -> list[bool]:
    """Per node 0..5 whether it carries signal from the cell inputs through non-zero edges
    (inputs: whether any intermediate node uses them). ``derive``'s rule (a node whose incoming
    edges are all ``zero`` is dead) applied transitively: a node fed only by dead nodes is dead."""
    ops = dict(zip(EDGES, genotype.cells[cell_type]))
    live = [True] * N_INPUTS + [False] * N_NODES
    for j in range(N_INPUTS, N_INPUTS + N_NODES):  # EDGES only go forward: one pass suffices
        live[j] = any(live[i] and ops[(i, j)] != "zero" for i in range(j))
    for i in range(N_INPUTS):  # any non-zero edge out of an input makes its target live
        live[i] = any(ops[(i, j)] != "zero" for j in range(N_INPUTS, N_INPUTS + N_NODES))
    return live


@default_style
def render_cell(genotype: Genotype, cell_type: str, path: str) -> list[tuple[int, int, str]]:
    """Draw one cell type's DAG to the PNG ``path``; returns the op edges drawn, (from, to, op)
    in ``EDGES`` order, so that callers and tests can see what the picture shows."""
    if cell_type not in CELL_TYPES:
        raise ValueError(f"unknown cell type {cell_type!r} (expected {', '.join(CELL_TYPES)})")
    live = live_nodes(genotype, cell_type)
    fig, ax = plt.subplots(figsize=(12, 7.3))
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.93)
    ax.set_xlim(-0.7, 9.9)
    ax.set_ylim(-3.1, 3.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.apply_aspect()
    renderer = fig.canvas.get_renderer()
    circles = {}
    for n, (x, y) in _POS.items():
        alive = n == OUTPUT or live[n]
        face = "#cfe2f3" if n < N_INPUTS else "#d9ead3" if n == OUTPUT else "white"
        circles[n] = Circle((x, y), _RADIUS, fc=face if alive else "0.95", ec="k" if alive else DEAD_COLOUR,
                            lw=1.5, ls="-" if alive else "--", zorder=3)
        ax.add_patch(circles[n])
        name = "$c_{k}$" if n == OUTPUT else f"${_node_name(n)}$" if n < N_INPUTS else _node_name(n)
        ax.text(x, y, name, ha="center", va="center", fontsize=11, zorder=4, color="k" if alive else "0.55")
    occupied = [c.get_window_extent(renderer) for c in circles.values()]  # where labels must not go

    drawn = []
    for (i, j), op in zip(EDGES, genotype.cells[cell_type]):
        if op == "zero":
            continue
        colour = OP_COLOURS[op] if live[i] and live[j] else DEAD_COLOUR
        curve = _arrow(ax, circles, i, j, colour)
        text = ax.text(0, 0, op, ha="center", va="center", fontsize=8, zorder=5,
                       bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, lw=1))
        occupied.append(_place_label(text, curve, occupied, renderer))
        drawn.append((i, j, op))
    for j in range(N_INPUTS, N_INPUTS + N_NODES):
        _arrow(ax, circles, j, OUTPUT, "k" if live[j] else DEAD_COLOUR)
    ax.set_title(f"{cell_type} cell: {len(drawn)} op edges, output = concatenation of nodes 2-5")
    _save(fig, path)
    return drawn


def _arrow(ax, circles: dict, i: int, j: int, colour):
    """Curved arrow i -> j, bowed so that it passes around the nodes in between; returns the
    curve as a function of t in [0, 1] (arc3's quadratic Bezier) for placing its label."""
    (x1, y1), (x2, y2) = _POS[i], _POS[j]
    top = y1 > 0
    if j == OUTPUT:  # nodes 2 and 3 reach the output between the nodes after them
        rad = 0.0 if i >= 4 else (0.12 if top else -0.12)
    elif top == (y2 > 0):  # along the top (bottom) row: bow up (down)
        rad = -0.35 if top else 0.35
    elif i < N_INPUTS and j - i > 2:  # long diagonal from an input
        rad = 0.15 if top else -0.15
    else:
        rad = 0.0
    ax.add_patch(FancyArrowPatch(_POS[i], _POS[j], patchA=circles[i], patchB=circles[j],
                                 connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=14,
                                 color=colour, lw=1.6, zorder=2))
    # arc3's control point: midpoint + rad * (dy, -dx) (equal aspect: data and display agree)
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    return lambda t: ((1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t ** 2 * x2,
                      (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t ** 2 * y2)


def _place_label(text, curve, occupied: list, renderer):
    """Move ``text`` to the first point along ``curve`` where it overlaps no node and no earlier
    label (the least crowded one if there is none); returns its extent."""
    best = None
    for t in _LABEL_POSITIONS:
        text.set_position(curve(t))
        box = text.get_window_extent(renderer).padded(4)
        clashes = sum(box.overlaps(o) for o in occupied)
        if best is None or clashes < best[0]:
            best = (clashes, t, box)
        if clashes == 0:
            break
    text.set_position(curve(best[1]))
    return best[2]


def render_genotype(genotype: Genotype, out_dir: str) -> list[str]:
    """Write ``cell_<type>.png`` for the four cell types into ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for t in CELL_TYPES:
        paths.append(os.path.join(out_dir, f"cell_{t}.png"))
        render_cell(genotype, t, paths[-1])
    return paths


@default_style
def plot_alpha_history(history: list[dict], path: str) -> None:
    """Per cell type, each op's softmax(alpha) averaged over the 14 edges, against the epoch,
    from ``alpha_history.json``: shows which ops the search drifts towards (or collapses to)."""
    if not history:
        raise ValueError("alpha history is empty: no finished search epoch yet")
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for ax, t in zip(axes.flat, CELL_TYPES):
        means = []  # per epoch: per op the mean over edges
        for h in history:
            table = h.get("softmax_alpha", {}).get(t)
            if table is None or len(table) != len(EDGES) or any(len(row) != len(OPS) for row in table):
                raise ValueError(f"alpha history, epoch {h['epoch']}, {t}: expected {len(EDGES)} edges "
                                 f"x {len(OPS)} ops")
            means.append([sum(row[k] for row in table) / len(table) for k in range(len(OPS))])
        for k, op in enumerate(OPS):
            ax.plot(epochs, [m[k] for m in means], marker="o", markersize=3, color=OP_COLOURS[op], label=op)
        ax.axhline(1 / len(OPS), color="grey", ls=":", lw=1, label=f"uniform (1/{len(OPS)})")
        ax.set_title(t)
        ax.set_ylabel("mean softmax(alpha) over edges")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path)


def _save(fig, path: str) -> None:
    """PNG written crash-safely (``atomic_write``); the figure is closed either way."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
