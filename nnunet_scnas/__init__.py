"""SCNAS (Kim et al., MICCAI 2019) for nnU-Net v2: op set, cells, Algorithm 1, networks, genotypes.

The core imports only torch. Names are resolved lazily so that importing the package (as the
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
    "count_flops": "cost",
    "count_parameters": "cost",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
