"""``nnUNetv2_plan_scnas``: SCNAS plans (``nnUNetPlansSCNAS``) beside a dataset's nnU-Net plans.

nnU-Net has no hook for external planners, so this reads the plans that
``nnUNetv2_plan_and_preprocess`` wrote and adds a plans file of its own. Only patch and batch
size change (patch: a multiple of 8 on every axis, as the SCNAS U-Net downsamples 3 times;
both: what fits ``-gpu_memory_target`` for the supernet and the retrained network at the
stems of ``nnunet_scnas.recipe``). Spacing, normalisation and ``data_identifier`` stay, so the preprocessed data is
shared and nothing is preprocessed again.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys

from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json

from nnunet_scnas._io import atomic_write_json
from nnunet_scnas.genotypes import CELL_TYPES, Genotype
from nnunet_scnas.macro import DIVISOR, MIN_SIZE
from nnunet_scnas.model import SCNASNetwork
from nnunet_scnas.recipe import RETRAIN, SEARCH
from nnunet_scnas.search_model import SearchNetwork
from nnunet_scnas.tools.memory import estimate_training_memory

MIN_BATCH = 2  # as nnU-Net


def _round_patch(patch: list[int], divisor: int) -> list[int]:
    """Each axis down to a multiple of ``divisor``, but at least the smallest such multiple >= MIN_SIZE."""
    smallest = -(-MIN_SIZE // divisor) * divisor
    return [max(smallest, s - s % divisor) for s in patch]


def scnas_memory_gb(patch: list[int], batch: int, in_channels: int, num_classes: int) -> tuple[float, float]:
    """Estimated training memory (GB) of the search step (the recipe's stem, 48; per-cell
    checkpointing; a worst-case two-op draw) and of the retrain step (stem 68, separable convs
    everywhere)."""
    shape = (batch, in_channels, *patch)
    search = estimate_training_memory(SearchNetwork(in_channels, num_classes, SEARCH.stem_channels), shape,
                                      checkpoint_cells=True)
    heavy = Genotype({t: ("sep_dil_conv_3x3x3_r2",) * 14 for t in CELL_TYPES})
    retrain = estimate_training_memory(SCNASNetwork(in_channels, num_classes, heavy, RETRAIN.stem_channels), shape)
    return search, retrain


def choose_patch_and_batch(patch: list[int], batch: int, divisor: int, in_channels: int, num_classes: int,
                           target_gb: float) -> tuple[list[int], int, float]:
    """Start from nnU-Net's patch (rounded to ``divisor``) and batch; lower the batch to 2, then
    shrink the largest axis by ``divisor``, until both steps fit ``target_gb``."""
    patch = _round_patch(list(patch), divisor)
    batch = max(MIN_BATCH, batch)
    while True:
        need = max(scnas_memory_gb(patch, batch, in_channels, num_classes))
        if need <= target_gb:
            return patch, batch, need
        if batch > MIN_BATCH:
            batch -= 1
            continue
        axis = max(range(len(patch)), key=lambda a: patch[a])
        if patch[axis] - divisor < MIN_SIZE:
            raise ValueError(f"even the smallest SCNAS patch {patch} at batch {batch} needs about {need:.1f} GB, "
                             f"more than -gpu_memory_target {target_gb:g}")
        patch[axis] -= divisor


def plan_scnas(dataset: str, source_plans: str = "nnUNetPlans", plans_name: str = "nnUNetPlansSCNAS",
               gpu_memory_target_gb: float = 16.0) -> str:
    """Write ``nnUNet_preprocessed/DATASET/<plans_name>.json``; returns its path."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    if not nnUNet_preprocessed.is_set():
        raise ValueError("environment variable nnUNet_preprocessed is not set")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError:
        raise ValueError(f"dataset {dataset!r} not found in nnUNet_preprocessed or nnUNet_raw") from None
    src = join(str(nnUNet_preprocessed), name, f"{source_plans}.json")
    if not isfile(src):
        raise ValueError(f"{src} not found; run 'nnUNetv2_plan_and_preprocess -d {dataset} -c 3d_fullres' first")
    plans = load_json(src)
    dataset_json = load_json(join(str(nnUNet_preprocessed), name, "dataset.json"))
    in_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {"0": None})))
    labels = dataset_json["labels"]
    num_classes = len(labels)  # an upper bound of the heads (regions: fewer); the heads cost little
    out = copy.deepcopy(plans)
    out["plans_name"] = plans_name
    out["configurations"] = {}
    for cfg_name, cfg in plans["configurations"].items():
        full = {**plans["configurations"].get(cfg.get("inherits_from", ""), {}), **cfg}
        if len(full.get("patch_size", [])) != 3:
            continue  # SCNAS is a 3D method: 2d configurations are left out
        strides = full["architecture"]["arch_kwargs"]["strides"]
        divisor = math.lcm(DIVISOR, *[math.prod(s[a] for s in strides) for a in range(3)])
        patch, batch, need = choose_patch_and_batch(full["patch_size"], full["batch_size"], divisor, in_channels,
                                                    num_classes, gpu_memory_target_gb)
        new = copy.deepcopy(cfg)
        new["patch_size"], new["batch_size"] = patch, batch
        out["configurations"][cfg_name] = new
        print(f"{name} {cfg_name}: patch {full['patch_size']} -> {patch}, batch {full['batch_size']} -> {batch} "
              f"(estimated {need:.1f} GB of {gpu_memory_target_gb:g} GB)")
    if not out["configurations"]:
        raise ValueError(f"{src} has no 3D configuration")
    path = join(str(nnUNet_preprocessed), name, f"{plans_name}.json")
    atomic_write_json(out, path)
    print(f"wrote {path}; train with -p {plans_name}")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="nnUNetv2_plan_scnas", description=__doc__.split("\n\n")[0])
    p.add_argument("-d", nargs="+", required=True, help="dataset ids or names")
    p.add_argument("-gpu_memory_target", type=float, default=16.0, help="GB per GPU (default 16, the paper's V100)")
    p.add_argument("-source_plans", default="nnUNetPlans", help="nnU-Net plans to start from")
    p.add_argument("-overwrite_plans_name", default="nnUNetPlansSCNAS", help="name of the plans written")
    args = p.parse_args(argv)
    for d in args.d:
        try:
            plan_scnas(d, args.source_plans, args.overwrite_plans_name, args.gpu_memory_target)
        except ValueError as e:
            sys.exit(f"nnUNetv2_plan_scnas: error: {e}")


if __name__ == "__main__":
    main()
