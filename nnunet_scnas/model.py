"""The derived (fixed) network that is retrained from scratch (paper, Sec. 3: stem 68)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .cells import DerivedCell
from .genotypes import Genotype
from .macro import CellUNet, check_strides


class SCNASNetwork(CellUNet):
    """A U-Net of cells with one fixed op per edge, built from a genotype.

    The signature follows nnU-Net's ``get_network_from_plans`` (input_channels, num_classes,
    **arch_kwargs, deep_supervision), so a plans.json ``architecture`` block with
    ``network_class_name = "nnunet_scnas.model.SCNASNetwork"`` rebuilds it with no SCNAS code.
    Only the stem depends on the input channels and only the heads on the classes, which is
    what transfer to another task changes (paper, Sec. 3).
    """

    def __init__(self, input_channels: int, num_classes: int, genotype: Genotype | Mapping[str, Any],
                 stem_channels: int = 68, deep_supervision: bool = True,
                 strides: Sequence[Sequence[int]] | None = None, checkpoint_cells: bool = False):
        check_strides(strides)
        if not isinstance(genotype, Genotype):
            genotype = Genotype.from_dict(genotype, "arch_kwargs.genotype")

        def make_cell(cell_type, c_pp, c_p, c_out, shift0, shift1):
            return DerivedCell(cell_type, genotype.cells[cell_type], c_pp, c_p, c_out, shift0, shift1)

        super().__init__(input_channels, num_classes, stem_channels, deep_supervision, make_cell, checkpoint_cells)
        self.genotype = genotype
