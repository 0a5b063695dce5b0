"""Cells (paper, Sec. 2.1): a DAG of 4 nodes over 2 inputs; node j = sum_i o_(i,j)(x_i);
cell output = concatenation of the 4 nodes.

Channel bookkeeping (the paper is silent; see docs/DESIGN.md): a cell at level L outputs
W_L = stem * 2**L channels, so every node has W_L / 4 channels. Both inputs are first brought
to the node width and to the cell's working resolution by a pre-activation block:
1x1x1 conv (same level), 2x2x2 stride-2 conv (input one level finer) or 2x2x2 stride-2
transposed conv (input one level coarser; this is the expansion cell's "pre-upsampling").
Reduction cells then run their input edges at stride 2.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .genotypes import EDGES, N_INPUTS, N_NODES
from .operations import (OPS, ZERO_INDEX, Conv3d, InstanceNorm3d, LeakyReLU, PreActivatedOp, SepDilConvOp, leaky_relu,
                         make_op)

# how a cell type moves the resolution: output level = input level + LEVEL_STEP
LEVEL_STEP = {"enc_normal": 0, "reduction": 1, "dec_normal": 0, "expansion": -1}


class Preprocess(PreActivatedOp):
    """LeakyReLU -> conv that maps ``c_in`` to ``c_out`` and moves ``shift`` levels -> InstanceNorm.
    Cells call ``after_activation``: the U-Net activates each cell output once for all its readers."""

    def __init__(self, c_in: int, c_out: int, shift: int):
        if shift == 0:
            conv = Conv3d(c_in, c_out, 1, bias=False)
        elif shift == 1:
            conv = Conv3d(c_in, c_out, 2, stride=2, bias=False)
        elif shift == -1:
            conv = nn.ConvTranspose3d(c_in, c_out, 2, stride=2, bias=False)
        else:
            raise ValueError(f"a cell input can move at most one level, got {shift}")
        super().__init__(LeakyReLU(), conv, InstanceNorm3d(c_out))


class NodeInput:
    """A node's tensor and its LeakyReLU, computed once on first use by a conv op."""

    __slots__ = ("raw", "_activated")

    def __init__(self, raw: torch.Tensor):
        self.raw = raw
        self._activated: torch.Tensor | None = None

    def run(self, op: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``weight * op(raw)`` (``op(raw)`` without a weight)."""
        if not isinstance(op, PreActivatedOp):
            y = op(self.raw)
            return y if weight is None else weight * y
        if self._activated is None:
            self._activated = leaky_relu(self.raw)
        return op.after_activation(self._activated, weight)


def _edge_key(i: int, j: int) -> str:
    return f"{i}_{j}"


def _edge_stride(cell_type: str, i: int) -> int:
    return 2 if cell_type == "reduction" and i < N_INPUTS else 1


class MixedEdge(nn.ModuleDict):
    """All candidate ops of one edge; only ops with a non-zero weight are run."""

    def __init__(self, channels: int, stride: int):
        super().__init__({name: make_op(name, channels, stride) for name in OPS if name != "zero"})

    def forward(self, x: NodeInput, w: torch.Tensor, active: Sequence[int]) -> torch.Tensor | None:
        out = None
        for k in active:
            if k == ZERO_INDEX:  # contributes w * 0: nothing to compute
                continue
            y = x.run(self[OPS[k]], w[k])
            out = y if out is None else out + y
        return out


class _Cell(nn.Module):
    """Preprocessing and node summation shared by the search cell and the derived cell."""

    def __init__(self, cell_type: str, c_prev_prev: int, c_prev: int, c_out: int, shift0: int, shift1: int):
        super().__init__()
        if c_out % N_NODES:
            raise ValueError(f"cell width {c_out} is not divisible by {N_NODES} nodes")
        self.cell_type = cell_type
        self.node_channels = c_out // N_NODES
        self.preprocess0 = Preprocess(c_prev_prev, self.node_channels, shift0)
        self.preprocess1 = Preprocess(c_prev, self.node_channels, shift1)

    def _edge(self, k: int, x: NodeInput, *args) -> torch.Tensor | None:
        raise NotImplementedError

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, *edge_args) -> torch.Tensor:
        """``s0``, ``s1``: the cell inputs after LeakyReLU (``operations.leaky_relu``)."""
        states = [self.preprocess0.after_activation(s0), self.preprocess1.after_activation(s1)]
        inputs = [NodeInput(s) for s in states]
        n, _, *spatial = states[1].shape
        if self.cell_type == "reduction":
            spatial = [s // 2 for s in spatial]
        for j in range(N_INPUTS, N_INPUTS + N_NODES):
            node = None
            for k, (i, target) in enumerate(EDGES):
                if target != j:
                    continue
                y = self._edge(k, inputs[i], *edge_args)
                if y is not None:
                    node = y if node is None else node + y
            if node is None:  # every incoming edge is zero
                node = states[1].new_zeros((n, self.node_channels, *spatial))
            states.append(node)
            inputs.append(NodeInput(node))
        return torch.cat(states[N_INPUTS:], dim=1)


class SearchCell(_Cell):
    """Cell of the supernet: every edge holds all candidate ops (a MixedEdge)."""

    def __init__(self, cell_type: str, c_prev_prev: int, c_prev: int, c_out: int, shift0: int, shift1: int):
        super().__init__(cell_type, c_prev_prev, c_prev, c_out, shift0, shift1)
        self.edges = nn.ModuleDict({
            _edge_key(i, j): MixedEdge(self.node_channels, _edge_stride(cell_type, i)) for i, j in EDGES})

    def _edge(self, k: int, x: NodeInput, weights: torch.Tensor, active: Sequence[Sequence[int]]):
        return self.edges[_edge_key(*EDGES[k])](x, weights[k], active[k])


class DerivedCell(_Cell):
    """Cell of a derived network: one fixed op per edge; zero edges are not built."""

    def __init__(self, cell_type: str, ops: Sequence[str], c_prev_prev: int, c_prev: int, c_out: int,
                 shift0: int, shift1: int):
        super().__init__(cell_type, c_prev_prev, c_prev, c_out, shift0, shift1)
        self.edges = nn.ModuleDict()
        for (i, j), op in zip(EDGES, ops):
            module = make_op(op, self.node_channels, _edge_stride(cell_type, i))
            if isinstance(module, SepDilConvOp):
                module.fold_pointwise = True  # fixed ops train faster folded (operations.SepDilConvOp)
            if module is not None:
                self.edges[_edge_key(i, j)] = module

    def _edge(self, k: int, x: NodeInput):
        key = _edge_key(*EDGES[k])
        return x.run(self.edges[key]) if key in self.edges else None
