"""nnU-Net's integration-test datasets (its own scripts, derived from Dataset004_Hippocampus): an
ignore label (998), regions with sigmoid outputs (997), regions with an ignore label (996); the
fourth, standard labels (999), is tests/test_nnunet_pipeline.py's dataset. On each: plan, SCNAS plans, search, retrain, prediction of held-back cases,
and nnU-Net's evaluation of the fold-0 validation above a floor (see ``_constant_floor``)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from _hippocampus import copy_subset, requires_data, run_logged

TRAINERS = Path(__file__).resolve().parent / "integration_trainers"
N_TRAIN, N_HELD_BACK = 12, 2
SEARCH, RETRAIN, PLANS = "nnUNetTrainerSCNASSearch_integration", "nnUNetTrainerSCNASRetrain_integration", \
    "nnUNetPlansSCNAS"
# Dataset999 (standard labels) runs in tests/test_nnunet_pipeline.py, with more checks
DATASETS = {998: "Dataset998_IntegrationTest_Hippocampus_ignore",
            997: "Dataset997_IntegrationTest_Hippocampus_regions",
            996: "Dataset996_IntegrationTest_Hippocampus_regions_ignore"}

pytestmark = [pytest.mark.slow, pytest.mark.integration,
              requires_data]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("integration")
    source = root / "raw" / "Dataset004_Hippocampus"
    held = root / "held_back"
    copy_subset(source, N_TRAIN, N_HELD_BACK, held)
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "res"), nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", nnUNet_compile="0",
               nnUNet_extTrainer=os.pathsep.join(filter(None, [str(TRAINERS), os.environ.get("nnUNet_extTrainer")])))
    logs = root / "logs"
    logs.mkdir()
    for name in DATASETS.values():
        run_logged([sys.executable, "-m", f"nnunetv2.dataset_conversion.datasets_for_integration_tests.{name}"], env,
             logs / f"convert_{name}.txt")
    return {"root": root, "env": env, "logs": logs, "held": held}


def _constant_floor(gt_folder: Path, keys: list[str], dataset_json: dict) -> float:
    """The best mean foreground Dice of a prediction that ignores the image (one label
    everywhere): what a network that learned nothing can score. Ignore-label voxels excluded.
    (The pipeline test, with a longer budget, asks for twice this.)"""
    import SimpleITK as sitk
    labels = {k: v for k, v in dataset_json["labels"].items() if k not in ("background", "ignore")}
    ignore = dataset_json["labels"].get("ignore")
    targets = [tuple(v) if isinstance(v, list) else (v,) for v in labels.values()]
    segs = [sitk.GetArrayFromImage(sitk.ReadImage(str(gt_folder / f"{k}.nii.gz"))) for k in keys]
    segs = [s[s != ignore] if ignore is not None else s.ravel() for s in segs]
    best = 0.0
    for constant in {v for t in targets for v in t}:
        dice = []
        for t in targets:  # predicting `constant` everywhere: target t is all-positive iff constant in t
            if constant in t:
                dice.append(np.mean([2 * np.isin(s, t).sum() / (s.size + np.isin(s, t).sum()) for s in segs]))
            else:
                dice.append(0.0)
        best = max(best, float(np.mean(dice)))
    return best


@pytest.mark.parametrize("dataset_id", sorted(DATASETS, reverse=True))
def test_search_retrain_predict_on_nnunet_integration_dataset(workspace, dataset_id):
    name, env, logs = DATASETS[dataset_id], workspace["env"], workspace["logs"]
    d = str(dataset_id)
    plan_env = dict(env, nnUNet_n_proc_DA="1")  # nnU-Net's planner sets torch threads from it: 0 fails
    run_logged(["nnUNetv2_plan_and_preprocess", "-d", d, "-c", "3d_fullres", "-np", "1"], plan_env,
         logs / f"plan_{d}.txt")
    run_logged(["nnUNetv2_plan_scnas", "-d", d, "-gpu_memory_target", "8"], env, logs / f"plan_scnas_{d}.txt")
    for trainer in (SEARCH, RETRAIN):
        run_logged(["nnUNetv2_train", d, "3d_fullres", "0", "-tr", trainer, "-p", PLANS, "-device", "cpu"], env,
             logs / f"{trainer}_{d}.txt")
    results = workspace["root"] / "res" / name
    assert (results / f"{SEARCH}__{PLANS}__3d_fullres" / "fold_0" / "genotype.json").is_file()
    model = results / f"{RETRAIN}__{PLANS}__3d_fullres"
    pred = workspace["root"] / f"pred_{d}"
    run_logged(["nnUNetv2_predict", "-i", workspace["held"], "-o", pred, "-d", d, "-c", "3d_fullres", "-f", "0",
          "-tr", RETRAIN, "-p", PLANS, "-device", "cpu", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env,
         logs / f"predict_{d}.txt")
    dataset_json = json.loads((model / "dataset.json").read_text())
    import SimpleITK as sitk
    written = sorted(pred.glob("*.nii.gz"))
    assert len(written) == N_HELD_BACK
    if "regions_class_order" in dataset_json:  # region outputs come back as these labels
        allowed = {0, *dataset_json["regions_class_order"]}
    else:
        allowed = {v for k, v in dataset_json["labels"].items() if k != "ignore"}
    for f in written:
        assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(f)))).tolist()) <= allowed

    summary = json.loads((model / "fold_0" / "validation" / "summary.json").read_text())
    keys = [c["reference_file"].rsplit("/", 1)[1][:-7] for c in summary["metric_per_case"]]
    floor = _constant_floor(workspace["root"] / "pre" / name / "gt_segmentations", keys, dataset_json)
    dice = summary["foreground_mean"]["Dice"]
    print(f"{name}: validation mean Dice {dice:.3f} on {len(keys)} cases, floor {floor:.3f}")
    assert dice > floor
