"""The real-data helpers shared by the tests on ../shared/data (MSD Task04 hippocampus)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Dataset004_Hippocampus"
BIN = Path(sys.executable).parent
requires_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not present: {SHARED} (../shared/data)")


def run_logged(cmd: list, env: dict, log: Path, timeout: int = 900) -> None:
    """Run ``cmd`` (a bare name is taken from this venv) with output to ``log``; fail with its tail."""
    exe = Path(cmd[0]) if Path(cmd[0]).is_absolute() else BIN / cmd[0]
    with open(log, "w") as f:
        proc = subprocess.run([str(exe), *map(str, cmd[1:])], env=env, stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({proc.returncode}); last lines of {log}:\n"
                    + "\n".join(log.read_text().splitlines()[-25:]))


def copy_subset(raw: Path, n_train: int, n_held_back: int, held_images: Path, held_labels: Path | None = None) -> None:
    """The first ``n_train`` cases as an nnU-Net raw dataset in ``raw``; the last ``n_held_back``
    (never copied into ``raw``) to ``held_images`` (and their labels to ``held_labels``)."""
    cases = sorted(p.name[:-7] for p in (SHARED / "labelsTr").glob("*.nii.gz"))
    for folder in (raw / "imagesTr", raw / "labelsTr", held_images, held_labels):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    for case, images, labels in [(c, raw / "imagesTr", raw / "labelsTr") for c in cases[:n_train]] + \
                                [(c, held_images, held_labels) for c in cases[-n_held_back:]]:
        shutil.copy(SHARED / "imagesTr" / f"{case}_0000.nii.gz", images / f"{case}_0000.nii.gz")
        if labels is not None:
            shutil.copy(SHARED / "labelsTr" / f"{case}.nii.gz", labels / f"{case}.nii.gz")
    meta = json.loads((SHARED / "dataset.json").read_text())
    meta["numTraining"] = n_train
    (raw / "dataset.json").write_text(json.dumps(meta))
