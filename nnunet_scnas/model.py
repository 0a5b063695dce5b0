"""The derived (fixed) network that is retrained from scratch (paper, Sec. 3: stem 68)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .cells import DerivedCell
from .genotypes import Genotype
from .macro import CellUNet, check_strides
from .recipe import RETRAIN


class SCNASNetwork(CellUNet):
    """A U-Net of cells with one fixed op per edge, built from a genotype.

    The signature follows nnU-Net's ``get_network_from_plans`` (input_channels, num_classes,
    **arch_kwargs, deep_supervision), so a plans.json ``architecture`` block with
    ``network_class_name = "nnunet_scnas.model.SCNASNetwork"`` rebuilds it with no SCNAS code.
    Only the stem depends on the input channels and only the heads on the classes, which is
    what transfer to another task changes (paper, Sec. 3).
    """

    def __init__(self, input_channels: int, num_classes: int, genotype: Genotype | Mapping[str, Any],
                 stem_channels: int = RETRAIN.stem_channels, deep_supervision: bool = True,
                 strides: Sequence[Sequence[int]] | None = None, checkpoint_cells: bool = False):
        check_strides(strides)
        if not isinstance(genotype, Genotype):
            genotype = Genotype.from_dict(genotype, "arch_kwargs.genotype")

        def make_cell(cell_type, c_pp, c_p, c_out, shift0, shift1):
            return DerivedCell(cell_type, genotype.cells[cell_type], c_pp, c_p, c_out, shift0, shift1)

        super().__init__(input_channels, num_classes, stem_channels, deep_supervision, make_cell, checkpoint_cells)
        self.genotype = genotype

    # The genotype travels in every state dict, so that nnU-Net's predictor, which builds one
    # network from plans.json and loads each fold's weights into it, still works when the folds
    # were retrained with different genotypes (one search per fold): loading a state dict with
    # another genotype rebuilds the cells first.
    def get_extra_state(self) -> dict:
        return {"genotype": self.genotype.to_dict()}

    def set_extra_state(self, state: dict) -> None:
        pass  # applied in load_state_dict, before the parameters are matched

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        extra = state_dict.get("_extra_state")
        if isinstance(extra, dict) and "genotype" in extra:
            genotype = Genotype.from_dict(extra["genotype"], "checkpoint genotype")
            if genotype.cells != self.genotype.cells:
                self._rebuild(genotype)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _rebuild(self, genotype: Genotype) -> None:
        ref = self.stem[0].weight
        training, deep_supervision = self.training, self.decoder.deep_supervision
        self.__init__(self.input_channels, self.num_classes, genotype, self.stem_channels,
                      deep_supervision, None, self.checkpoint_cells)
        self.to(device=ref.device, dtype=ref.dtype).train(training)
