"""SCNAS (Kim et al., MICCAI 2019) for nnU-Net v2.

This package is the paper, one concept a file: ``operations`` (op set), ``cells`` (cell DAG),
``macro`` (U-Net of cells), ``sampler`` (Algorithm 1), ``search_model`` (supernet),
``bilevel`` (the bi-level step), ``genotypes`` (derivation, genotype files), ``model`` (the
retrained network), ``recipe`` (the paper's numbers). It imports torch and
dynamic-network-architectures only. nnU-Net's side lives in ``nnunet_scnas.trainers`` and
``nnunet_scnas.plans``; the user tools (command line, demo, compare, diagrams, cost) in
``nnunet_scnas.tools``. Names are resolved lazily, so that importing the package (as the
trainer-discovery hook does at interpreter start) costs nothing.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "OPS": "operations",
    "make_op": "operations",
    "sample_two_ops": "sampler",
    "sample_one_op": "sampler",
    "draw_pairs": "sampler",
    "sample_weights": "sampler",
    "mixture_weights": "sampler",
    "SAMPLING_MODES": "sampler",
    "Genotype": "genotypes",
    "derive": "genotypes",
    "CELL_TYPES": "genotypes",
    "EDGES": "genotypes",
    "SearchNetwork": "search_model",
    "SCNASNetwork": "model",
    "BilevelStep": "bilevel",
    "SEARCH": "recipe",
    "RETRAIN": "recipe",
    "count_flops": "tools.cost",
    "count_parameters": "tools.cost",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
