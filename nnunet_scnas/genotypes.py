"""Cell DAG layout, derivation of the discrete architecture, and genotype files.

A cell has two inputs (nodes 0 and 1) and four intermediate nodes (2..5); node j receives an
edge from every earlier node, 14 edges in all, always listed in ``EDGES`` order. A genotype
names one op per edge for each of the four cell types; ``zero`` edges are kept in the file
(connectivity is part of the search) and simply not built.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ._io import atomic_write_json
from .operations import OPS, ZERO_INDEX

CELL_TYPES: tuple[str, ...] = ("enc_normal", "reduction", "dec_normal", "expansion")
N_INPUTS = 2
N_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for j in range(N_INPUTS, N_INPUTS + N_NODES) for i in range(j))
GENOTYPE_FORMAT = "nnunet_scnas.genotype"
#: a searched cell type whose mean confidence (max softmax(alpha) per edge) stays below twice
#: uniform is reported as close to a random draw
CONFIDENT = 2 / len(OPS)
GENOTYPE_VERSION = 1


def _package_version() -> str:
    from . import __version__
    return __version__


@dataclass(frozen=True)
class Genotype:
    """One op name per edge (``EDGES`` order) for each cell type, plus provenance."""

    cells: Mapping[str, tuple[str, ...]]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cells = _validate_cells(self.cells)
        object.__setattr__(self, "cells", cells)

    # -- conversions ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON document (also embedded in a plans.json ``architecture`` block)."""
        return {
            "format": GENOTYPE_FORMAT,
            "version": GENOTYPE_VERSION,
            "cells": {t: [[i, j, op] for (i, j), op in zip(EDGES, self.cells[t])] for t in CELL_TYPES},
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, doc: Any, source: str = "genotype") -> "Genotype":
        """Validate a parsed document; any problem is a one-line ValueError naming the field."""
        def fail(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg}")

        if not isinstance(doc, dict):
            raise fail(f"expected a JSON object, got {type(doc).__name__}")
        if doc.get("format", GENOTYPE_FORMAT) != GENOTYPE_FORMAT:
            raise fail(f"field 'format' is {doc.get('format')!r}, expected {GENOTYPE_FORMAT!r}")
        if "version" not in doc:
            raise fail("missing field 'version'")
        if doc["version"] != GENOTYPE_VERSION or isinstance(doc["version"], bool):
            raise fail(f"unknown version {doc['version']!r} (this nnunet_scnas reads version {GENOTYPE_VERSION})")
        if "cells" not in doc:
            raise fail("missing field 'cells'")
        provenance = doc.get("provenance", {})
        if not isinstance(provenance, dict):
            raise fail("field 'provenance' must be an object")
        raw = doc["cells"]
        if not isinstance(raw, dict):
            raise fail("field 'cells' must be an object with one entry per cell type")
        cells = {}
        for t, edges in raw.items():
            if t not in CELL_TYPES:
                raise fail(f"cells: unknown cell type {t!r} (expected {', '.join(CELL_TYPES)})")
            cells[t] = _ops_from_edge_list(edges, lambda m, t=t: fail(f"cells.{t}: {m}"))
        try:
            return cls(cells, provenance)
        except ValueError as e:
            raise fail(str(e)) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genotype":
        """Read and validate a genotype JSON file; every problem is a one-line ValueError."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path}: no such genotype file") from None
        except IsADirectoryError:
            raise ValueError(f"{path}: is a directory, not a genotype file") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not JSON (not UTF-8 text)") from None
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, RecursionError, ValueError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e).splitlines()[0]
            raise ValueError(f"{path}: not JSON ({msg})") from None
        return cls.from_dict(doc, source=path)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        atomic_write_json(self.to_dict(), path)

    def one_hot(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Per cell type an ``[E, |O|]`` table with a single 1 per edge."""
        out = {}
        for t in CELL_TYPES:
            idx = torch.tensor([OPS.index(op) for op in self.cells[t]], device=device)
            out[t] = torch.nn.functional.one_hot(idx, len(OPS)).float()
        return out

    @classmethod
    def random(cls, seed: int, provenance: Mapping[str, Any] | None = None) -> "Genotype":
        """A uniform draw from the search space: per edge one of the 8 ops, ``zero`` included, with
        derivation's dead-node rule. Drawn as ``derive`` of i.i.d. Gumbel logits, whose argmax is
        uniform per edge, so the rule is exactly derivation's (a node whose edges all drew ``zero``
        gets a uniform non-zero op on a uniform one of its edges)."""
        gen = torch.Generator().manual_seed(seed)
        logits = {t: -torch.log(-torch.log(torch.rand(len(EDGES), len(OPS), generator=gen).clamp(1e-12, 1 - 1e-7)))
                  for t in CELL_TYPES}
        cells = derive(logits).cells
        return cls(cells, {"random_seed": seed, "package_version": _package_version(), **(provenance or {})})

    def mean_confidence(self) -> dict[str, float] | None:
        """Per cell type the mean over edges of max softmax(alpha) (1/8: uniform, 1: one op per
        edge); None for genotypes that were not searched."""
        conf = self.provenance.get("confidence")
        if not isinstance(conf, dict) or set(conf) != set(CELL_TYPES):
            return None
        return {t: sum(conf[t]) / len(conf[t]) for t in CELL_TYPES}

    def randomness_note(self) -> str | None:
        """One line if the search ended close to uniform on some cell type (mean confidence below
        ``CONFIDENT``): the genotype is then close to a random draw. None otherwise."""
        conf = self.mean_confidence()
        if conf is None or min(conf.values()) >= CONFIDENT:
            return None
        steps = self.provenance.get("alpha_steps", "an unknown number of")
        weakest = min(conf, key=conf.get)
        return (f"this genotype is close to a random draw: {steps} alpha steps, mean confidence "
                f"{conf[weakest]:.3f} on {weakest} (uniform {1 / len(OPS):.3f}; {CONFIDENT:.2f} needed)")

    def agreement(self, other: "Genotype") -> dict[str, float]:
        """Per cell type the fraction of the 14 edges on which both genotypes chose the same op
        (1/8 expected for two independent uniform draws)."""
        return {t: sum(a == b for a, b in zip(self.cells[t], other.cells[t])) / len(EDGES) for t in CELL_TYPES}

    def describe(self) -> str:
        """Human-readable text, one line per non-zero edge (with its confidence, if searched)."""
        conf = self.provenance.get("confidence") if self.mean_confidence() is not None else None
        entropy = self.provenance.get("mean_entropy", {})
        lines = []
        for t in CELL_TYPES:
            head = f"{t}:"
            if conf is not None:
                head += f"  mean confidence {sum(conf[t]) / len(conf[t]):.3f}"
                if t in entropy:
                    head += f", mean entropy {entropy[t]:.3f} (uniform {math.log(len(OPS)):.3f})"
            lines.append(head)
            for k, ((i, j), op) in enumerate(zip(EDGES, self.cells[t])):
                if op != "zero":
                    lines.append(f"  {_node_name(i)} -> {_node_name(j)}: {op}"
                                 + (f"  ({conf[t][k]:.3f})" if conf is not None else ""))
        return "\n".join(lines)


def _node_name(i: int) -> str:
    return ("c_{k-2}", "c_{k-1}")[i] if i < N_INPUTS else f"node {i}"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _validate_cells(cells: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    if not isinstance(cells, Mapping):
        raise ValueError("cells must map cell type -> ops")
    for t in CELL_TYPES:
        if t not in cells:
            raise ValueError(f"missing cell type {t!r}")
    unknown = set(cells) - set(CELL_TYPES)
    if unknown:
        raise ValueError(f"unknown cell type {sorted(unknown)[0]!r}")
    out = {}
    for t in CELL_TYPES:
        ops = tuple(cells[t])
        if len(ops) != len(EDGES):
            raise ValueError(f"cells.{t}: expected {len(EDGES)} edges, got {len(ops)}")
        for op in ops:
            if op not in OPS:
                raise ValueError(f"cells.{t}: unknown op {op!r}")
        out[t] = ops
    return out


def _ops_from_edge_list(edges: Any, fail) -> tuple[str, ...]:
    if not isinstance(edges, list):
        raise fail("expected a list of [from, to, op] edges")
    if len(edges) != len(EDGES):
        raise fail(f"expected {len(EDGES)} edges, got {len(edges)}")
    by_edge: dict[tuple[int, int], str] = {}
    last = N_INPUTS + N_NODES - 1
    for k, e in enumerate(edges):
        if not (isinstance(e, list) and len(e) == 3):
            raise fail(f"edge {k} must be [from, to, op]")
        i, j, op = e
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (i, j)):
            raise fail(f"edge {k}: node indices must be integers")
        if not (N_INPUTS <= j <= last):
            raise fail(f"edge {k}: node index 'to'={j} out of range {N_INPUTS}..{last}")
        if not (0 <= i < j):
            raise fail(f"edge {k}: node index 'from'={i} out of range 0..{j - 1}")
        if not isinstance(op, str) or op not in OPS:
            raise fail(f"edge {k}: unknown op {op!r}")
        if (i, j) in by_edge:
            raise fail(f"edge {k}: duplicate edge ({i}, {j})")
        by_edge[(i, j)] = op
    return tuple(by_edge[e] for e in EDGES)


def derive(alphas: Mapping[str, torch.Tensor], provenance: Mapping[str, Any] | None = None) -> Genotype:
    """The discrete architecture (paper, Fig. 1c): per edge the op with the largest softmax(alpha).

    ``zero`` can win, which removes the edge. If every edge into a node picks ``zero`` the node
    would be dead (its quarter of the cell output constant zero); instead, the incoming edge
    whose best non-zero op is strongest gets that op, so every node carries signal.
    The provenance records softmax(alpha), each edge's confidence (its largest softmax) and
    each cell type's mean entropy, which say how far the search moved from uniform.
    """
    cells, tables, confidence, entropy = {}, {}, {}, {}
    for t in CELL_TYPES:
        p = torch.softmax(alphas[t].detach().float().cpu(), dim=-1)
        if p.shape != (len(EDGES), len(OPS)):
            raise ValueError(f"alpha[{t}] must have shape {(len(EDGES), len(OPS))}, got {tuple(p.shape)}")
        if not torch.isfinite(p).all():
            raise FloatingPointError(f"alpha[{t}] is not finite; refusing to derive a genotype")
        choice = p.argmax(dim=1).tolist()
        nonzero = p.clone()
        nonzero[:, ZERO_INDEX] = -1.0
        for j in range(N_INPUTS, N_INPUTS + N_NODES):
            incoming = [k for k, (_, target) in enumerate(EDGES) if target == j]
            if all(choice[k] == ZERO_INDEX for k in incoming):
                best = max(incoming, key=lambda k: nonzero[k].max().item())
                choice[best] = int(nonzero[best].argmax())
        cells[t] = tuple(OPS[c] for c in choice)
        tables[t] = [[round(v, 6) for v in row] for row in p.tolist()]
        confidence[t] = [round(v, 4) for v in p.max(dim=1).values.tolist()]
        entropy[t] = round(float(-(p * p.clamp_min(1e-12).log()).sum(dim=1).mean()), 4)
    prov = {"alpha_softmax": tables, "confidence": confidence, "mean_entropy": entropy,
            "package_version": _package_version()}
    prov.update(provenance or {})
    for k, v in prov.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"provenance field {k!r} is not finite")
    return Genotype(cells, prov)
