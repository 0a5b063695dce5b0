"""``nnunet_scnas compare`` on a fabricated nnUNet_results tree (no training, CPU, a few seconds)."""
from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import save_json
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.evaluation.evaluate_predictions import save_summary_json

from nnunet_scnas import CELL_TYPES, Genotype, SCNASNetwork
from nnunet_scnas.tools.compare import add_arguments, compare, format_table, parse_trainer, run
from nnunet_scnas.tools.cost import count_flops, count_parameters
from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain

DATASET_NAME = "Dataset990_Toy"
PATCH = [32, 32, 32]
DATASET = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "anterior": 1, "posterior": 2},
           "numTraining": 10, "file_ending": ".nii.gz"}
UNET_KWARGS = {
    "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2],
    "n_conv_per_stage_decoder": [2, 2], "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
PLANS = {
    "dataset_name": DATASET_NAME, "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": PATCH,
    "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
    "configurations": {"3d_fullres": {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": PATCH, "median_image_size_in_voxels": PATCH, "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
        "batch_dice": False,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": UNET_KWARGS,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}},
    "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {},
}
# fold -> (Dice anterior, Dice posterior, epoch durations in s)
STOCK = {0: (0.80, 0.60, [10.0, 12.0]), 1: (0.90, 0.70, [20.0, 20.0, 20.0])}
SCNAS = {0: (0.70, 0.50, [30.0]), 1: (0.74, 0.58, [50.0])}
EXAMPLE_GENOTYPE = Path(__file__).resolve().parents[1] / "docs" / "example_genotype.json"


def _fold_files(folder: Path, network: torch.nn.Module, dice_a: float, dice_p: float, durations: list[float]) -> None:
    """What training and nnU-Net's validation leave in a fold folder (only the parts compare reads)."""
    per_label = {1: {"Dice": dice_a}, 2: {"Dice": dice_p}}
    (folder / "validation").mkdir(parents=True, exist_ok=True)
    save_summary_json({"metric_per_case": [], "mean": per_label,
                       "foreground_mean": {"Dice": (dice_a + dice_p) / 2}}, str(folder / "validation" / "summary.json"))
    starts = list(np.cumsum([0.0] + durations[:-1]) + 1000.0)
    torch.save({"network_weights": network.state_dict(),
                "logging": {"epoch_start_timestamps": starts,
                            "epoch_end_timestamps": [s + d for s, d in zip(starts, durations)]}},
               folder / "checkpoint_final.pth")


def _stock_network() -> PlainConvUNet:
    kwargs = {**UNET_KWARGS, "conv_op": torch.nn.Conv3d, "norm_op": torch.nn.InstanceNorm3d,
              "nonlin": torch.nn.LeakyReLU}
    return PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=False, **kwargs)


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """Stock folds 0, 1 and SCNAS retrain folds 0 (example genotype), 1 (all-identity genotype); no fold 2."""
    results = tmp_path / "results"
    for env in ("nnUNet_results", "nnUNet_raw", "nnUNet_preprocessed"):
        monkeypatch.setenv(env, str(tmp_path / env.split("_")[1]))
    stock = results / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    stock.mkdir(parents=True)
    save_json(PLANS, str(stock / "plans.json"))
    save_json(DATASET, str(stock / "dataset.json"))
    for fold, (a, p, durations) in STOCK.items():
        _fold_files(stock / f"fold_{fold}", _stock_network(), a, p, durations)

    identity = tmp_path / "identity.json"
    Genotype({t: ("identity",) * 14 for t in CELL_TYPES}).save(identity)
    plans = {**copy.deepcopy(PLANS), "plans_name": "nnUNetPlansSCNAS", "continue_training": False}  # nnU-Net pops it
    for fold, genotype in ((0, EXAMPLE_GENOTYPE), (1, identity)):
        # the retrain's own path: genotype lookup, architecture block in the plans, nnU-Net's static builder
        monkeypatch.setenv("SCNAS_GENOTYPE", str(genotype))
        trainer = nnUNetTrainerSCNASRetrain(copy.deepcopy(plans), "3d_fullres", fold, DATASET, torch.device("cpu"))
        trainer._set_architecture("nnunet_scnas.model.SCNASNetwork",
                                  {"genotype": trainer.genotype.to_dict(), "stem_channels": 8})
        net = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 3, False)
        save_json(trainer.plans_manager.plans, str(Path(trainer.output_folder_base) / "plans.json"), sort_keys=False)
        save_json(DATASET, str(Path(trainer.output_folder_base) / "dataset.json"))
        a, p, durations = SCNAS[fold]
        _fold_files(Path(trainer.output_folder), net, a, p, durations)
    monkeypatch.delenv("SCNAS_GENOTYPE")
    return results


def _scnas(genotype) -> SCNASNetwork:
    return SCNASNetwork(1, 3, Genotype.load(genotype), stem_channels=8, deep_supervision=False)


def test_rows_statistics_costs_and_report(results, tmp_path):
    report = tmp_path / "report"
    trainers = [parse_trainer(s) for s in ("nnUNetTrainer", "nnUNetTrainerSCNASRetrain:nnUNetPlansSCNAS",
                                           "nnUNetTrainer:nnUNetResEncUNetMPlans")]
    rows = compare(DATASET_NAME, "3d_fullres", [0, 1, 2], trainers, str(report))
    stock, scnas, resenc = rows

    for row, truth in ((stock, STOCK), (scnas, SCNAS)):
        a, p, durations = zip(*truth.values())
        fg = [(x + y) / 2 for x, y in zip(a, p)]
        assert (row["n_folds"], row["folds"]) == (2, "0 1")
        assert row["dice_anterior"] == pytest.approx(np.mean(a))
        assert row["dice_anterior_std"] == pytest.approx(np.std(a, ddof=1))
        assert row["dice_posterior"] == pytest.approx(np.mean(p))
        assert row["dice_foreground_mean"] == pytest.approx(np.mean(fg))
        assert row["dice_foreground_mean_std"] == pytest.approx(np.std(fg, ddof=1))
        assert row["epoch_time_s"] == pytest.approx(np.mean([np.mean(d) for d in durations]))
        assert row["epochs"] == pytest.approx(np.mean([len(d) for d in durations]))
        assert any(m.startswith("fold 2: no ") for m in row["missing"])

    net = _stock_network()
    assert stock["params"] == count_parameters(net) > 0
    assert stock["gflops"] == pytest.approx(count_flops(net, [1, 1, *PATCH]) / 1e9)
    # SCNAS: each fold counts its own genotype (from its checkpoint), not the one last written to plans.json
    per_fold = [count_parameters(_scnas(g)) for g in (EXAMPLE_GENOTYPE, tmp_path / "identity.json")]
    assert per_fold[0] != per_fold[1] and scnas["params"] == round(np.mean(per_fold))
    assert scnas["gflops"] > 0 and any("differ between folds" in n for n in scnas["notes"])
    assert resenc["n_folds"] == 0 and resenc["params"] is None and resenc["dice_foreground_mean"] is None
    assert any("nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres" in m for m in resenc["missing"])

    md = (report / "comparison.md").read_text()
    assert "| nnUNetTrainer | nnUNetPlans | 2 (0 1) | 0.8500 ± 0.0707 | 0.6500 ± 0.0707 |" in md
    assert "| nnUNetTrainer | nnUNetResEncUNetMPlans | missing |" in md
    assert "- nnUNetTrainer:nnUNetPlans: fold 2: no " in md and "nnunet_scnas compare -d Dataset990_Toy" in md
    with open(report / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["trainer"] for r in table] == ["nnUNetTrainer", "nnUNetTrainerSCNASRetrain", "nnUNetTrainer"]
    assert float(table[0]["dice_anterior"]) == pytest.approx(0.85) and table[2]["params"] == "n/a"
    assert (report / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in report.iterdir() if f.name.startswith(".tmp_")]
    assert format_table(rows).count("\n") == 1 + len(rows)


def test_command_defaults_prints_table_and_missing_folds(results, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args(["-d", "990", "-c", "3d_fullres", "-f", "0", "2"]))
    out = capsys.readouterr().out
    assert "Dice anterior" in out and "nnUNetTrainerSCNASRetrain" in out and "0.8000" in out
    assert "nnUNetTrainer:nnUNetPlans: fold 2: no " in out
    assert (results / DATASET_NAME / "scnas_compare_3d_fullres" / "comparison.md").is_file()


def test_broken_plans_give_na_not_a_crash(results, tmp_path):
    plans = results / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "plans.json"
    broken = copy.deepcopy(PLANS)
    broken["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["no_such_option"] = 1
    save_json(broken, str(plans))
    stock = compare(DATASET_NAME, "3d_fullres", [0, 1], [("nnUNetTrainer", "nnUNetPlans")], str(tmp_path / "r"))[0]
    assert stock["params"] is None and stock["dice_anterior"] == pytest.approx(0.85)
    assert any("parameters and GFLOPs n/a" in n for n in stock["notes"])


def test_unknown_dataset_and_unwritable_report_are_one_line_errors(results, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset '999'") as info:
        compare("999", "3d_fullres")
    assert "\n" not in str(info.value)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="report folder .*a_file") as info:
        compare(DATASET_NAME, "3d_fullres", [0], report_dir=str(blocker / "report"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec, expected", [("nnUNetTrainer", ("nnUNetTrainer", "nnUNetPlans")),
                                            ("T:nnUNetResEncUNetMPlans", ("T", "nnUNetResEncUNetMPlans"))])
def test_trainer_spec(spec, expected):
    assert parse_trainer(spec) == expected
    for bad in ("", ":P", "T:", "T:P:Q"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_trainer(bad)
