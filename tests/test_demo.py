"""``nnunet_scnas demo`` without training: resume bookkeeping, refusal of foreign folders, the
stage list it runs (every trainer it names exists, every command is installed), failure report."""
from __future__ import annotations

import json
import os
import sys

import pytest

from nnunet_scnas.tools import demo


def test_new_folder_then_resume_then_other_settings_are_refused(tmp_path):
    work = tmp_path / "demo"
    cpu = demo._settings("cpu")
    assert demo._prepare_folder(str(work), cpu, fresh=False) == []
    state = json.loads((work / demo.STATE_FILE).read_text())
    state["done"] = ["dataset", "plan"]
    (work / demo.STATE_FILE).write_text(json.dumps(state))
    assert demo._prepare_folder(str(work), cpu, fresh=False) == ["dataset", "plan"]
    with pytest.raises(ValueError, match="other settings.*--fresh"):
        demo._prepare_folder(str(work), demo._settings("cuda"), fresh=False)
    assert demo._prepare_folder(str(work), demo._settings("cuda"), fresh=True) == []
    assert json.loads((work / demo.STATE_FILE).read_text())["settings"]["device"] == "cuda"


def test_a_folder_that_is_not_a_demo_is_never_deleted(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    for fresh in (False, True):
        with pytest.raises(ValueError, match="choose another -o"):
            demo._prepare_folder(str(tmp_path), demo._settings("cpu"), fresh=fresh)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_stages_name_existing_trainers_and_installed_commands(tmp_path, device):
    import nnunet_scnas.trainers as trainers
    settings = demo._settings(device)
    for key in ("search", "retrain", "random", "stock"):
        assert hasattr(trainers, settings[key]), settings[key]
    stages = demo._stages(str(tmp_path), settings)
    assert [s.name for s in stages] == ["dataset", "plan", "plan_scnas", "search", "retrain", "random_genotype",
                                        "retrain_random", "stock", "predict_scnas", "evaluate_scnas",
                                        "predict_random", "evaluate_random", "predict_stock", "evaluate_stock",
                                        "compare"]
    random_stage = stages[6]
    assert random_stage.env["SCNAS_GENOTYPE"] == demo._random_genotype_path(str(tmp_path))
    train = [s for s in stages if s.epochs]
    assert all(s.env["nnUNet_n_proc_DA"] == "0" for s in train)  # reproducible: augmentation in-process
    assert getattr(trainers, settings["random"]).search_trainer_name is None  # it never reads the search result
    for stage in [s for s in stages if s.command is not None]:
        assert stage.command[0].startswith(sys.prefix) or "/" in stage.command[0]
    train = [s for s in stages if s.epochs]
    assert all("--c" in s.command for s in train)  # a rerun continues a killed training
    assert all(s.command[s.command.index("-device") + 1] == device for s in train)


def test_a_failing_stage_names_itself_and_its_log(tmp_path, capsys):
    stage = demo.Stage("search", "x", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    progress = demo.Progress([stage], [])
    log = tmp_path / "search.txt"
    with pytest.raises(demo.StageFailed, match=rf"stage 'search' failed \(exit code 3\); its log: {log}"):
        demo._run_command(stage, str(log), dict(os.environ), progress, 1)
    assert "boom" in capsys.readouterr().err


def test_epoch_progress_is_read_from_nnunet_log_lines(tmp_path, capsys):
    script = "print('2026-01-01 00:00:00.000000: Epoch 0'); print('2026-01-01 00:00:01.000000: Epoch 1')"
    stage = demo.Stage("retrain", "x", [sys.executable, "-c", script], epochs=5)
    demo._run_command(stage, str(tmp_path / "r.txt"), dict(os.environ), demo.Progress([stage], []), 1)
    assert "epoch 2/5" in capsys.readouterr().out
