"""``nnUNetv2_plan_scnas`` (plans/planner.py): patch rounding, batch from the memory target,
refusal when nothing fits, which configurations are planned, and the plans file it writes.

Most tests replace ``scnas_memory_gb`` by a fake proportional to batch x voxels, so the patch
and batch the planner must pick can be worked out by hand from its rules (docstring of
``choose_patch_and_batch``): round the patch down to the divisor, lower the batch to 2, then
shrink the largest axis by the divisor. One test runs the real estimate end to end.
"""
import json
import math
import os
import re

import pytest

from nnunet_scnas.plans import planner
from nnunet_scnas.recipe import RETRAIN, SEARCH

DATASET = "Dataset042_Fake"
STRIDES_8 = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]  # product 8 on every axis
STRIDES_16 = STRIDES_8 + [[1, 2, 2]]  # products 8, 16, 16: lcm with 8 is 16 for all axes


def _config(patch, batch, strides, identifier):
    return {"data_identifier": identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": batch,
            "patch_size": patch, "spacing": [1.0] * len(patch), "normalization_schemes": ["ZScoreNormalization"] * 2,
            "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                             "arch_kwargs": {"strides": strides}, "_kw_requires_import": []}}


def _plans(configurations):
    return {"dataset_name": DATASET, "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1, 1, 1],
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": configurations,
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager"}


FULLRES = _config([45, 61, 50], 5, STRIDES_8, "nnUNetPlans_3d_fullres")  # not a multiple of 8 on any axis
TWO_D = _config([61, 50], 40, [[1, 1], [2, 2], [2, 2]], "nnUNetPlans_2d")


@pytest.fixture
def preprocessed(tmp_path, monkeypatch):
    """A fake nnUNet_preprocessed with Dataset042_Fake (2 channels, 3 labels); returns its folder.
    nnunetv2.paths reads the environment on every use (``_EnvPath``), and so does the id lookup."""
    root = tmp_path / "preprocessed"
    folder = root / DATASET
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 4, "file_ending": ".nii.gz"}))
    monkeypatch.setenv("nnUNet_preprocessed", str(root))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.delenv("nnUNet_results", raising=False)
    return folder


def _write_plans(folder, configurations, name="nnUNetPlans"):
    path = folder / f"{name}.json"
    path.write_text(json.dumps(_plans(configurations), indent=1))
    return path


class FakeMemory:
    """search = batch x voxels x 1e-5 GB, retrain twice that: the planner must fit the larger."""

    def __init__(self):
        self.calls = []

    def __call__(self, patch, batch, in_channels, num_classes):
        self.calls.append((list(patch), batch, in_channels, num_classes))
        v = batch * math.prod(patch)
        return v * 1e-5, v * 2e-5


@pytest.fixture
def fake_memory(monkeypatch):
    fake = FakeMemory()
    monkeypatch.setattr(planner, "scnas_memory_gb", fake)
    return fake


def _need(patch, batch):
    return batch * math.prod(patch) * 2e-5


# -- rounding --------------------------------------------------------------------------------

@pytest.mark.parametrize("patch,divisor,expected", [
    ([45, 61, 50], 8, [40, 56, 48]),     # down to a multiple of 8
    ([40, 56, 48], 8, [40, 56, 48]),     # already valid: unchanged
    ([20, 31, 24], 8, [24, 24, 24]),     # below 24 goes up to 24 (the coarsest level needs 3 voxels)
    ([45, 61, 50], 16, [32, 48, 48]),    # the plans' strides can ask for a larger divisor
    ([100, 64, 70], 32, [96, 64, 64]),
])
def test_round_patch_to_a_valid_multiple_of_the_divisor(patch, divisor, expected):
    out = planner._round_patch(patch, divisor)
    assert out == expected
    assert all(s % divisor == 0 and s % 8 == 0 and s >= 24 for s in out)


def test_round_patch_never_goes_below_the_scnas_minimum():
    assert all(s >= 24 and s % 16 == 0 for s in planner._round_patch([24, 28, 64], 16))


def test_round_patch_below_the_minimum_takes_the_smallest_valid_multiple():
    assert planner._round_patch([20, 64, 64], 32) == [32, 64, 64]


# -- batch and patch from the memory target ---------------------------------------------------

def test_batch_is_lowered_before_the_patch_and_fits_the_larger_of_both_steps(fake_memory):
    rounded = [40, 56, 48]
    # batch 3 needs 6.45 GB (retrain step), batch 4 8.60 GB: with 7 GB the answer is batch 3
    assert _need(rounded, 3) <= 7.0 < _need(rounded, 4)
    patch, batch, need = planner.choose_patch_and_batch([45, 61, 50], 5, 8, 2, 3, 7.0)
    assert (patch, batch) == (rounded, 3)
    assert need == pytest.approx(_need(rounded, 3))
    assert [c[:2] for c in fake_memory.calls] == [(rounded, 5), (rounded, 4), (rounded, 3)]
    # had it fitted only the search step (half as much), batch 5 would have been taken
    assert _need(rounded, 5) / 2 <= 7.0


def test_patch_shrinks_only_at_batch_2_and_only_its_largest_axis(fake_memory):
    # rounded [24, 80, 40]; at batch 2 the long axis must go 80 -> 72 -> 64 to fit 2.6 GB
    assert _need([24, 72, 40], 2) > 2.6 >= _need([24, 64, 40], 2)
    patch, batch, _ = planner.choose_patch_and_batch([30, 85, 45], 4, 8, 1, 2, 2.6)
    assert (patch, batch) == ([24, 64, 40], 2)
    tried = [c[:2] for c in fake_memory.calls]
    assert tried == [([24, 80, 40], 4), ([24, 80, 40], 3), ([24, 80, 40], 2), ([24, 72, 40], 2),
                     ([24, 64, 40], 2)]


def test_patch_shrinks_by_the_divisor_from_the_plans_strides(fake_memory):
    # divisor 16: rounded [32, 48, 48] -> one step of 16 on one of the two largest axes
    assert _need([32, 32, 48], 2) <= 2.5 < _need([32, 48, 48], 2)
    patch, batch, _ = planner.choose_patch_and_batch([45, 61, 50], 2, 16, 1, 2, 2.5)
    assert batch == 2 and sorted(patch) == [32, 32, 48] and patch[0] == 32
    assert all(s % 16 == 0 for s in patch)


def test_batch_below_nnunets_minimum_is_raised_to_2(fake_memory):
    assert planner.choose_patch_and_batch([40, 56, 48], 1, 8, 1, 2, 100.0)[:2] == ([40, 56, 48], 2)


def test_nothing_fits_is_a_value_error_at_the_smallest_patch(fake_memory):
    assert _need([24, 24, 24], 2) > 0.5
    with pytest.raises(ValueError, match=r"smallest SCNAS patch \[24, 24, 24\] at batch 2 .* 0\.5"):
        planner.choose_patch_and_batch([45, 61, 50], 5, 8, 1, 2, 0.5)
    assert fake_memory.calls[-1][:2] == ([24, 24, 24], 2)


# -- the command ---------------------------------------------------------------------------------

def test_plans_file_has_only_3d_configurations_new_patch_and_batch_same_data(preprocessed, fake_memory, capsys):
    cascade = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    lowres = _config([45, 61, 50], 2, STRIDES_16, "nnUNetPlans_3d_lowres")
    source = _write_plans(preprocessed, {"2d": TWO_D, "3d_fullres": FULLRES, "3d_lowres": lowres,
                                         "3d_cascade_fullres": cascade})
    source_text = source.read_text()
    planner.main(["-d", "42", "-gpu_memory_target", "7"])  # the id is looked up in nnUNet_preprocessed

    out_path = preprocessed / "nnUNetPlansSCNAS.json"
    out = json.loads(out_path.read_text())
    assert source.read_text() == source_text  # nnU-Net's plans are left alone
    assert out["plans_name"] == "nnUNetPlansSCNAS"
    assert set(out["configurations"]) == {"3d_fullres", "3d_lowres", "3d_cascade_fullres"}  # no 2d
    cfgs = out["configurations"]
    assert (cfgs["3d_fullres"]["patch_size"], cfgs["3d_fullres"]["batch_size"]) == ([40, 56, 48], 3)
    assert (cfgs["3d_lowres"]["patch_size"], cfgs["3d_lowres"]["batch_size"]) == ([32, 48, 48], 2)
    # an inheriting configuration is planned from its merged settings and keeps its link
    assert cfgs["3d_cascade_fullres"] == {**cascade, "patch_size": [40, 56, 48], "batch_size": 3}
    # everything but patch and batch is nnU-Net's: the preprocessed data is shared
    for name in ("3d_fullres", "3d_lowres"):
        src = _plans({"3d_fullres": FULLRES, "3d_lowres": lowres})["configurations"][name]
        assert {k: v for k, v in cfgs[name].items() if k not in ("patch_size", "batch_size")} == \
            {k: v for k, v in src.items() if k not in ("patch_size", "batch_size")}
    src_top = {k: v for k, v in json.loads(source_text).items() if k not in ("plans_name", "configurations")}
    assert {k: v for k, v in out.items() if k not in ("plans_name", "configurations")} == src_top
    # channels and classes from dataset.json reach the estimate
    assert {c[2:] for c in fake_memory.calls} == {(2, 3)}
    assert sorted(os.listdir(preprocessed)) == ["dataset.json", "nnUNetPlans.json", "nnUNetPlansSCNAS.json"]
    printed = capsys.readouterr().out
    assert "3d_fullres: patch [45, 61, 50] -> [40, 56, 48], batch 5 -> 3" in printed
    assert "train with -p nnUNetPlansSCNAS" in printed


def test_other_source_and_output_plans_names(preprocessed, fake_memory):
    _write_plans(preprocessed, {"3d_fullres": FULLRES}, name="nnUNetResEncUNetMPlans")
    path = planner.plan_scnas(DATASET, "nnUNetResEncUNetMPlans", "MySCNASPlans", 100.0)
    assert path == str(preprocessed / "MySCNASPlans.json")
    assert json.loads((preprocessed / "MySCNASPlans.json").read_text())["plans_name"] == "MySCNASPlans"


def _exit_message(argv):
    with pytest.raises(SystemExit) as info:
        planner.main(argv)
    msg = info.value.code
    assert isinstance(msg, str) and msg.startswith("nnUNetv2_plan_scnas: error: ") and "\n" not in msg
    return msg


def test_refusal_is_one_line_and_leaves_the_previous_plans(preprocessed, fake_memory):
    _write_plans(preprocessed, {"3d_fullres": FULLRES})
    previous = preprocessed / "nnUNetPlansSCNAS.json"
    previous.write_text('{"old": true}')
    msg = _exit_message(["-d", DATASET, "-gpu_memory_target", "0.5"])
    assert "[24, 24, 24]" in msg and "0.5" in msg
    assert previous.read_text() == '{"old": true}'


def test_a_failed_write_leaves_the_previous_plans_and_no_temporary_file(preprocessed, fake_memory, monkeypatch):
    _write_plans(preprocessed, {"3d_fullres": FULLRES})
    previous = preprocessed / "nnUNetPlansSCNAS.json"
    previous.write_text('{"old": true}')

    def crash(src, dst):
        raise OSError("disk full")
    with monkeypatch.context() as m, pytest.raises(OSError, match="disk full"):
        m.setattr(os, "replace", crash)  # the final rename of the atomic write fails
        planner.plan_scnas(DATASET, gpu_memory_target_gb=100.0)
    assert previous.read_text() == '{"old": true}'
    assert sorted(os.listdir(preprocessed)) == ["dataset.json", "nnUNetPlans.json", "nnUNetPlansSCNAS.json"]


def test_bad_setups_are_one_line_errors(preprocessed, fake_memory, monkeypatch):
    assert "nnUNetv2_plan_and_preprocess -d 42" in _exit_message(["-d", "42"])  # no nnUNetPlans.json yet
    _write_plans(preprocessed, {"2d": TWO_D})
    assert "no 3D configuration" in _exit_message(["-d", "42"])
    assert "not found" in _exit_message(["-d", "43"])
    monkeypatch.delenv("nnUNet_preprocessed")
    assert "nnUNet_preprocessed is not set" in _exit_message(["-d", "42"])
    assert not (preprocessed / "nnUNetPlansSCNAS.json").exists()


# -- the real estimate ---------------------------------------------------------------------------

def test_real_estimate_end_to_end(preprocessed, capsys):
    """Unfaked: the default 16 GB keeps nnU-Net's batch and only rounds the patch; 1 GB can never
    fit, as the estimate includes 1 GB of overhead beyond activations and parameters."""
    _write_plans(preprocessed, {"3d_fullres": _config([25, 30, 27], 2, STRIDES_8, "nnUNetPlans_3d_fullres")})
    planner.main(["-d", DATASET])
    cfg = json.loads((preprocessed / "nnUNetPlansSCNAS.json").read_text())["configurations"]["3d_fullres"]
    assert (cfg["patch_size"], cfg["batch_size"]) == ([24, 24, 24], 2)
    need = float(re.search(r"\(estimated ([0-9.]+) GB of 16 GB\)", capsys.readouterr().out).group(1))
    assert 1.0 < need < 16
    assert "[24, 24, 24]" in _exit_message(["-d", DATASET, "-gpu_memory_target", "1"])


def test_memory_is_estimated_for_both_steps_at_the_recipes_stems(monkeypatch):
    """The search step: the supernet at the search stem (48), cells checkpointed; the retrain step:
    the derived network at the retrain stem (68); both on the planned batch and patch."""
    seen = []

    def fake_estimate(model, input_shape, checkpoint_cells=False, **kw):
        seen.append((type(model).__name__, model.stem_channels, model.input_channels, model.num_classes,
                     tuple(input_shape), checkpoint_cells))
        return float(len(seen))
    monkeypatch.setattr(planner, "estimate_training_memory", fake_estimate)
    assert planner.scnas_memory_gb([24, 32, 40], 3, 2, 5) == (1.0, 2.0)  # (search, retrain)
    assert (SEARCH.stem_channels, RETRAIN.stem_channels) == (48, 68)  # paper, Sec. 3
    assert seen == [("SearchNetwork", 48, 2, 5, (3, 2, 24, 32, 40), True),
                    ("SCNASNetwork", 68, 2, 5, (3, 2, 24, 32, 40), False)]
