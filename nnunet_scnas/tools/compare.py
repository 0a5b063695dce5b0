"""``nnunet_scnas compare``: Dice, cost and training time of trained nnU-Net models side by side.

Everything is read from nnU-Net's results folder (``$nnUNet_results``): each fold's
``validation/summary.json`` (Dice), its checkpoint (epoch times, and the weights that fix the
network actually trained in that fold: SCNAS retrains one genotype per fold) and the plans.json /
dataset.json that training copies next to the folds (the network, built with nnU-Net's own
``get_network_from_plans``). Missing folds are named and left out of the statistics, never guessed.

nnU-Net, torch and matplotlib are imported inside the functions so that building the
``nnunet_scnas`` parser stays instantaneous for the other subcommands.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import shlex
from typing import Any, Callable, Sequence

from .._io import atomic_write, atomic_write_text

DEFAULT_TRAINERS: tuple[tuple[str, str], ...] = (("nnUNetTrainer", "nnUNetPlans"),
                                                 ("nnUNetTrainerSCNASRetrain", "nnUNetPlansSCNAS"))
DEFAULT_FOLDS: tuple[int, ...] = (0, 1, 2, 3, 4)
DEFAULT_PLANS = "nnUNetPlans"
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth")
REPORT_FILES = ("comparison.md", "comparison.csv", "comparison.png")

Fold = int | str  # an int, or nnU-Net's "all" (fold_all)


# -- command line -------------------------------------------------------------------------------
def _parse_fold(value: str) -> Fold:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fold must be an integer or 'all', got {value!r}") from None


def parse_trainer(spec: str) -> tuple[str, str]:
    """``TRAINER`` or ``TRAINER:PLANS`` (plans default nnUNetPlans), as for nnUNetv2_train -tr / -p."""
    trainer, sep, plans = spec.partition(":")
    if not sep:
        plans = DEFAULT_PLANS
    if not trainer or not plans or ":" in plans:
        raise argparse.ArgumentTypeError(f"expected TRAINER or TRAINER:PLANS, got {spec!r}")
    return trainer, plans


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnunet_scnas compare`` (cli.py adds them to its subparser)."""
    parser.add_argument("-d", dest="dataset", required=True, help="dataset id (4) or name (Dataset004_Hippocampus)")
    parser.add_argument("-c", dest="configuration", required=True, metavar="CONFIG",
                        help="nnU-Net configuration, e.g. 3d_fullres")
    parser.add_argument("-f", dest="folds", nargs="+", type=_parse_fold, default=list(DEFAULT_FOLDS), metavar="FOLD",
                        help="folds to compare (default 0 1 2 3 4); 'all' is nnU-Net's fold_all, whose "
                             "validation cases were also training cases")
    parser.add_argument("-tr", dest="trainers", action="append", type=parse_trainer, metavar="TRAINER[:PLANS]",
                        help="trainer to compare, repeatable; plans default nnUNetPlans (default: "
                             + ", ".join(f"{t}:{p}" for t, p in DEFAULT_TRAINERS)
                             + "; e.g. nnUNetTrainer:nnUNetResEncUNetMPlans for a residual U-Net)")
    parser.add_argument("-o", dest="report_dir", default=None,
                        help="report folder (default $nnUNet_results/DATASET/scnas_compare_CONFIG)")


def run(args: argparse.Namespace) -> None:
    """``nnunet_scnas compare``: print the table and where the report went."""
    dataset_name = resolve_dataset(args.dataset)
    report_dir = args.report_dir or default_report_dir(dataset_name, args.configuration)
    rows = compare(dataset_name, args.configuration, args.folds, args.trainers or DEFAULT_TRAINERS, report_dir)
    print(format_table(rows))
    for title, key in (("missing", "missing"), ("notes", "notes")):
        lines = [f"  {r['trainer']}:{r['plans']}: {m}" for r in rows for m in r[key]]
        if lines:
            print(f"\n{title}:\n" + "\n".join(lines))
    print(f"\nreport: {', '.join(os.path.join(report_dir, f) for f in REPORT_FILES)}")


# -- library ------------------------------------------------------------------------------------
def resolve_dataset(dataset: str | int) -> str:
    """Dataset name from an id or a name, with one-line errors instead of nnU-Net's multi-line ones."""
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    if not nnUNet_results:
        raise ValueError("nnUNet_results is not set: export nnUNet_results=<nnU-Net's results folder>")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"unknown dataset {str(dataset)!r}: {str(e).split('. ')[0].splitlines()[0]}") from None
    folder = os.path.join(os.fspath(nnUNet_results), name)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"unknown dataset {str(dataset)!r}: no trained models, {folder} does not exist")
    return name


def default_report_dir(dataset_name: str, configuration: str) -> str:
    from nnunetv2.paths import nnUNet_results
    return os.path.join(os.fspath(nnUNet_results), dataset_name, f"scnas_compare_{configuration}")


def compare(dataset: str | int, configuration: str, folds: Sequence[Fold] = DEFAULT_FOLDS,
            trainers: Sequence[tuple[str, str]] = DEFAULT_TRAINERS, report_dir: str | None = None) -> list[dict]:
    """One row per (trainer, plans): Dice per label and foreground mean (mean and sample std over the
    folds that have a summary), parameters, GFLOPs of one patch, seconds per epoch, epochs, and what was
    missing. Writes comparison.md/.csv/.png into ``report_dir`` (default ``default_report_dir``)."""
    dataset_name = resolve_dataset(dataset)
    report_dir = report_dir or default_report_dir(dataset_name, configuration)
    try:
        os.makedirs(report_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the report folder {report_dir}: {e.strerror or e}") from None
    trainers = list(dict.fromkeys(trainers))
    folds = list(dict.fromkeys(folds))
    labels = _label_columns(dataset_name, configuration, trainers)
    rows = [_trainer_row(dataset_name, configuration, t, p, folds, labels) for t, p in trainers]
    command = shlex.join(["nnunet_scnas", "compare", "-d", dataset_name, "-c", configuration,
                          "-f", *map(str, folds), *[a for t, p in trainers for a in ("-tr", f"{t}:{p}")],
                          "-o", report_dir])
    _write_report(rows, dataset_name, configuration, report_dir, command)
    return rows


# -- reading one trainer ---------------------------------------------------------------------------
def _trainer_files(dataset_name: str, trainer: str, plans: str, configuration: str):
    """(plans_manager, dataset_json) from the copies training wrote into the output folder, or None."""
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    base = get_output_folder(dataset_name, trainer, plans, configuration)
    if not (isfile(join(base, "plans.json")) and isfile(join(base, "dataset.json"))):
        return None
    return PlansManager(join(base, "plans.json")), load_json(join(base, "dataset.json"))


def _labels_of(plans_manager, dataset_json: dict) -> list[tuple[str, str]]:
    """(summary.json key, name) of each foreground label or region, in dataset.json order."""
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key
    label_manager = plans_manager.get_label_manager(dataset_json)
    names = {(tuple(v) if isinstance(v, (list, tuple)) else v): k
             for k, v in dataset_json["labels"].items() if k != "ignore"}
    targets = label_manager.foreground_regions if label_manager.has_regions else label_manager.foreground_labels
    return [(label_or_region_to_key(r), names.get(r, str(r))) for r in targets]


def _label_columns(dataset_name: str, configuration: str, trainers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Labels of all trainers (first one's order), so one trainer without a dataset.json hides none."""
    columns: dict[str, str] = {}
    for trainer, plans in trainers:
        try:
            files = _trainer_files(dataset_name, trainer, plans, configuration)
        except (OSError, ValueError, KeyError, RuntimeError, AssertionError):
            continue  # reported in the trainer's row
        if files is not None:
            for key, name in _labels_of(*files):
                columns.setdefault(key, name)
    return list(columns.items())


def _read_summary(path: str, labels: Sequence[tuple[str, str]]) -> tuple[list[float], float]:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    summary = load_json(path)
    try:
        return ([float(summary["mean"][key]["Dice"]) for key, _ in labels],
                float(summary["foreground_mean"]["Dice"]))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} has no Dice for {e}") from None


def _epoch_times(checkpoint: dict) -> list[float]:
    log = checkpoint["logging"]
    return [end - start for start, end in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]


def _network_factory(plans_manager, dataset_json: dict, configuration: str,
                     trainer: str) -> tuple[Callable, list[int]]:
    """Builder of the network exactly as nnUNetv2_predict rebuilds it (the trainer class's
    build_network_architecture, no deep supervision) and the input shape of one patch, batch 1."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    configuration_manager = plans_manager.get_configuration(configuration)
    in_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    out_channels = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    with contextlib.redirect_stdout(io.StringIO()):  # it narrates its search of nnUNet_extTrainer
        trainer_class = recursive_find_trainer_class_by_name(trainer)

    def build():
        return trainer_class.build_network_architecture(plans_manager, configuration_manager, in_channels, out_channels,
                                                        enable_deep_supervision=False)
    return build, [1, in_channels, *configuration_manager.patch_size]


def _error_summary(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _trainer_row(dataset_name: str, configuration: str, trainer: str, plans: str, folds: Sequence[Fold],
                 labels: Sequence[tuple[str, str]]) -> dict[str, Any]:
    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from .cost import count_flops, count_parameters

    base = get_output_folder(dataset_name, trainer, plans, configuration)
    missing: list[str] = []
    notes: list[str] = []
    dice: dict[Fold, tuple[list[float], float]] = {}
    for fold in folds:
        path = join(base, f"fold_{fold}", "validation", "summary.json")
        if not isfile(path):
            missing.append(f"fold {fold}: no {os.path.relpath(path, base)}")
            continue
        try:
            dice[fold] = _read_summary(path, labels)
        except (OSError, ValueError) as e:
            missing.append(f"fold {fold}: unreadable summary ({_error_summary(e)})")
    if not isdir(base):
        missing = [f"no results folder {base}"]

    build = None
    if dice:
        try:
            files = _trainer_files(dataset_name, trainer, plans, configuration)
            if files is None:
                missing.append(f"no plans.json/dataset.json in {base}: parameters and GFLOPs n/a")
            else:
                build, input_shape = _network_factory(*files, configuration, trainer)
                build()  # fail here, once, rather than in every fold
        except Exception as e:  # any plans/network error must end as "n/a" in the report, not a crash
            notes.append(f"parameters and GFLOPs n/a: cannot build the network from {base}/plans.json ({_error_summary(e)})")
            build = None

    epoch_s: dict[Fold, float] = {}
    epochs: dict[Fold, int] = {}
    cost: dict[Fold, tuple[int, int]] = {}
    for fold in dice:
        folder = join(base, f"fold_{fold}")
        ckpt_file = next((join(folder, c) for c in CHECKPOINTS if isfile(join(folder, c))), None)
        checkpoint = None
        if ckpt_file is None:
            missing.append(f"fold {fold}: no fold_{fold}/{' or '.join(CHECKPOINTS)} (epoch time n/a)")
        else:
            try:
                checkpoint = torch.load(ckpt_file, map_location="cpu", weights_only=False)
                times = _epoch_times(checkpoint)
                epochs[fold] = len(times)
                if times:
                    epoch_s[fold] = float(np.mean(times))
            except Exception as e:  # a damaged checkpoint costs its numbers, not the report
                notes.append(f"fold {fold}: unreadable {ckpt_file} ({_error_summary(e)})")
                checkpoint = None
        if build is None:
            continue
        try:
            net = build()
            if checkpoint is not None:  # the fold's own network (an SCNAS genotype per fold)
                net.load_state_dict(checkpoint["network_weights"])
            cost[fold] = (count_parameters(net), count_flops(net, input_shape))
        except Exception as e:
            notes.append(f"fold {fold}: parameters and GFLOPs n/a ({_error_summary(e)})")
    if len(set(cost.values())) > 1:
        notes.append("networks differ between folds (mean reported): " + ", ".join(
            f"fold {f} {p / 1e6:.3f} M / {fl / 1e9:.3f} GFLOPs" for f, (p, fl) in cost.items()))

    def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)

    row: dict[str, Any] = {"trainer": trainer, "plans": plans, "folds": " ".join(map(str, dice)),
                           "n_folds": len(dice)}
    for i, (_, name) in enumerate(labels):
        row[f"dice_{name}"], row[f"dice_{name}_std"] = mean_and_std([d[0][i] for d in dice.values()])
    row["dice_foreground_mean"], row["dice_foreground_mean_std"] = mean_and_std([d[1] for d in dice.values()])
    row["params"] = round(float(np.mean([c[0] for c in cost.values()]))) if cost else None
    row["gflops"] = float(np.mean([c[1] for c in cost.values()])) / 1e9 if cost else None
    row["epoch_time_s"] = float(np.mean(list(epoch_s.values()))) if epoch_s else None
    row["epochs"] = float(np.mean(list(epochs.values()))) if epochs else None
    row["missing"], row["notes"] = missing, notes
    return row


# -- report ----------------------------------------------------------------------------------------
def _format_value(value: float | None, digits: int, std: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _table_cells(rows: Sequence[dict], labels: Sequence[str]) -> list[list[str]]:
    """The report table as text: a header row, then one row per trainer (one string per cell)."""
    header = ["trainer", "plans", "folds", *[f"Dice {n}" for n in labels], "Dice mean", "params (M)", "GFLOPs",
              "s/epoch", "epochs"]
    body = [[r["trainer"], r["plans"], f"{r['n_folds']} ({r['folds']})" if r["n_folds"] else "missing",
             *[_format_value(r[f"dice_{n}"], 4, r[f"dice_{n}_std"]) for n in labels],
             _format_value(r["dice_foreground_mean"], 4, r["dice_foreground_mean_std"]),
             _format_value(None if r["params"] is None else r["params"] / 1e6, 3), _format_value(r["gflops"], 2),
             _format_value(r["epoch_time_s"], 1), "n/a" if r["epochs"] is None else f"{r['epochs']:g}"] for r in rows]
    return [header, *body]


def _label_names(rows: Sequence[dict]) -> list[str]:
    """Label names of a row: every ``dice_NAME`` that has a ``dice_NAME_std`` (the foreground mean aside)."""
    row = rows[0] if rows else {}
    return [k[5:] for k in row if k.startswith("dice_") and f"{k}_std" in row and k != "dice_foreground_mean"]


def format_table(rows: Sequence[dict]) -> str:
    """Fixed-width table, one line per trainer (Dice as mean ± sample std over folds)."""
    table = _table_cells(rows, _label_names(rows))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _markdown_report(rows: Sequence[dict], labels: Sequence[str], dataset_name: str, configuration: str, command: str) -> str:
    header, *body = _table_cells(rows, labels)
    lines = [f"# {dataset_name}, {configuration}: trainer comparison", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *["| " + " | ".join(r) + " |" for r in body], "",
             "Dice: nnU-Net's validation summary.json per fold, mean ± sample standard deviation over the folds "
             "listed; params and GFLOPs of the network each fold trained (from plans.json and its checkpoint), "
             "one patch at batch 1, no deep supervision; s/epoch and epochs from the fold's checkpoint log.", ""]
    for title, key in (("Missing", "missing"), ("Notes", "notes")):
        items = [f"- {r['trainer']}:{r['plans']}: {m}" for r in rows for m in r[key]]
        lines += [f"## {title}", "", *(items or ["- none"]), ""]
    return "\n".join(lines + ["## Command", "", "```", command, "```", ""])


def _csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "; ".join(v) if isinstance(v, list) else ("n/a" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _plot(rows: Sequence[dict], labels: Sequence[str], title: str, path: str) -> None:
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with_dice = [r for r in rows if r["n_folds"]]
    groups = [*labels, "foreground_mean"]
    fig, (dice_axes, cost_axes) = plt.subplots(
        1, 2, figsize=(4 + max(5.0, 0.5 * len(groups) * max(1, len(with_dice))), 5.5),
        gridspec_kw={"width_ratios": [max(2, len(groups)), 2]})
    width = 0.8 / max(1, len(with_dice))
    x = np.arange(len(groups))
    for i, r in enumerate(with_dice):  # colour i = trainer i in both panels
        dice_axes.bar(x + (i - (len(with_dice) - 1) / 2) * width, [r[f"dice_{g}"] for g in groups], width,
                      color=f"C{i}", yerr=[r[f"dice_{g}_std"] or 0.0 for g in groups], capsize=3,
                      label=f"{r['trainer']}:{r['plans']} (n={r['n_folds']} folds)")
        if r["gflops"] is not None:
            cost_axes.errorbar(r["gflops"], r["dice_foreground_mean"], yerr=r["dice_foreground_mean_std"] or 0.0,
                               fmt="o", color=f"C{i}", capsize=3)
            cost_axes.annotate(f"{r['params'] / 1e6:.2f} M params", (r["gflops"], r["dice_foreground_mean"]),
                               fontsize=8, xytext=(5, 3), textcoords="offset points")
    dice_axes.set_xticks(x, [*labels, "mean"])
    dice_axes.set_ylim(0, 1)
    dice_axes.set_ylabel("Dice (mean ± std over folds)")
    dice_axes.set_title(f"{title}: validation Dice per label")
    if with_dice:
        fig.legend(loc="lower center", ncol=min(3, len(with_dice)), fontsize=8, frameon=False)
    else:
        dice_axes.text(0.5, 0.5, "no fold has a validation summary", ha="center", transform=dice_axes.transAxes)
    if not any(r["gflops"] is not None for r in with_dice):
        cost_axes.text(0.5, 0.5, "no GFLOPs available", ha="center", transform=cost_axes.transAxes)
    cost_axes.margins(x=0.35, y=0.2)
    cost_axes.set_xlabel("GFLOPs (one patch, batch 1)")
    cost_axes.set_ylabel("mean Dice")
    cost_axes.set_title("cost vs. Dice")
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((len(with_dice) - 1) // 3), 1, 1))
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _write_report(rows: Sequence[dict], dataset_name: str, configuration: str, report_dir: str, command: str) -> None:
    label_names = _label_names(rows)
    markdown = _markdown_report(rows, label_names, dataset_name, configuration, command)
    try:
        atomic_write_text(markdown, os.path.join(report_dir, "comparison.md"))
        atomic_write_text(_csv_text(rows), os.path.join(report_dir, "comparison.csv"))
        atomic_write(os.path.join(report_dir, "comparison.png"),
                     lambda tmp: _plot(rows, label_names, f"{dataset_name} {configuration}", tmp))
    except OSError as e:
        raise ValueError(f"cannot write the report into {report_dir}: {e.strerror or e}") from None
