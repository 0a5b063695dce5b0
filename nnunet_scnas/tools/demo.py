"""``nnunet_scnas demo``: the whole SCNAS workflow on a generated dataset, through nnU-Net's commands.

Stages: generate the dataset -> nnUNetv2_plan_and_preprocess -> nnUNetv2_plan_scnas -> search ->
retrain -> a random genotype of the searched one's parameters and FLOPs, retrained the same way
(the control) -> stock nnU-Net on the same fold and budget -> predict and evaluate the held-back
cases -> compare. Every training is seeded and augments in its own process
(``nnUNet_n_proc_DA=0``), so a rerun on the same machine prints the same Dice. Everything lives in one working folder (its own nnUNet_raw, nnUNet_preprocessed,
nnUNet_results), every stage logs to ``logs/<stage>.txt``, and each finished stage is recorded in
``demo_state.json``: a rerun on the same folder resumes after the last finished stage (training
stages continue from their checkpoint with ``--c``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from .._io import atomic_write_json, atomic_write_text

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID:03d}_SCNASDemo"
CONFIG = "3d_fullres"
FOLD = "0"
STATE_FILE = "demo_state.json"
SCNAS_PLANS = "nnUNetPlansSCNAS"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")  # all inside the working folder


@dataclass
class Stage:
    name: str
    what: str
    command: list[str] | None = None   # an nnU-Net / nnunet_scnas console command, or None: in-process
    epochs: int = 0                    # > 0: a training stage whose "Epoch N" lines show progress
    expected_s: float = 60.0           # first guess of its duration, for the time-left estimate
    env: dict | None = None            # extra environment variables of the command


def _tool(name: str) -> str:
    """A console script of this environment (beside the running Python), else from PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.access(here, os.X_OK) else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"command {name} not found; is nnunetv2 installed in this environment?")
    return found


def _settings(device: str) -> dict:
    """What the demo runs, by device (see trainers/demo.py for the training budgets)."""
    suffix = "_demoGPU" if device == "cuda" else "_demoCPU"
    return {"device": device, "num_cases": 24, "num_test": 4, "size": [40, 48, 40], "seed": 0,
            "search": "nnUNetTrainerSCNASSearch" + suffix, "retrain": "nnUNetTrainerSCNASRetrain" + suffix,
            "random": f"nnUNetTrainerSCNASRetrain{suffix}Random", "stock": "nnUNetTrainer" + suffix}


def _random_genotype_path(work: str) -> str:
    return os.path.join(work, "random_genotype.json")


def _stages(work: str, s: dict) -> list[Stage]:
    raw_ts = os.path.join(work, "nnUNet_raw", DATASET_NAME, "imagesTs")
    labels_ts = os.path.join(work, "nnUNet_raw", DATASET_NAME, "labelsTs")
    dev = ["-device", s["device"]]
    train = [_tool("nnUNetv2_train"), str(DATASET_ID), CONFIG, FOLD, "--c"]
    # trainings augment in their own process: with background workers (nnU-Net's default) batches
    # arrive in whichever order the workers finish, and no two runs are alike (nnU-Net's planner
    # needs at least one worker, so only here)
    in_process = {"nnUNet_n_proc_DA": "0"}
    cpu = s["device"] == "cpu"
    from ..trainers import demo as demo_trainers
    epochs = {key: getattr(demo_trainers, s[key]).epochs for key in ("search", "retrain", "random", "stock")}
    stages = [
        Stage("dataset", f"generate {s['num_cases']} + {s['num_test']} synthetic 4-channel cases", None, 0, 10),
        Stage("plan", "nnUNetv2_plan_and_preprocess (fingerprint, plans, preprocessing)",
              [_tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG, "-np", "2",
               "--verify_dataset_integrity"], 0, 60),
        Stage("plan_scnas", "nnUNetv2_plan_scnas (patch a multiple of 8, memory-checked batch)",
              [_tool("nnUNetv2_plan_scnas"), "-d", str(DATASET_ID)], 0, 15),
        Stage("search", f"architecture search ({s['search']})",
              train + ["-tr", s["search"], "-p", SCNAS_PLANS] + dev, epochs["search"], 180 if cpu else 1800,
              in_process),
        Stage("retrain", f"retrain the found genotype from scratch ({s['retrain']})",
              train + ["-tr", s["retrain"], "-p", SCNAS_PLANS] + dev, epochs["retrain"], 150 if cpu else 3600,
              in_process),
        Stage("random_genotype", "draw a random genotype of the searched one's parameters and FLOPs "
              "(nnunet_scnas random-genotype --match)", None, 0, 20),
        Stage("retrain_random", f"retrain that random genotype, same budget: the control ({s['random']})",
              train + ["-tr", s["random"], "-p", SCNAS_PLANS] + dev, epochs["random"], 150 if cpu else 3600,
              {**in_process, "SCNAS_GENOTYPE": _random_genotype_path(work)}),
        Stage("stock", f"stock nnU-Net, same fold and budget ({s['stock']})",
              train + ["-tr", s["stock"]] + dev, epochs["stock"], 150 if cpu else 3600, in_process),
    ]
    for key, trainer, plans in _models(s):
        out = os.path.join(work, "predictions", key)
        stages.append(Stage(f"predict_{key}", f"predict the {s['num_test']} held-back cases with {trainer}",
                            [_tool("nnUNetv2_predict"), "-i", raw_ts, "-o", out, "-d", str(DATASET_ID), "-c", CONFIG,
                             "-f", FOLD, "-tr", trainer, "-p", plans, "-npp", "1", "-nps", "1",
                             "--disable_progress_bar"] + dev + (["--disable_tta"] if cpu else []), 0, 40))
        stages.append(Stage(f"evaluate_{key}", "nnU-Net's evaluation of the held-back predictions",
                            [_tool("nnUNetv2_evaluate_folder"), labels_ts, out, "-djfile",
                             os.path.join(out, "dataset.json"), "-pfile", os.path.join(out, "plans.json"),
                             "-np", "1"], 0, 10))
    stages.append(Stage("compare", "side-by-side report (nnunet_scnas compare)",
                        [_tool("nnunet_scnas"), "compare", "-d", str(DATASET_ID), "-c", CONFIG, "-f", FOLD,
                         "-tr", s["stock"], "-tr", f"{s['retrain']}:{SCNAS_PLANS}", "-tr",
                         f"{s['random']}:{SCNAS_PLANS}", "-o", os.path.join(work, "report")], 0, 20))
    return stages


def _models(s: dict) -> list[tuple[str, str, str]]:
    """(key, trainer, plans) of the three trained models the demo predicts and reports."""
    return [("scnas", s["retrain"], SCNAS_PLANS), ("random", s["random"], SCNAS_PLANS),
            ("stock", s["stock"], "nnUNetPlans")]


def _draw_random_genotype(work: str, settings: dict) -> None:
    """The control: a uniform random genotype whose parameters and FLOPs at the retrain's stem and
    the SCNAS plans' patch are within 10 % of the searched genotype's."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from ..genotypes import Genotype
    from ..recipe import RETRAIN
    from ..trainers import demo as demo_trainers
    from .cost import matched_random_genotype
    with _nnunet_folders(work):
        searched = os.path.join(get_output_folder(DATASET_NAME, settings["search"], SCNAS_PLANS, CONFIG, FOLD),
                                "genotype.json")
    with open(os.path.join(work, "nnUNet_preprocessed", DATASET_NAME, f"{SCNAS_PLANS}.json")) as f:
        patch = json.load(f)["configurations"][CONFIG]["patch_size"]
    stem = getattr(demo_trainers, settings["retrain"]).stem or RETRAIN.stem_channels
    genotype, draws = matched_random_genotype(Genotype.load(searched), settings["seed"], stem, [4, *patch], 3)
    genotype.save(_random_genotype_path(work))
    prov = genotype.provenance
    print(f"random genotype after {draws} draws: {prov['flops'] / 1e9:.3f} GFLOPs, {prov['parameters']} parameters "
          f"(searched: {prov['reference_flops'] / 1e9:.3f} GFLOPs, {prov['reference_parameters']})", flush=True)


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Stage, epoch and time left, one line per change (readable in a log and a terminal)."""

    def __init__(self, stages: list[Stage], done: list[str]):
        self.stages, self.t0 = stages, time.time()
        self.scale = 1.0  # measured / expected duration of the stages finished in this run
        self.expected_done = self.measured_done = 0.0
        self.todo = [st for st in stages if st.name not in done]

    def left(self, stage: Stage, elapsed: float, epoch: int) -> float:
        """Time left: this stage from its finished epochs, later stages from their expected time
        scaled by how this run's finished stages compared with theirs."""
        later = sum(st.expected_s for st in self.todo[self.todo.index(stage) + 1:]) * self.scale
        if stage.epochs and epoch > 1:
            here = elapsed / (epoch - 1) * (stage.epochs - epoch + 1)
        else:
            here = max(stage.expected_s * self.scale - elapsed, 0)
        return here + later

    def finished(self, stage: Stage, elapsed: float) -> None:
        self.expected_done += stage.expected_s
        self.measured_done += elapsed
        self.scale = min(2.0, max(0.5, self.measured_done / self.expected_done))

    def line(self, i: int, stage: Stage, elapsed: float, epoch: int, text: str) -> str:
        ep = f" epoch {epoch}/{stage.epochs}" if stage.epochs else ""
        return (f"[{i}/{len(self.stages)}] {stage.name}{ep}: {text} | stage {_fmt(elapsed)}, "
                f"total {_fmt(time.time() - self.t0)}, ~{_fmt(self.left(stage, elapsed, epoch))} left")


class StageFailed(RuntimeError):
    pass


def _run_command(stage: Stage, log_path: str, env: dict, progress: Progress, i: int) -> None:
    epoch_re = re.compile(r"Epoch (\d+)\s*$")  # nnU-Net logs "<timestamp>: Epoch N" (0-based) at each start
    t0, epoch, shown = time.time(), 0, None
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(stage.command)}\n")
        log.flush()
        start = log.tell()  # an interrupted earlier try of this stage is above: not this run's epochs
        proc = subprocess.Popen(stage.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        with open(log_path) as reader:
            reader.seek(start)
            while True:
                code = proc.poll()
                for line in reader.readlines():
                    m = epoch_re.search(line)
                    if m:
                        epoch = int(m.group(1)) + 1
                elapsed = time.time() - t0
                key = (epoch, int(elapsed // 60))
                if key != shown:
                    print(progress.line(i, stage, elapsed, epoch, "running"), flush=True)
                    shown = key
                if code is not None:
                    break
                time.sleep(2)
    if code != 0:
        with open(log_path) as f:
            tail = f.readlines()[-8:]
        print("".join("    " + line for line in tail), end="", file=sys.stderr)
        raise StageFailed(f"stage '{stage.name}' failed (exit code {code}); its log: {log_path}")


def _environment(work: str, device: str) -> dict:
    env = dict(os.environ)
    for var in NNUNET_FOLDERS:
        env[var] = os.path.join(work, var)
        os.makedirs(env[var], exist_ok=True)
    if device == "cpu":  # nnU-Net's defaults (8 and more workers) only slow down a 2-core machine
        env.setdefault("nnUNet_n_proc_DA", "2")
        env.setdefault("nnUNet_def_n_proc", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _prepare_folder(work: str, settings: dict, fresh: bool) -> list[str]:
    """Finished stages of an earlier run in ``work`` (empty for a new folder)."""
    state_path = os.path.join(work, STATE_FILE)
    if fresh and os.path.isdir(work):
        if not os.path.isfile(state_path) and os.listdir(work):
            raise ValueError(f"--fresh would delete {work}, which is not a demo folder (no {STATE_FILE}); "
                             f"choose another -o")
        shutil.rmtree(work)
        print(f"--fresh: removed the earlier demo in {work}")
    if os.path.isdir(work) and os.listdir(work) and not os.path.isfile(state_path):
        raise ValueError(f"{work} is not empty and holds no demo ({STATE_FILE}); choose another -o")
    try:
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the demo folder {work}: {e.strerror}") from None
    if not os.path.isfile(state_path):
        atomic_write_json({"settings": settings, "done": []}, state_path)
        return []
    with open(state_path) as f:
        state = json.load(f)
    if state.get("settings") != settings:
        raise ValueError(f"{work} holds a demo run with other settings ({state.get('settings')}); "
                         f"rerun with --fresh to start clean, or choose another -o")
    return list(state.get("done", []))


def _report(work: str, settings: dict) -> str:
    """demo_summary.md: held-back Dice per model, the comparison table and the found cells."""
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    lines = ["# nnunet_scnas demo", "", f"Device: {settings['device']}. Dataset: {DATASET_NAME} "
             f"({settings['num_cases']} training cases, fold {FOLD}; {settings['num_test']} held-back cases).", "",
             "## Held-back cases (never seen in training or validation), nnU-Net's evaluation", "",
             "| model | " + " | ".join(["whole tumor", "tumor core", "enhancing tumor", "mean"]) + " |",
             "|---|---|---|---|---|"]
    with open(os.path.join(work, "nnUNet_raw", DATASET_NAME, "dataset.json")) as f:
        dataset_json = json.load(f)
    label_manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    keys = [label_or_region_to_key(r) for r in label_manager.foreground_regions]  # summary.json's keys
    for key, trainer, _ in _models(settings):
        with open(os.path.join(work, "predictions", key, "summary.json")) as f:
            summary = json.load(f)
        per = [summary["mean"][k]["Dice"] for k in keys]
        lines.append(f"| {trainer} | " + " | ".join(f"{d:.3f}" for d in per)
                     + f" | {summary['foreground_mean']['Dice']:.3f} |")
    lines += ["", "## Fold-0 validation and cost (nnunet_scnas compare)", ""]
    with open(os.path.join(work, "report", "comparison.md")) as f:
        lines.append(f.read())
    with _nnunet_folders(work):
        search_fold = get_output_folder(DATASET_NAME, settings["search"], SCNAS_PLANS, CONFIG, FOLD)
    from ..genotypes import Genotype
    searched = Genotype.load(os.path.join(search_fold, "genotype.json"))
    confidence = searched.mean_confidence() or {}
    lines += ["", "## Found genotype", "", f"`{os.path.join(search_fold, 'genotype.json')}`; cells drawn in "
              f"`{os.path.join(search_fold, 'cells')}`, alpha over the epochs in "
              f"`{os.path.join(search_fold, 'alpha_history.png')}`. Mean confidence (max softmax(alpha) per "
              f"edge; uniform 0.125) after {searched.provenance.get('alpha_steps')} alpha steps: "
              + ", ".join(f"{t} {c:.3f}" for t, c in confidence.items()) + ".",
              "", searched.randomness_note() or "The search left uniform on every cell type.", "",
              f"The control (`{settings['random']}`) retrained `{_random_genotype_path(work)}`, a uniform "
              "random genotype of the same parameters and FLOPs (within 10 %)."]
    path = os.path.join(work, "report", "demo_summary.md")
    atomic_write_text("\n".join(lines) + "\n", path)
    return path


@contextlib.contextmanager
def _nnunet_folders(work: str):
    """nnU-Net's path helpers read its folders from the environment: point them into ``work``
    while the block runs (the stages get them through their own environment instead)."""
    saved = {var: os.environ.get(var) for var in NNUNET_FOLDERS}
    os.environ.update({var: os.path.join(work, var) for var in NNUNET_FOLDERS})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_demo(work: str, device: str = "auto", fresh: bool = False) -> str:
    """Run (or resume) the demo in ``work``; returns the path of the summary report."""
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("-device cuda: no CUDA device is available; use -device cpu")
    work = os.path.abspath(work)
    settings = _settings(device)
    done = _prepare_folder(work, settings, fresh)
    env = _environment(work, device)
    stages = _stages(work, settings)
    progress = Progress(stages, done)
    if done:
        print(f"resuming the demo in {work}: {len(done)} stage(s) done ({', '.join(done)})")
    else:
        print(f"nnunet_scnas demo on {device} in {work} ({len(stages)} stages; logs in {work}/logs)")
    for i, stage in enumerate(stages, start=1):
        if stage.name in done:
            continue
        print(f"[{i}/{len(stages)}] {stage.name}: {stage.what}", flush=True)
        t0 = time.time()
        log_path = os.path.join(work, "logs", f"{stage.name}.txt")
        if stage.name == "dataset":
            from .synth import make_dataset
            make_dataset(env["nnUNet_raw"], DATASET_ID, "SCNASDemo", settings["num_cases"], 4,
                         tuple(settings["size"]), settings["seed"], settings["num_test"])
        elif stage.name == "random_genotype":
            _draw_random_genotype(work, settings)
        else:
            _run_command(stage, log_path, {**env, **(stage.env or {})}, progress, i)
        elapsed = time.time() - t0
        progress.finished(stage, elapsed)
        done.append(stage.name)
        atomic_write_json({"settings": settings, "done": done}, os.path.join(work, STATE_FILE))
        print(progress.line(i, stage, elapsed, stage.epochs, "done"), flush=True)
    report = _report(work, settings)
    print(f"\ndemo finished in {_fmt(time.time() - progress.t0)}; report: {report}")
    with open(report) as f:
        print(f.read())
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="scnas_demo", help="working folder (default ./scnas_demo)")
    parser.add_argument("-device", "--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: cuda if available (larger settings), else cpu")
    parser.add_argument("--fresh", action="store_true", help="delete an earlier demo in the folder first")


def run(args: argparse.Namespace) -> None:
    try:
        run_demo(args.output, args.device, args.fresh)
    except StageFailed as e:
        raise ValueError(str(e)) from None
