"""The user's commands on real hippocampus cases: plan, SCNAS plans, search (killed mid-epoch and
continued with --c), retrain, nnUNetv2_predict on cases the project never saw, nnU-Net's
evaluation. Runs the installed console scripts in a clean environment (no nnUNet_extTrainer).
The dataset is nnU-Net's integration-test Dataset999 (its own script: Dataset004 as it is);
tests/test_integration_datasets.py covers the other three label scenarios."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _hippocampus import BIN, copy_subset, requires_data, run_logged

N_TRAIN, N_HELD_BACK = 20, 5
DATASET = "Dataset999_IntegrationTest_Hippocampus"
SEARCH = "nnUNetTrainerSCNASSearch_smoke"
RETRAIN = "nnUNetTrainerSCNASRetrain_smoke"
PLANS = "nnUNetPlansSCNAS"

pytestmark = [pytest.mark.slow,
              requires_data]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    raw = root / "raw" / "Dataset004_Hippocampus"
    held_in, held_gt = root / "held_back", root / "held_back_gt"
    copy_subset(raw, N_TRAIN, N_HELD_BACK, held_in, held_gt)

    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "res"), nnUNet_n_proc_DA="1", nnUNet_def_n_proc="2", nnUNet_compile="0")
    logs = root / "logs"
    logs.mkdir()
    subprocess.run([sys.executable, "-m", f"nnunetv2.dataset_conversion.datasets_for_integration_tests.{DATASET}"],
                   env=env, check=True, capture_output=True)
    run_logged(["nnUNetv2_plan_and_preprocess", "-d", "999", "-c", "3d_fullres", "-np", "2"], env, logs / "plan.txt")
    run_logged(["nnUNetv2_plan_scnas", "-d", "999", "-gpu_memory_target", "8"], env, logs / "plan_scnas.txt")
    # augmentation in the training process: on 2 cores, worker processes only fight its threads
    env["nnUNet_n_proc_DA"] = "0"

    search_cmd = ["nnUNetv2_train", "999", "3d_fullres", "0", "-tr", SEARCH, "-p", PLANS, "-device", "cpu"]
    fold = root / "res" / DATASET / f"{SEARCH}__{PLANS}__3d_fullres" / "fold_0"
    with open(logs / "search_killed.txt", "w") as f:
        proc = subprocess.Popen([str(BIN / search_cmd[0]), *search_cmd[1:]], env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 900
        while not (fold / "checkpoint_latest.pth").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(1)
        time.sleep(15)  # now inside epoch 1
        killed_mid_epoch = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    run_logged(search_cmd + ["--c"], env, logs / "search_continued.txt")
    run_logged(["nnUNetv2_train", "999", "3d_fullres", "0", "-tr", RETRAIN, "-p", PLANS, "-device", "cpu"], env,
         logs / "retrain.txt")
    pred = root / "pred"
    run_logged(["nnUNetv2_predict", "-i", str(held_in), "-o", str(pred), "-d", "999", "-c", "3d_fullres", "-f", "0",
          "-tr", RETRAIN, "-p", PLANS, "-device", "cpu", "--disable_progress_bar"], env, logs / "predict.txt")
    model = root / "res" / DATASET / f"{RETRAIN}__{PLANS}__3d_fullres"
    run_logged(["nnUNetv2_evaluate_folder", str(held_gt), str(pred), "-djfile", str(model / "dataset.json"),
          "-pfile", str(model / "plans.json")], env, logs / "evaluate.txt")
    return {"root": root, "env": env, "search_fold": fold, "model": model, "pred": pred, "held_gt": held_gt,
            "killed_mid_epoch": killed_mid_epoch, "logs": logs}


def test_scnas_plans_patch_divisible_by_8_and_share_preprocessed_data(pipeline):
    pre = pipeline["root"] / "pre" / DATASET
    plans = json.loads((pre / f"{PLANS}.json").read_text())
    stock = json.loads((pre / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    assert all(s % 8 == 0 and s >= 24 for s in cfg["patch_size"])
    assert cfg["data_identifier"] == stock["configurations"]["3d_fullres"]["data_identifier"]
    assert "2d" not in plans["configurations"]


def test_search_was_killed_mid_epoch_and_continued_to_a_genotype(pipeline):
    from nnunet_scnas import Genotype
    fold = pipeline["search_fold"]
    assert pipeline["killed_mid_epoch"], "the search ended before it could be killed mid-epoch"
    assert "epoch 1" in (pipeline["logs"] / "search_continued.txt").read_text().lower()
    genotype = Genotype.load(fold / "genotype.json")
    assert genotype.provenance["dataset"] == DATASET and genotype.provenance["fold"] == 0
    assert Genotype.load(fold / "genotype_latest.json").cells == genotype.cells
    history = json.loads((fold / "alpha_history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[1]["tau"] < history[0]["tau"]
    split = json.loads((fold / "scnas_split.json").read_text())
    splits = json.loads((pipeline["root"] / "pre" / DATASET / "splits_final.json").read_text())
    assert sorted(split["weights"] + split["architecture"]) == sorted(splits[0]["train"])
    assert not set(split["architecture"]) & set(split["weights"])
    assert len(split["architecture"]) == round(len(splits[0]["train"]) / 5)
    for name in ("progress.png", "progress_search.png", "alpha_history.png", "checkpoint_final.pth",
                 "validation/summary.json", *(f"cells/cell_{t}.png" for t in ("enc_normal", "reduction",
                                                                              "dec_normal", "expansion"))):
        assert (fold / name).is_file(), name
    assert not list(fold.glob(".tmp_*")), "a temporary checkpoint was left behind"


def test_retrain_uses_the_search_genotype_and_writes_it_into_plans(pipeline):
    from nnunet_scnas import Genotype
    model = pipeline["model"]
    searched = Genotype.load(pipeline["search_fold"] / "genotype.json")
    assert Genotype.load(model / "fold_0" / "genotype.json").cells == searched.cells
    arch = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]["architecture"]
    assert arch["network_class_name"] == "nnunet_scnas.model.SCNASNetwork"
    assert Genotype.from_dict(arch["arch_kwargs"]["genotype"]).cells == searched.cells
    assert arch["arch_kwargs"]["stem_channels"] == 8
    assert (model / "fold_0" / "validation" / "summary.json").is_file()


def _best_constant_dice(gt_folder: Path) -> float:
    """Mean foreground Dice of the best prediction that ignores the image (one label everywhere)."""
    import SimpleITK as sitk
    gts = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(gt_folder.glob("*.nii.gz"))]
    best = 0.0
    for label in (1, 2):
        dice = np.mean([2 * (g == label).sum() / (g.size + (g == label).sum()) for g in gts])
        best = max(best, dice / 2)  # the other label's Dice is 0
    return best


def test_prediction_on_unseen_cases_beats_any_constant_prediction(pipeline):
    summary = json.loads((pipeline["pred"] / "summary.json").read_text())
    assert len(list(pipeline["pred"].glob("*.nii.gz"))) == N_HELD_BACK
    dice = summary["foreground_mean"]["Dice"]
    floor = 2 * _best_constant_dice(pipeline["held_gt"])
    print(f"held-back mean Dice {dice:.3f} (anterior {summary['mean']['1']['Dice']:.3f}, posterior "
          f"{summary['mean']['2']['Dice']:.3f}); floor {floor:.3f}")
    assert dice > floor


def test_stock_predictor_rebuilds_the_network_from_plans_json(pipeline, monkeypatch):
    for k, v in pipeline["env"].items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunet_scnas import Genotype, SCNASNetwork
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    predictor.initialize_from_trained_model_folder(str(pipeline["model"]), use_folds=(0,),
                                                   checkpoint_name="checkpoint_final.pth")
    assert isinstance(predictor.network, SCNASNetwork)
    assert predictor.network.genotype.cells == Genotype.load(pipeline["model"] / "fold_0" / "genotype.json").cells
    predictor.network.load_state_dict(predictor.list_of_parameters[0])  # strict


def test_transfer_adapts_the_stem_to_another_channel_count(pipeline, monkeypatch):
    for k, v in pipeline["env"].items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    import torch
    from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_smoke
    pre = pipeline["root"] / "pre" / DATASET
    plans = json.loads((pre / f"{PLANS}.json").read_text())
    plans["continue_training"] = False  # nnU-Net's run_training adds this key
    dataset_json = json.loads((pre / "dataset.json").read_text())
    dataset_json["channel_names"] = {"0": "T1", "1": "T2"}
    monkeypatch.setenv("SCNAS_GENOTYPE", str(pipeline["search_fold"] / "genotype.json"))
    trainer = nnUNetTrainerSCNASRetrain_smoke(plans, "3d_fullres", 1, dataset_json, torch.device("cpu"))
    trainer.initialize()
    assert trainer.network.stem[0].in_channels == 2
    assert trainer.genotype_source.endswith("($SCNAS_GENOTYPE)")
