"""Synthetic BraTS-like dataset: reproducible, a valid nnU-Net region dataset, nested tumour
sub-regions visible in every channel, safe reruns, one-line errors."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_scnas.tools import synth

TINY = dict(dataset_id=991, name="Tiny", num_cases=5, channels=4, size=(32, 40, 32), seed=3, num_test=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return synth.make_dataset(str(tmp_path_factory.mktemp("raw")), **TINY)


def _read(path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), img.GetSpacing()


def _case(folder, case, channels, split="Tr"):
    images = [_read(os.path.join(folder, f"images{split}", f"{case}_{c:04d}.nii.gz")) for c in range(channels)]
    label, spacing = _read(os.path.join(folder, f"labels{split}", f"{case}.nii.gz"))
    assert all(s == spacing and a.shape == label.shape for a, s in images)
    return np.stack([a for a, _ in images]), label, spacing


def test_same_seed_gives_identical_arrays_other_seed_does_not(tiny, tmp_path):
    again = synth.make_dataset(str(tmp_path), **TINY)
    for k in range(TINY["num_cases"]):
        a, b = _case(tiny, f"case_{k:04d}", 4), _case(again, f"case_{k:04d}", 4)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    first = _case(tiny, "case_0000", 4)[0]
    other, _, _ = synth.make_case(TINY["seed"] + 1, 0, 4, TINY["size"])
    assert other.shape != first.shape or other.tobytes() != first.tobytes()


def test_layout_is_a_valid_nnunet_region_dataset(tiny):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    verify_dataset_integrity(tiny, num_processes=1)  # raises on any problem
    assert os.path.basename(tiny) == "Dataset991_Tiny"
    meta = json.load(open(os.path.join(tiny, "dataset.json")))
    assert meta["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                              "enhancing tumor": [3]}
    assert meta["regions_class_order"] == [1, 2, 3] and meta["numTraining"] == 5
    assert LabelManager(meta["labels"], meta["regions_class_order"]).has_regions
    assert sorted(os.listdir(os.path.join(tiny, "imagesTs"))) == [f"case_0005_{c:04d}.nii.gz" for c in range(4)]
    assert os.listdir(os.path.join(tiny, "labelsTs")) == ["case_0005.nii.gz"]
    shapes, spacings = set(), set()
    for k in range(5):
        image, _, spacing = _case(tiny, f"case_{k:04d}", 4)
        shapes.add(image.shape[1:])
        spacings.add(spacing)
        assert image.dtype == np.int16 and min(image.shape[1:]) >= 32
        assert all(1.0 <= s <= 1.5 for s in spacing)
    assert len(shapes) > 1 and len(spacings) > 1  # cases vary in shape and spacing


def _neighbours(mask, steps=1):
    """``mask`` grown by ``steps`` face-neighbour steps."""
    for _ in range(steps):
        grown = mask.copy()
        for axis in range(3):
            grown |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
        mask = grown
    return mask


def _touches(mask, other):
    """Whether a voxel of ``mask`` has a face neighbour in ``other``."""
    return bool((_neighbours(mask) & other).any())


def test_tumour_regions_are_nested_and_present(tiny):
    for k in range(6):
        split = "Tr" if k < 5 else "Ts"
        _, label, _ = _case(tiny, f"case_{k:04d}", 4, split)
        assert set(np.unique(label)) == {0, 1, 2, 3}
        core, necrosis = label >= 2, label == 2
        assert not _touches(core, label == 0)  # oedema surrounds the core
        assert not _touches(necrosis, label <= 1)  # the enhancing rim surrounds the necrosis


def test_every_channel_shows_the_tumour_with_its_own_contrast(tmp_path):
    folder = synth.make_dataset(str(tmp_path), **{**TINY, "channels": 5})  # 5th: a seeded random contrast
    for k in range(5):
        image, label, _ = _case(folder, f"case_{k:04d}", 5)
        brain, tumour = image[0] > 0, label > 0
        assert not tumour[~brain].any()  # the tumour lies inside the skull-stripped brain
        around = _neighbours(tumour, 2) & ~tumour & brain  # the healthy tissue it must stand out from
        ratio = image[:, tumour].mean(1) / image[:, around].mean(1)
        assert (np.abs(ratio - 1) > 0.15).all(), (k, ratio)
        assert (ratio < 1).any() and (ratio > 1).any(), (k, ratio)  # contrasts differ: dark in some, bright in others


@pytest.mark.parametrize("change,match", [
    (dict(dataset_id=0), r"dataset id must be 1\.\.999, got 0"),
    (dict(dataset_id=1000), r"dataset id must be 1\.\.999"),
    (dict(channels=0), r"at least 1 channel"),
    (dict(num_cases=4), r"at least 5 training cases"),
    (dict(size=(48, 23, 48)), r"at least 24 voxels"),
    (dict(name="a b"), r"dataset name"),
    (dict(num_test=-1), r"test cases must be >= 0"),
    (dict(seed=-1), r"seed must be >= 0"),
])
def test_bad_parameters_give_a_one_line_value_error(tmp_path, change, match):
    with pytest.raises(ValueError, match=match) as info:
        synth.make_dataset(str(tmp_path), **{**TINY, **change})
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_rerun_keeps_same_parameters_refuses_others_and_redoes_half_written(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    argv = ["-d", "992", "--name", "Rerun", "-n", "5", "--channels", "1", "--size", "24,24,24",
            "--num-test", "0", "--raw-dir", str(tmp_path)]
    synth.run(parser.parse_args(argv))
    folder = tmp_path / "Dataset992_Rerun"
    label = folder / "labelsTr" / "case_0000.nii.gz"
    stamp = label.stat().st_mtime_ns
    capsys.readouterr()

    synth.run(parser.parse_args(argv))
    assert "already generated" in capsys.readouterr().out and label.stat().st_mtime_ns == stamp

    with pytest.raises(ValueError, match=r"Dataset992_Rerun already exists with other parameters \(seed 0 -> 1\)"):
        synth.run(parser.parse_args(argv + ["--seed", "1"]))
    with pytest.raises(ValueError, match=r"Dataset992_Rerun already uses dataset id 992"):
        synth.run(parser.parse_args(argv[:2] + ["--name", "Other"] + argv[4:]))

    os.remove(folder / "dataset.json")  # as if interrupted: regenerated, leftovers removed
    stale = folder / "imagesTr" / "case_0099_0000.nii.gz"
    stale.write_bytes(b"")
    synth.run(parser.parse_args(argv))
    assert (folder / "dataset.json").is_file() and not stale.exists()
    assert len(os.listdir(folder / "imagesTr")) == 5


def test_raw_folder_is_required(monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ValueError, match="pass --raw-dir or set nnUNet_raw"):
        synth.make_dataset(None, **TINY)


def test_size_option_is_parsed():
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    assert parser.parse_args(["--size", "40,48,32"]).size == (40, 48, 32)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "40,48"])
