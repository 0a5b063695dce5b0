"""A shape-only estimate of the training memory of a network (for planning patch and batch size).

It runs one training-mode forward pass on the meta device and adds up what autograd keeps:
the output of every leaf module (with ``checkpoint_cells``: the cell outputs plus the largest
single cell, which is recomputed during backward), plus parameters, gradients and Adam's two
moments in float32. It ignores allocator fragmentation, cuDNN workspaces and the CUDA context,
for which ``overhead_gb`` stands; bench/gpu_check.sh measures the real peak to calibrate it.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ..genotypes import CELL_TYPES, EDGES
from ..operations import OPS, InstanceNorm3d


def worst_case_two_op_weights() -> dict[str, torch.Tensor]:
    """A two-op draw that keeps the most activations: two separable convs on every edge."""
    w = torch.zeros(len(EDGES), len(OPS))
    w[:, OPS.index("sep_dil_conv_3x3x3_r2")] = 0.5
    w[:, OPS.index("sep_dil_conv_3x3x3_r3")] = 0.5
    return {t: w.clone() for t in CELL_TYPES}


def estimate_training_memory(model: nn.Module, input_shape: Sequence[int], bytes_per_activation: int = 2,
                             checkpoint_cells: bool = False, overhead_gb: float = 1.0) -> float:
    """Estimated peak training memory in GB for one input batch of ``input_shape``."""
    meta = copy.deepcopy(model).to("meta").train()
    if hasattr(meta, "fixed_weights"):
        meta.fixed_weights = worst_case_two_op_weights()  # host tensors: the active ops are read on the host
    cell_of = {}
    for prefix in ("encoder", "decoder.cells"):
        for name, module in meta.named_modules():
            if name.startswith(prefix + ".") and name.count(".") == prefix.count(".") + 1:
                cell_of[module] = name
    per_cell: dict[str, int] = {}
    outside = 0
    boundaries = 0

    def leaf_hook(cell: str | None):
        def hook(module, args, output):
            nonlocal outside
            if isinstance(module, InstanceNorm3d) and len(args) > 1 and args[1] is not None:
                return  # folds the supernet's edge weight into its affine: only the weighted sum reads it
            n = output.numel() if isinstance(output, torch.Tensor) else 0
            if cell is None:
                outside += n
            else:
                per_cell[cell] = per_cell.get(cell, 0) + n
        return hook

    def cell_hook(module, args, output):
        nonlocal boundaries
        boundaries += output.numel()

    handles = []
    for name, module in meta.named_modules():
        if module in cell_of:
            handles.append(module.register_forward_hook(cell_hook))
        if len(list(module.children())) == 0:
            owner = next((c for c in cell_of.values() if name.startswith(c + ".")), None)
            handles.append(module.register_forward_hook(leaf_hook(owner)))
    meta(torch.empty(*input_shape, device="meta"))
    for h in handles:
        h.remove()
    inside = max(per_cell.values(), default=0) + boundaries if checkpoint_cells else sum(per_cell.values())
    activations = (outside + inside) * bytes_per_activation
    params = sum(p.numel() for p in model.parameters()) * 4 * 4  # weights, grads, Adam m and v
    return (activations + params) / 1024 ** 3 + overhead_gb
