"""The supernet: every edge holds all 8 ops; one alpha table [14, 8] per cell type.

In training mode every forward pass draws one architecture per cell type with the sampler of
``sampling`` (``two_op`` = Algorithm 1, ``one_op``, ``all``); all cells of a type share the
draw, as they share alpha (paper, Sec. 2.1). Only ops with a non-zero weight run. In eval mode
the network is the derived sub-network (per edge the strongest op), which is what nnU-Net's
validation and prediction then measure.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .cells import SearchCell
from .genotypes import CELL_TYPES, EDGES, Genotype, derive
from .macro import CellUNet, check_strides
from .operations import OPS
from .recipe import SEARCH
from .sampler import SAMPLING_MODES, sample_weights


class SearchNetwork(CellUNet):
    """Supernet with architecture logits ``alphas[cell_type]`` and temperature buffer ``tau``."""

    def __init__(self, input_channels: int, num_classes: int, stem_channels: int = SEARCH.stem_channels,
                 deep_supervision: bool = True, strides: Sequence[Sequence[int]] | None = None,
                 sampling: str = "two_op", tau: float = 1.0, checkpoint_cells: bool = False):
        check_strides(strides)
        super().__init__(input_channels, num_classes, stem_channels, deep_supervision, SearchCell, checkpoint_cells)
        # DARTS initialises alpha at 1e-3 * N(0, 1): near-uniform, but not exactly tied
        self.alphas = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))
                                        for t in CELL_TYPES})
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.sampling = sampling
        self.generator: torch.Generator | None = None  # set for reproducible / rank-identical draws
        #: if set, training-mode passes use these [14, 8] tables instead of sampling (benchmarks, estimates)
        self.fixed_weights: dict[str, torch.Tensor] | None = None
        self._derived_cache: tuple[tuple, dict] | None = None

    @property
    def sampling(self) -> str:
        return self._sampling

    @sampling.setter
    def sampling(self, mode: str) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
        self._sampling = mode

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def genotype(self, provenance: Mapping[str, Any] | None = None) -> Genotype:
        prov = {"tau": float(self.tau)}
        prov.update(provenance or {})
        return derive(dict(self.alphas), prov)

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        key = tuple(a._version for a in self.alphas.values()) + tuple(a.data_ptr() for a in self.alphas.values())
        if self._derived_cache is None or self._derived_cache[0] != key:
            self._derived_cache = (key, derive(dict(self.alphas)).one_hot(self.tau.device))
        return self._derived_cache[1]

    def sample(self) -> dict[str, torch.Tensor]:
        """One draw of edge weights per cell type ([14, 8] each, differentiable w.r.t. alpha)."""
        return {t: sample_weights(self.alphas[t], float(self.tau), self.sampling, self.generator)
                for t in CELL_TYPES}

    def edge_arguments(self) -> dict[str, tuple]:
        """Per cell type (edge weights [14, 8], active op indices per edge): this pass's draw in
        training, the derived one-hot architecture in eval mode."""
        if not self.training:
            weights = self._derived_weights()
        else:
            weights = self.fixed_weights if self.fixed_weights is not None else self.sample()
        out = {}
        for t, w in weights.items():
            active = [[k for k, nz in enumerate(row) if nz] for row in (w != 0).tolist()]
            out[t] = (w, active)
        return out
