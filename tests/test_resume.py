"""Exact resume and distributed search on a tiny synthetic dataset (both tests share its
preprocessing). ``nnUNetv2_train --c`` after SIGKILLs at several moments must end with the
alpha, weights, optimiser state, logs and genotype of an uninterrupted run, bit for bit (CPU,
``nnUNet_n_proc_DA=0``). Two gloo ranks must draw the same ops, average their alpha gradients
and end identical."""
from __future__ import annotations

import fnmatch
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_scnas import Genotype
from nnunet_scnas.tools.synth import make_dataset
from nnunet_scnas._io import TEMP_PATTERN

pytestmark = pytest.mark.slow  # 4-5 min on a busy 2-core machine: nnU-Net planning, 6 process starts, 2 validations

BIN = Path(sys.executable).parent
TINY_TRAINERS = Path(__file__).resolve().parent / "scnas_tiny"
DATASET = "Dataset981_ResumeTiny"
PLANS = "nnUNetPlansSCNAS"
RESUME_TRAINER = "nnUNetTrainerSCNASSearch_tinyResume"


def _run(cmd: list[str], env: dict, log: Path) -> None:
    with open(log, "w") as f:
        proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}); last lines of {log}:\n"
                    + "\n".join(log.read_text().splitlines()[-25:]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """10 cases of 2 channels, about 32^3, planned and preprocessed; env for the trainers."""
    root = tmp_path_factory.mktemp("tiny")
    make_dataset(str(root / "raw"), 981, "ResumeTiny", num_cases=10, channels=2, size=(32, 32, 32), num_test=0)
    ext = os.pathsep.join(p for p in (os.environ.get("nnUNet_extTrainer"), str(TINY_TRAINERS)) if p)
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "pre"),
           "nnUNet_results": str(root / "unused"), "nnUNet_extTrainer": ext, "nnUNet_def_n_proc": "1",
           "nnUNet_n_proc_DA": "1", "nnUNet_compile": "0"}  # the planner needs >= 1 thread here
    logs = root / "logs"
    logs.mkdir()
    _run(["nnUNetv2_plan_and_preprocess", "-d", "981", "-c", "3d_fullres", "-np", "1"], env, logs / "plan.txt")
    _run(["nnUNetv2_plan_scnas", "-d", "981"], env, logs / "plan_scnas.txt")
    env["nnUNet_n_proc_DA"] = "0"  # augmentation in the training process: the data is then seeded
    return {"root": root, "env": env, "logs": logs}


def _fold(results: Path, trainer: str) -> Path:
    return results / DATASET / f"{trainer}__{PLANS}__3d_fullres" / "fold_0"


def _kill(proc: subprocess.Popen) -> bool:
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def _wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the search ended ({proc.returncode}) before it could be killed; see {log}")
        if time.time() > deadline:
            _kill(proc)
            pytest.fail(f"timed out waiting; see {log}")
        time.sleep(0.02)


def _assert_same(a, b, where: str) -> None:
    """Nested checkpoint contents equal bit for bit (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (float, np.floating)):
        assert a == b or (np.isnan(a) and np.isnan(b)), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_search_killed_and_continued_ends_exactly_like_an_uninterrupted_one(tiny):
    root, logs = tiny["root"], tiny["logs"]
    cmd = ["nnUNetv2_train", "981", "3d_fullres", "0", "-tr", RESUME_TRAINER, "-p", PLANS, "-device", "cpu"]
    fold_a, fold_b = _fold(root / "A", RESUME_TRAINER), _fold(root / "B", RESUME_TRAINER)
    latest, final = fold_b / "checkpoint_latest.pth", fold_b / "checkpoint_final.pth"

    def start(results: str, name: str, resume: bool) -> tuple[subprocess.Popen, Path]:
        log = logs / f"{results}_{name}.txt"
        with open(log, "w") as f:
            proc = subprocess.Popen([str(BIN / cmd[0]), *cmd[1:], *(["--c"] if resume else [])],
                                    env={**tiny["env"], "nnUNet_results": str(root / results)}, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return proc, log

    run_a, log_a = start("A", "uninterrupted", resume=False)  # one thread each: A runs beside B
    try:
        killed = []
        # 1. right after the first checkpoint is renamed into place (before genotype_latest, best, history)
        proc, log = start("B", "1", resume=False)
        _wait_for(latest.exists, proc, log)
        killed.append(_kill(proc))
        epoch_log = torch.load(latest, weights_only=False)["logging"]
        epoch_s = epoch_log["epoch_end_timestamps"][0] - epoch_log["epoch_start_timestamps"][0]
        # 2. at a random moment after the next checkpoint: mid-epoch, or in an epoch's end
        proc, log = start("B", "2", resume=True)
        inode = latest.stat().st_ino
        _wait_for(lambda: latest.exists() and latest.stat().st_ino != inode, proc, log)
        time.sleep(random.uniform(0.1, 0.9) * epoch_s)
        killed.append(_kill(proc))
        # 3. right after the final checkpoint (before genotype.json and the validation)
        proc, log = start("B", "3", resume=True)
        _wait_for(final.exists, proc, log)
        killed.append(_kill(proc))
        _run(cmd + ["--c"], {**tiny["env"], "nnUNet_results": str(root / "B")}, logs / "B_4.txt")
        assert killed == [True, True, True]
        assert run_a.wait(timeout=600) == 0, f"the uninterrupted search failed; see {log_a}"
    finally:
        if run_a.poll() is None:
            _kill(run_a)

    final_a = torch.load(fold_a / "checkpoint_final.pth", weights_only=False, map_location="cpu")
    logging_a = final_a["logging"]
    final_b = torch.load(final, weights_only=False, map_location="cpu")
    alpha_keys = [k for k in final_a["network_weights"] if "alphas" in k]
    assert len(alpha_keys) == 4
    for k in alpha_keys:
        assert torch.equal(final_a["network_weights"][k], final_b["network_weights"][k]), k
    _assert_same(final_a["network_weights"], final_b["network_weights"], "network_weights")
    _assert_same(final_a["optimizer_state"], final_b["optimizer_state"], "optimizer_state")
    assert final_a["_best_ema"] == final_b["_best_ema"]
    best_a, best_b = (torch.load(f / "checkpoint_best.pth", weights_only=False, map_location="cpu")
                      for f in (fold_a, fold_b))
    assert best_a["current_epoch"] == best_b["current_epoch"]
    _assert_same(best_a["network_weights"], best_b["network_weights"], "best network_weights")
    for key in ("train_losses", "val_losses", "lrs", "arch_losses", "tau", "mean_fg_dice"):
        _assert_same(logging_a[key], final_b["logging"][key], key)
    assert Genotype.load(fold_a / "genotype.json").cells == Genotype.load(fold_b / "genotype.json").cells
    history_a, history_b = (json.loads((f / "alpha_history.json").read_text()) for f in (fold_a, fold_b))
    assert [h["epoch"] for h in history_b] == [0, 1, 2, 3] and history_b == history_a
    split_a, split_b = (json.loads((f / "scnas_split.json").read_text()) for f in (fold_a, fold_b))
    assert split_b == split_a

    # nothing half-written, nothing left behind
    for path in (root / "B").rglob("*"):
        assert not fnmatch.fnmatch(path.name, TEMP_PATTERN), f"temporary file left: {path}"
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            if path.name.startswith("genotype"):
                Genotype.from_dict(doc)
        elif path.suffix == ".pth":
            torch.load(path, weights_only=False, map_location="cpu")
    assert (fold_b / "validation" / "summary.json").is_file()


def test_gloo_ranks_draw_the_same_ops_average_alpha_gradients_and_end_identical(tiny, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TINY_TRAINERS))  # spawned ranks inherit sys.path
    from scnas_tiny_trainers import run_rank

    for key, value in tiny["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    torch.multiprocessing.spawn(run_rank, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    assert r0["is_ddp"] and r1["is_ddp"]
    assert r0["batch_size"] == r1["batch_size"] == 1  # the plans' batch of 2, split over 2 ranks
    # 2 epochs x 2 iterations x (alpha step + weight step), identical on both ranks
    assert len(r0["draws"]) == 8 and all(torch.equal(a, b) for a, b in zip(r0["draws"], r1["draws"]))
    assert len(r0["alpha_grads"]) == 4
    for (local0, mean0), (local1, mean1) in zip(r0["alpha_grads"], r1["alpha_grads"]):
        assert any(not torch.equal(a, b) for a, b in zip(local0, local1)), "both ranks had the same data"
        for l0, l1, m0, m1 in zip(local0, local1, mean0, mean1):
            assert torch.equal(m0, m1) and torch.equal(m0, (l0 + l1) / 2)
    _assert_same(r0["state"], r1["state"], "state")  # weights and alpha, after steps on different data
    assert r0["genotype"] == r1["genotype"]
    fold = Path(r0["output_folder"])
    assert Genotype.load(fold / "genotype.json").cells == r0["genotype"]
    assert len(list(fold.glob("training_log_*.txt"))) == 1  # rank 0 writes the files
