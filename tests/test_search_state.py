"""Search trainer state without data: what a checkpoint round trip restores (the step's own
guards are tested in test_bilevel.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnunet_scnas import SearchNetwork
from nnunet_scnas.trainers import nnUNetTrainerSCNASSearch

# test_trainer_parts.py's toy plans at a 24^3 patch, batch 1
PLANS = json.loads((Path(__file__).parent / "toy_plans.json").read_text())
PLANS["configurations"]["3d_fullres"].update(patch_size=[24, 24, 24], batch_size=1)
PLANS["continue_training"] = False
DATASET = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1}, "numTraining": 10,
           "file_ending": ".nii.gz"}
BATCH = {"data": torch.randn(1, 1, 24, 24, 24), "target": torch.zeros(1, 1, 24, 24, 24)}


def _make_trainer(scaler: bool) -> nnUNetTrainerSCNASSearch:
    """A search trainer with a stem-4 supernet and its Adam, not wired to any data."""
    t = nnUNetTrainerSCNASSearch(dict(PLANS), "3d_fullres", 0, DATASET, torch.device("cpu"))
    t.network = SearchNetwork(1, 2, stem_channels=4)
    t.optimizer, t.lr_scheduler = t.configure_optimizers()
    t.grad_scaler = torch.amp.GradScaler("cpu") if scaler else None
    t.loss = lambda outputs, target: outputs[0].float().mean()
    t.was_initialized = True
    return t


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: threads only add waiting, badly so on a busy machine
    yield
    torch.set_num_threads(threads)


def test_checkpoint_round_trip_restores_both_adam_groups_alpha_and_the_best_ema(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    t = _make_trainer(scaler=False)
    step = t._bilevel_step()
    step.arch_step(BATCH["data"], BATCH["target"])
    step.weight_step(BATCH["data"], BATCH["target"])
    for epoch, ema in enumerate([0.2, 0.5, float("nan"), 0.4]):
        t.logger.log("ema_fg_dice", ema, epoch)
    t._best_ema = 0.2  # as in checkpoint_latest: written before the epoch's best update
    t.save_checkpoint(str(tmp_path / "c.pth"))
    u = _make_trainer(scaler=False)
    u.load_checkpoint(str(tmp_path / "c.pth"))
    assert u._best_ema == 0.5
    assert all(torch.equal(a, b) for a, b in zip(t.unwrapped_network().state_dict().values(), u.unwrapped_network().state_dict().values()))
    sa, sb = t.optimizer.state_dict(), u.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"] and len(sa["param_groups"]) == 2
    assert sa["state"].keys() == sb["state"].keys()
    assert all(torch.equal(v, sb["state"][i][k]) for i, st in sa["state"].items() for k, v in st.items())
    assert "state_dict" not in vars(u.network)  # the key-matching shortcut is gone again
