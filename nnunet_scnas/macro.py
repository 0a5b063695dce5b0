"""The U-Net of cells (paper, Fig. 1): stem -> 6 encoder-side cells -> 6 decoder cells -> out.

Twelve cells, the inter-cell included (docs/DESIGN.md):
``reduction, enc_normal, reduction, enc_normal, reduction, enc_normal (inter-cell),
expansion, dec_normal, expansion, dec_normal, expansion, dec_normal``.
Cell n takes the outputs of cells n-2 and n-1 (the first takes the stem twice). In the
decoder the previous cell's output is first summed with the encoder output it mirrors
(outputs o_0..o_12 with o_0 the stem: cell n >= 7 adds o_(12-n)), which pairs each encoder
output with exactly one decoder cell at the same level and width.
Deep supervision follows nnU-Net: a list of logits, full resolution first, one per level
except the coarsest.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from dynamic_network_architectures.architectures.abstract_arch import AbstractDynamicNetworkArchitectures
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cells import LEVEL_STEP, _Cell
from .genotypes import CELL_TYPES
from .operations import NEGATIVE_SLOPE, Conv3d, InstanceNorm3d, LeakyReLU, cpu_training

N_DOWNSAMPLINGS = 3
DIVISOR = 2 ** N_DOWNSAMPLINGS
CELL_SEQUENCE: tuple[str, ...] = ("reduction", "enc_normal") * N_DOWNSAMPLINGS + ("expansion", "dec_normal") * N_DOWNSAMPLINGS
#: the ``strides`` entry nnU-Net reads from arch_kwargs for its deep-supervision targets
STRIDES: list[list[int]] = [[1, 1, 1]] + [[2, 2, 2]] * N_DOWNSAMPLINGS

CellFactory = Callable[[str, int, int, int, int, int], _Cell]


MIN_SIZE = 3 * DIVISOR  # the coarsest level must hold a 3x3x3 pooling window
CHANNELS_LAST = torch.channels_last_3d


def check_spatial_size(shape: Sequence[int]) -> None:
    """ValueError naming the axis if a spatial size is not a multiple of 8 of at least 24."""
    for axis, s in enumerate(shape):
        if s % DIVISOR or s < MIN_SIZE:
            lo = max(MIN_SIZE, s - s % DIVISOR)
            fix = f"use {lo}" if lo >= s else f"use {lo} or {lo + DIVISOR}"
            raise ValueError(f"SCNAS needs every spatial size to be a multiple of {DIVISOR} (3 downsamplings by 2) "
                             f"and at least {MIN_SIZE}; spatial axis {axis} has size {s}, {fix}")


def check_strides(strides: Sequence[Sequence[int]] | None) -> None:
    if strides is not None and [list(s) for s in strides] != STRIDES:
        raise ValueError(f"SCNAS networks downsample 3 times by 2 on every axis; arch_kwargs 'strides' must be "
                         f"{STRIDES}, got {[list(s) for s in strides]}")


class Decoder(nn.Module):
    """Holds the decoder cells and the output heads; nnU-Net toggles ``deep_supervision`` here."""

    def __init__(self, cells: nn.ModuleList, seg_layers: nn.ModuleList, deep_supervision: bool):
        super().__init__()
        self.cells = cells
        self.seg_layers = seg_layers
        self.deep_supervision = deep_supervision


class CellUNet(AbstractDynamicNetworkArchitectures):
    """The macro architecture shared by the supernet and the derived network.

    ``key_to_stem`` and ``keys_to_in_proj`` tell dynamic-network-architectures' tools (and
    anything that adapts pretrained weights to another channel count) which weights depend on
    the input channels: only the stem's conv. nnU-Net's ``-pretrained_weights`` skips the heads
    (``decoder.seg_layers``) itself.
    """

    #: nnU-Net applies ``network.initialize`` to every module after building from plans
    initialize = InitWeights_He(NEGATIVE_SLOPE)

    def __init__(self, input_channels: int, num_classes: int, stem_channels: int, deep_supervision: bool,
                 make_cell: CellFactory, checkpoint_cells: bool = False):
        super().__init__()
        self.key_to_encoder, self.key_to_stem, self.keys_to_in_proj = "encoder", "stem", ("stem.0",)
        if stem_channels % 4 or stem_channels < 4:
            raise ValueError(f"stem_channels must be a positive multiple of 4 (4 nodes per cell), got {stem_channels}")
        self.input_channels, self.num_classes, self.stem_channels = input_channels, num_classes, stem_channels
        self.checkpoint_cells = checkpoint_cells
        self.stem = nn.Sequential(Conv3d(input_channels, stem_channels, 3, padding=1, bias=False),
                                  InstanceNorm3d(stem_channels))
        levels, widths = [0], [stem_channels]  # per output o_0 (stem) .. o_12
        cells = []
        for n, cell_type in enumerate(CELL_SEQUENCE, start=1):
            prev_prev, prev = max(n - 2, 0), n - 1  # indices of the two input outputs
            in_level = levels[prev] + (LEVEL_STEP[cell_type] if cell_type == "expansion" else 0)
            level = levels[prev] + LEVEL_STEP[cell_type]
            width = stem_channels * 2 ** level
            cells.append(make_cell(cell_type, widths[prev_prev], widths[prev], width,
                                   in_level - levels[prev_prev], in_level - levels[prev]))
            levels.append(level)
            widths.append(width)
        n_enc = 2 * N_DOWNSAMPLINGS
        self.encoder = nn.ModuleList(cells[:n_enc])
        # heads on the decoder-normal cells, coarse to fine (as nnU-Net's UNetDecoder)
        heads = nn.ModuleList(nn.Sequential(LeakyReLU(), Conv3d(widths[n], num_classes, 1))
                              for n in range(n_enc + 2, len(CELL_SEQUENCE) + 1, 2))
        self.decoder = Decoder(nn.ModuleList(cells[n_enc:]), heads, deep_supervision)
        # every reader of a cell output (the next two cells' preprocessing, a head) starts with
        # this LeakyReLU: it runs once per output, and autograd keeps one activated copy
        self.activation = LeakyReLU()

    def edge_arguments(self) -> dict[str, tuple]:
        """Per cell type, what its cells pass to their edges in this forward pass: nothing for a
        derived network, (edge weights, active ops) in the supernet."""
        return {t: () for t in CELL_TYPES}

    def _run(self, cell: _Cell, s0: torch.Tensor, s1: torch.Tensor, args: tuple) -> torch.Tensor:
        if self.checkpoint_cells and self.training and torch.is_grad_enabled():
            return checkpoint(cell, s0, s1, *args, use_reentrant=False)
        return cell(s0, s1, *args)

    @torch.compiler.disable  # a layout switch, not part of the graph
    def _training_layout(self, x: torch.Tensor) -> torch.Tensor:
        """CPU training runs channels-last (``channels_last_3d``), weights and input: oneDNN's
        kernels for a cell's narrow convs, depthwise ones most, are several times faster in that
        layout, forward and backward (docs/BENCHMARKS.md, section 7). CPU inference (no grad)
        runs the default layout, which the kernels of ``cpu_inference.py`` are made for. The
        weights are converted in place when the mode changes (cheap: they are small), so
        optimisers keep their parameters. CUDA keeps cuDNN's default layout."""
        if x.device.type != "cpu":
            return x
        layout = CHANNELS_LAST if cpu_training(x) else torch.contiguous_format
        if any(p.dim() == 5 and not p.is_contiguous(memory_format=layout) for p in self.parameters()):
            self.to(memory_format=layout)
        return x.contiguous(memory_format=layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_spatial_size(x.shape[2:])
        x = self._training_layout(x)
        args = self.edge_arguments()
        outs: list[torch.Tensor | None] = [self.stem(x)]  # raw outputs o_0, o_1, ...
        activated: dict[int, torch.Tensor] = {}

        def act(k: int) -> torch.Tensor:
            if k not in activated:
                activated[k] = self.activation(outs[k])
            return activated[k]

        for cell in self.encoder:
            outs.append(self._run(cell, act(max(len(outs) - 2, 0)), act(len(outs) - 1), args[cell.cell_type]))
        logits = []
        heads = iter(self.decoder.seg_layers)
        n_total = len(CELL_SEQUENCE)
        for cell in self.decoder.cells:
            n = len(outs)
            if n < n_total:
                act(n - 1)  # the next cell reads it as s0
            s1 = self.activation(outs[n - 1] + outs[n_total - n])
            outs[n - 1] = outs[n_total - n] = None  # raw copies are dead now; free them before the peak
            outs.append(self._run(cell, act(n - 2), s1, args[cell.cell_type]))
            if cell.cell_type == "dec_normal":
                head = next(heads)
                if self.decoder.deep_supervision or n == n_total:
                    logits.append(head[1](act(n)))  # head = LeakyReLU -> 1x1x1 conv
        logits.reverse()
        return logits if self.decoder.deep_supervision else logits[0]
