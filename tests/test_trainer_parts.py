"""Trainer pieces that need no training: schedules, splits, loss, input errors, fold ensembles."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from nnunet_scnas import CELL_TYPES, Genotype, SCNASNetwork
from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain, nnUNetTrainerSCNASSearch
from nnunet_scnas.trainers.common import SCNASUsageError, TrainLossPlateau
from nnunet_scnas.trainers.losses import SoftJaccardLoss
from nnunet_scnas.recipe import tau_schedule
from nnunet_scnas.trainers.search import split_weights_arch

# nnU-Net plans of a toy dataset (no data behind them), shared with test_search_state.py
PLANS = json.loads((Path(__file__).parent / "toy_plans.json").read_text())
DATASET = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 10,
           "file_ending": ".nii.gz"}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.delenv("SCNAS_GENOTYPE", raising=False)
    return tmp_path / "results"


def _plans(patch=(40, 56, 40)):
    p = copy.deepcopy(PLANS)
    p["configurations"]["3d_fullres"]["patch_size"] = list(patch)
    p["continue_training"] = False  # nnU-Net's run_training adds this key
    return p


def _genotype(op="conv_3x3x3"):
    return Genotype({t: (op,) * 14 for t in CELL_TYPES})


def test_tau_is_constant_during_warmup_then_decays_to_tau_end():
    taus = [tau_schedule(e, 50, 5, 1.0, 0.05) for e in range(50)]
    assert taus[:6] == [1.0] * 6
    assert all(a > b for a, b in zip(taus[5:], taus[6:]))
    assert taus[-1] == pytest.approx(0.05)


def test_weight_arch_split_is_4_to_1_seeded_and_disjoint():
    keys = [f"case_{i:03d}" for i in range(23)]
    w, a = split_weights_arch(keys, 7)
    assert len(a) == 5 and len(w) == 18 and not set(w) & set(a) and sorted(w + a) == keys
    assert split_weights_arch(list(reversed(keys)), 7) == (w, a)
    assert split_weights_arch(keys, 8) != (w, a)


def test_jaccard_loss_is_zero_for_a_perfect_prediction_and_has_gradients():
    target = torch.randint(0, 3, (2, 1, 8, 8, 8))
    onehot = torch.zeros(2, 3, 8, 8, 8).scatter_(1, target, 1.0)
    loss = SoftJaccardLoss(apply_nonlin=None, do_bg=False)
    assert loss(onehot, target).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(2, 3, 8, 8, 8, requires_grad=True)
    value = SoftJaccardLoss(apply_nonlin=lambda x: torch.softmax(x, 1), do_bg=False)(logits, target)
    value.backward()
    assert 0.5 < value.item() < 1 and logits.grad.abs().sum() > 0
    # Jaccard = Dice / (2 - Dice) for hard sets
    pred = torch.zeros(1, 2, 4, 4, 4)
    pred[:, 1, :2] = 1
    pred[:, 0, 2:] = 1
    gt = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    gt[:, :, 1:3] = 1
    assert 1 - SoftJaccardLoss(do_bg=False, smooth=0)(pred, gt).item() == pytest.approx((0.5) / (2 - 0.5))


def test_plateau_ignores_nnunets_epoch_calls_and_replay_restores_counters():
    def make():
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, TrainLossPlateau(opt, mode="min", factor=0.1, patience=2)
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.94, 0.93]
    opt, sched = make()
    for epoch, loss in enumerate(losses):
        sched.step(epoch)  # what nnU-Net calls: ignored
        sched.observe(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    opt2, sched2 = make()
    opt2.param_groups[0]["lr"] = 0.1  # as loaded from the optimiser state
    sched2.replay(losses)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1)
    assert (sched2.best, sched2.num_bad_epochs) == (sched.best, sched.num_bad_epochs)


def test_patch_not_divisible_by_8_names_the_scnas_plans_command(results):
    with pytest.raises(SCNASUsageError, match="nnUNetv2_plan_scnas") as info:
        nnUNetTrainerSCNASSearch(_plans((40, 52, 40)), "3d_fullres", 0, DATASET, torch.device("cpu"))
    assert "\n" not in str(info.value.code)


def test_missing_search_result_names_the_expected_path(results):
    with pytest.raises(SCNASUsageError, match=r"nnUNetTrainerSCNASSearch__nnUNetPlans__3d_fullres/fold_0/genotype\.json"):
        nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))


def test_broken_genotype_from_env_is_one_line(results, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    doc = _genotype().to_dict()
    doc["cells"]["expansion"][2][2] = "conv_7x7x7"
    bad.write_text(json.dumps(doc))
    monkeypatch.setenv("SCNAS_GENOTYPE", str(bad))
    with pytest.raises(SCNASUsageError, match=r"SCNAS_GENOTYPE.*unknown op 'conv_7x7x7'") as info:
        nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    assert "\n" not in str(info.value.code)


def test_retrain_writes_network_into_plans_and_prefers_the_frozen_genotype(results, tmp_path, monkeypatch):
    path = tmp_path / "g.json"
    _genotype("identity").save(path)
    monkeypatch.setenv("SCNAS_GENOTYPE", str(path))
    trainer = nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    trainer._set_architecture("nnunet_scnas.model.SCNASNetwork", {"genotype": trainer.genotype.to_dict(),
                                                                 "stem_channels": 8})
    arch = trainer.plans_manager.plans["configurations"]["3d_fullres"]["architecture"]
    assert arch["network_class_name"] == "nnunet_scnas.model.SCNASNetwork"
    assert trainer.configuration_manager.network_arch_init_kwargs["stem_channels"] == 8
    net = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 3, True)
    assert isinstance(net, SCNASNetwork) and net.genotype.cells == _genotype("identity").cells
    # a frozen copy in the fold folder wins over $SCNAS_GENOTYPE
    _genotype("conv_3x3x3").save(trainer.output_folder + "/genotype.json")
    again = nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    assert again.genotype.cells == _genotype("conv_3x3x3").cells


def test_loading_another_folds_weights_rebuilds_the_cells():
    # nnU-Net's predictor builds one network and loads every fold's weights into it
    a = SCNASNetwork(1, 3, _genotype("conv_3x3x3"), stem_channels=8, deep_supervision=False).eval()
    b = SCNASNetwork(1, 3, _genotype("sep_dil_conv_3x3x3_r2"), stem_channels=8, deep_supervision=False).eval()
    a.load_state_dict(b.state_dict())
    assert a.genotype.cells == b.genotype.cells
    x = torch.randn(1, 1, 24, 24, 24)
    assert torch.equal(a(x), b(x))


def test_transfer_retrain_needs_the_genotype_from_the_environment(results, tmp_path, monkeypatch):
    from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_transfer
    monkeypatch.delenv("SCNAS_GENOTYPE", raising=False)
    with pytest.raises(SCNASUsageError, match="set SCNAS_GENOTYPE="):
        nnUNetTrainerSCNASRetrain_transfer(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    path = tmp_path / "g.json"
    _genotype().save(path)
    monkeypatch.setenv("SCNAS_GENOTYPE", str(path))
    trainer = nnUNetTrainerSCNASRetrain_transfer(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    assert trainer.genotype.cells == _genotype().cells and "$SCNAS_GENOTYPE" in trainer.genotype_source


def test_fold_too_small_for_the_4_to_1_split_says_so(results):
    from nnunet_scnas.trainers import nnUNetTrainerSCNASSearch
    trainer = nnUNetTrainerSCNASSearch(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    os.makedirs(trainer.output_folder, exist_ok=True)
    with pytest.raises(SCNASUsageError, match="fold 0 has 4 training cases; .* needs at least 5"):
        trainer._weight_arch_split([f"c{i}" for i in range(4)])
    weights, arch = trainer._weight_arch_split([f"c{i}" for i in range(5)])
    assert len(weights) == 4 and len(arch) == 1


def test_wall_time_budget_stops_before_the_epoch_that_would_end_past_it(results, tmp_path, monkeypatch):
    from nnunet_scnas.trainers.common import _StopTraining
    path = tmp_path / "g.json"
    _genotype().save(path)
    monkeypatch.setenv("SCNAS_GENOTYPE", str(path))
    trainer = nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    trainer.optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], 3e-4)
    for epoch in range(3):  # three epochs of 10 s, 2 s of checkpointing after each but the last
        trainer.logger.log("epoch_start_timestamps", 12.0 * epoch, epoch)
        trainer.logger.log("epoch_end_timestamps", 12.0 * epoch + 10, epoch)
    trainer.current_epoch = 3
    assert trainer.training_seconds() == 34
    monkeypatch.setenv("SCNAS_WALL_TIME", "46")  # a fourth epoch of the mean length ends at 45.3: it runs
    trainer.on_epoch_start()
    trainer.current_epoch = 3
    monkeypatch.setenv("SCNAS_WALL_TIME", "45")  # it would end past 45: stop
    with pytest.raises(_StopTraining):
        trainer.on_epoch_start()
    monkeypatch.setenv("SCNAS_WALL_TIME", "soon")  # refused when the trainer is made, in one line
    with pytest.raises(SCNASUsageError, match="SCNAS_WALL_TIME must be a number of seconds") as info:
        nnUNetTrainerSCNASRetrain(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    assert "\n" not in str(info.value.code)


def test_wall_time_retrain_decays_its_learning_rate_over_the_budget(results, tmp_path, monkeypatch):
    """nnU-Net's poly decay with seconds of training as the step: per parameter group, set at each
    epoch start, untouched by nnU-Net's step(epoch); training without the variable is refused."""
    from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_wallTime
    from nnunet_scnas.trainers.common import WallTimePoly
    path = tmp_path / "g.json"
    _genotype().save(path)
    monkeypatch.setenv("SCNAS_GENOTYPE", str(path))
    monkeypatch.delenv("SCNAS_WALL_TIME", raising=False)
    trainer = nnUNetTrainerSCNASRetrain_wallTime(_plans(), "3d_fullres", 0, DATASET, torch.device("cpu"))
    with pytest.raises(SCNASUsageError, match="set SCNAS_WALL_TIME=SECONDS"):
        trainer.run_training()
    monkeypatch.setenv("SCNAS_WALL_TIME", "100")
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    monkeypatch.setattr(trainer, "_param_groups", lambda: [{"params": [a], "lr": 3e-3}, {"params": [b], "lr": 1e-2}])
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    assert isinstance(trainer.lr_scheduler, WallTimePoly)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [3e-3, 1e-2]
    for epoch in range(3):
        trainer.logger.log("epoch_start_timestamps", 12.0 * epoch, epoch)
        trainer.logger.log("epoch_end_timestamps", 12.0 * epoch + 10, epoch)
    trainer.current_epoch = 3
    trainer.on_epoch_start()  # 34 of 100 s spent
    trainer.lr_scheduler.step(3)  # as nnU-Net's on_train_epoch_start calls it: ignored
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([3e-3 * 0.66 ** 0.9, 1e-2 * 0.66 ** 0.9])
    trainer.lr_scheduler.advance(2.5)  # past the budget: zero, never negative
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.0, 0.0]
