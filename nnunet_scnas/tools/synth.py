"""A seeded, BraTS-like synthetic dataset in nnU-Net v2 raw layout.

Why: the search and retrain need a multi-modal, region-based task that any machine can
generate in seconds (no download, no licence), that a small 3D U-Net learns in a few hundred
iterations, and on which the four channels genuinely matter (each contrast separates different
tumour sub-regions, as T1 / T1ce / T2 / FLAIR do in BraTS).

Each case is a skull-stripped "brain" (deformed ellipsoid: white matter, cortical grey-matter
shell, outer CSF rim, two ventricles; background exactly 0 like BraTS) holding one tumour of
three nested random blobs: label 1 oedema (whole tumour minus core), label 3 an enhancing rim of
the core, label 2 the non-enhancing core inside that rim. They are trained as nnU-Net regions
exactly like nnU-Net's BraTS conversion (whole tumour {1,2,3}, tumour core {2,3}, enhancing
tumour {3}). Every channel maps the seven tissue classes to its own intensities (``_CONTRASTS``),
then gets partial-volume blur, a smooth multiplicative bias field, a per-case gain and Rician
noise. How hard that makes the task (contrast-to-noise per channel, the Dice a small plain U-Net
reaches with all channels and with one) is measured in docs/BENCHMARKS.md, section 4.

Sizes and spacings: ``size`` is the (x, y, z) voxel count of the NIfTI (SimpleITK order); each
case jitters every axis by up to +-15 % (never below min(32, size)) and draws an anisotropic
spacing of 1.0-1.5 mm per axis. The same seed gives byte-identical arrays (with the same numpy
and scipy builds: their floating-point kernels may differ in the last bit elsewhere).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .._io import atomic_write

GENERATOR = "nnunet_scnas.synth"  # an identifier in the written dataset.json; kept across the move to tools/
GENERATOR_VERSION = 1  # bump whenever the generated arrays change for the same parameters
PARAMS_KEY = "scnas_synth"
LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
REGIONS_CLASS_ORDER = [1, 2, 3]
CHANNEL_NAMES = ("T1", "T1ce", "T2", "FLAIR")

# tissue classes of the class map
AIR, CSF, GM, WM, OEDEMA, NECROSIS, ENHANCING = range(7)
# per channel the intensity of each class (AIR .. ENHANCING), relative to white matter ~ 0.5-0.75
_CONTRASTS = np.array([
    [0.0, 0.25, 0.55, 0.75, 0.40, 0.30, 0.50],  # T1: tumour dark, enhancing barely visible
    [0.0, 0.25, 0.55, 0.72, 0.35, 0.25, 1.00],  # T1ce: oedema dark, enhancing rim bright
    [0.0, 1.00, 0.65, 0.45, 0.85, 0.95, 0.70],  # T2: oedema and core bright (core ~ CSF)
    [0.0, 0.15, 0.60, 0.50, 0.95, 0.55, 0.75],  # FLAIR: oedema brightest, CSF dark
])
NOISE_SIGMA = 0.12     # Rician noise, same units as _CONTRASTS
INTENSITY_SCALE = 1000.0  # stored as int16
MIN_LABEL_VOXELS = 20   # redraw a tumour whose smallest sub-region is smaller than this


def make_dataset(raw_dir: str | None = None, dataset_id: int = 990, name: str = "SCNASDemo",
                 num_cases: int = 24, channels: int = 4, size: tuple[int, int, int] = (48, 56, 48),
                 seed: int = 0, num_test: int = 4) -> str:
    """Write ``DatasetNNN_name`` (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json) under
    ``raw_dir`` (default: ``$nnUNet_raw``) and return its path.

    dataset.json is written last, so a folder without it is a half-written dataset and is
    regenerated; a complete one with the same parameters is kept as it is, one with other
    parameters is refused rather than silently overwritten.
    """
    params = _check_params(dataset_id, name, num_cases, channels, size, seed, num_test)
    if raw_dir is None:
        from nnunetv2.paths import nnUNet_raw
        raw_dir = nnUNet_raw.get()
        if raw_dir is None:
            raise ValueError("no raw folder: pass --raw-dir or set nnUNet_raw")
    folder = os.path.join(os.path.abspath(raw_dir), f"Dataset{dataset_id:03d}_{name}")
    _check_no_other_dataset_with_id(raw_dir, dataset_id, os.path.basename(folder))
    json_path = os.path.join(folder, "dataset.json")
    if os.path.isfile(json_path):
        try:
            with open(json_path) as f:
                existing = json.load(f).get(PARAMS_KEY)
        except (json.JSONDecodeError, AttributeError):
            existing = None
        if existing == params:
            print(f"{folder}: already generated with these parameters, kept as it is")
            return folder
        if not isinstance(existing, dict):
            raise ValueError(f"{folder} already exists and was not made by nnunet_scnas synth; "
                             f"choose another dataset id or name")
        changed = ", ".join(f"{k} {existing.get(k)!r} -> {v!r}" for k, v in params.items() if existing.get(k) != v)
        raise ValueError(f"{folder} already exists with other parameters ({changed}); "
                         f"delete it or choose another dataset id or name")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):  # leftovers of an interrupted run
        shutil.rmtree(os.path.join(folder, sub), ignore_errors=True)
        os.makedirs(os.path.join(folder, sub))

    total = num_cases + num_test
    for k in range(total):
        images, label, spacing = make_case(seed, k, channels, size)
        split = "Tr" if k < num_cases else "Ts"
        _write_case(folder, split, f"case_{k:04d}", images, label, spacing)
        if (k + 1) % 4 == 0 or k + 1 == total:
            print(f"synth: {k + 1}/{total} cases written ({num_cases} training, {num_test} test)", flush=True)

    _write_dataset_json(json_path, name, num_cases, channels, params)
    print(f"synth: {folder} ready")
    return folder


def make_case(seed: int, index: int, channels: int, size: tuple[int, int, int]
              ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Case ``index`` of a dataset: images [C, z, y, x] int16, labels [z, y, x] uint8 (0..3),
    spacing (x, y, z) in mm. Depends only on (seed, index, channels, size)."""
    rng = np.random.default_rng([seed, index])
    shape_xyz = [max(min(32, s), int(round(s * rng.uniform(0.85, 1.15)))) for s in size]
    spacing = tuple(float(v) for v in np.round(rng.uniform(1.0, 1.5, 3), 2))
    # normalised x, y, z coordinates in [-1, 1], broadcastable to the (z, y, x) array
    u = tuple(np.linspace(-1, 1, n).reshape([-1 if a == 2 - axis else 1 for a in range(3)])
              for axis, n in enumerate(shape_xyz))

    brain_r = rng.uniform(0.82, 0.92, 3)
    brain = _level(u, np.zeros(3), brain_r, 0.04 * _smooth_field(rng, u))
    classes = np.full(brain.shape, AIR, np.uint8)
    classes[brain < 0] = WM
    classes[(brain < 0) & (brain > -0.17 - 0.05 * _smooth_field(rng, u))] = GM
    classes[(brain < 0) & (brain > -0.04)] = CSF
    vent_r = np.array([0.07, 0.22, 0.12]) * rng.uniform(0.8, 1.2, 3)
    for side in (-1, 1):
        centre = np.array([side * 0.13, rng.uniform(-0.1, 0.1), 0.05])
        classes[_level(u, centre, vent_r, 0.1 * _smooth_field(rng, u)) < 0] = CSF

    label = _tumour(rng, u, brain, brain_r)
    classes[label == 1] = OEDEMA
    classes[label == 2] = NECROSIS
    classes[label == 3] = ENHANCING

    inside = brain < 0
    images = np.empty((channels, *classes.shape), np.int16)
    for c in range(channels):
        # partial-volume effect at tissue boundaries: Gaussian blur, sigma 0.7 voxel, 2.5 sigma wide
        clean = ndimage.gaussian_filter(_channel_contrast(seed, c)[classes], 0.7, mode="nearest", truncate=2.5)
        gain = rng.uniform(0.85, 1.2) * np.exp(0.12 * _smooth_field(rng, u))
        noisy = np.hypot(clean * gain + rng.normal(0, NOISE_SIGMA, clean.shape),
                         rng.normal(0, NOISE_SIGMA, clean.shape))
        images[c] = np.where(inside, np.round(noisy * INTENSITY_SCALE), 0).astype(np.int16)
    return images, label, spacing


def _tumour(rng: np.random.Generator, u: tuple[np.ndarray, ...], brain: np.ndarray,
            brain_r: np.ndarray) -> np.ndarray:
    """Three nested random blobs inside the brain; redrawn until every sub-region is non-trivial.

    The core is clipped to a shrunken whole tumour, so oedema always separates it from healthy
    tissue, and the necrosis is clipped to the eroded core, so the enhancing rim encloses it."""
    for _ in range(100):
        direction = rng.normal(size=3)
        centre = direction / np.linalg.norm(direction) * rng.uniform(0, 0.45) * brain_r
        wt_r = rng.uniform(0.28, 0.42, 3)
        wt_level = _level(u, centre, wt_r, 0.15 * _smooth_field(rng, u))
        whole = (wt_level < 0) & (brain < -0.06)
        core_r = wt_r * rng.uniform(0.5, 0.7)
        core_centre = centre + rng.uniform(-0.25, 0.25, 3) * (wt_r - core_r)
        core_level = _level(u, core_centre, core_r, 0.12 * _smooth_field(rng, u))
        core = (core_level < 0) & (wt_level < -0.25) & whole
        necrosis = (core_level < -rng.uniform(0.25, 0.4)) & ndimage.binary_erosion(core)  # 6-neighbourhood
        label = whole.astype(np.uint8)
        label[core] = 3
        label[necrosis] = 2
        if min(np.count_nonzero(label == v) for v in (1, 2, 3)) >= MIN_LABEL_VOXELS:
            return label
    raise RuntimeError("could not place a tumour with all three sub-regions; use a larger size")


def _level(u: tuple[np.ndarray, ...], centre: np.ndarray, radii: np.ndarray,
           bump: np.ndarray | float) -> np.ndarray:
    """Level set of a deformed ellipsoid: negative inside, -1 at the centre, 0 on the surface."""
    d = np.sqrt(sum(((u[a] - centre[a]) / radii[a]) ** 2 for a in range(3)))
    return d - 1 + bump


def _smooth_field(rng: np.random.Generator, u: tuple[np.ndarray, ...], modes: int = 6) -> np.ndarray:
    """Random low-frequency field with unit standard deviation: a sum of a few plane cosines
    (up to ~1.5 periods across the volume). Each plane wave factorises over the axes, so the
    sum is one small complex matrix product instead of a cosine per voxel and mode."""
    freq = rng.normal(0, 1.0, (modes, 3)) * np.pi / 2
    phase = rng.uniform(0, 2 * np.pi, modes)
    x, y, z = (c.ravel() for c in u)
    ex = np.exp(1j * (freq[:, 0, None] * x + phase[:, None]))  # (modes, X)
    eyz = np.exp(1j * freq[:, 2, None, None] * z[:, None]) * np.exp(1j * freq[:, 1, None, None] * y)  # (modes, Z, Y)
    field = (eyz.reshape(modes, -1).T @ ex).real.reshape(len(z), len(y), len(x))
    return field * np.sqrt(2.0 / modes)


def _channel_contrast(seed: int, channel: int) -> np.ndarray:
    """Class -> intensity table of a channel: T1, T1ce, T2, FLAIR, then seeded random contrasts
    in which oedema (most of the whole tumour) still stands out from white and grey matter."""
    if channel < len(_CONTRASTS):
        return _CONTRASTS[channel]
    rng = np.random.default_rng([seed, 7919, channel])
    while True:
        table = np.concatenate([[0.0], rng.uniform(0.15, 1.0, 6)])
        if min(abs(table[OEDEMA] - table[WM]), abs(table[OEDEMA] - table[GM])) >= 0.25:
            return table


def _write_dataset_json(json_path: str, name: str, num_cases: int, channels: int, params: dict) -> None:
    """nnU-Net's ``generate_dataset_json`` (plus our parameters under ``PARAMS_KEY``), written
    crash-safely: it writes ``dataset.json`` in place, so it writes into a scratch folder first."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    names = {str(c): CHANNEL_NAMES[c] if c < len(CHANNEL_NAMES) else f"MR{c}" for c in range(channels)}
    with tempfile.TemporaryDirectory() as scratch:
        generate_dataset_json(
            scratch, names, dict(LABELS), num_cases, ".nii.gz",  # a copy: it rewrites the label values
            regions_class_order=REGIONS_CLASS_ORDER, dataset_name=name,
            description="synthetic BraTS-like brain tumour MRI (nnunet_scnas synth); "
                        "imagesTs/labelsTs hold held-back cases",
            license="CC0 (generated)", converted_by="nnunet_scnas synth", **{PARAMS_KEY: params})
        atomic_write(json_path, lambda tmp: shutil.copyfile(os.path.join(scratch, "dataset.json"), tmp))


def _write_case(folder: str, split: str, case: str, images: np.ndarray, label: np.ndarray,
                spacing: tuple[float, float, float]) -> None:
    for c, image in enumerate(images):
        _write_nifti(image, spacing, os.path.join(folder, f"images{split}", f"{case}_{c:04d}.nii.gz"))
    _write_nifti(label, spacing, os.path.join(folder, f"labels{split}", f"{case}.nii.gz"))


def _write_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: str) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, path, useCompression=True)


def _check_params(dataset_id: int, name: str, num_cases: int, channels: int, size, seed: int,
                  num_test: int) -> dict:
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name must be letters, digits, '_' or '-', got {name!r}")
    if num_cases < 5:
        raise ValueError(f"need at least 5 training cases (nnU-Net's 5-fold cross-validation), got {num_cases}")
    if channels < 1:
        raise ValueError(f"need at least 1 channel, got {channels}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if num_test < 0:
        raise ValueError(f"number of test cases must be >= 0, got {num_test}")
    size = tuple(size)
    if len(size) != 3 or any(s < 24 for s in size):
        raise ValueError(f"size must be 3 axes of at least 24 voxels, got {size}")
    return {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "num_cases": num_cases,
            "num_test": num_test, "channels": channels, "size": [int(s) for s in size]}


def _check_no_other_dataset_with_id(raw_dir: str, dataset_id: int, folder_name: str) -> None:
    """nnU-Net resolves ``-d NNN`` by folder prefix and fails on two datasets with one id."""
    if not os.path.isdir(raw_dir):
        return
    prefix = f"Dataset{dataset_id:03d}_"
    for other in sorted(os.listdir(raw_dir)):
        if other.startswith(prefix) and other != folder_name:
            raise ValueError(f"{os.path.join(raw_dir, other)} already uses dataset id {dataset_id}")


def _parse_size(text: str) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z integers, got {text!r}") from None
    if len(size) != 3:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z (3 integers), got {text!r}")
    return size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnunet_scnas synth`` (defaults = ``make_dataset``'s)."""
    parser.add_argument("-d", "--dataset-id", type=int, default=990, help="nnU-Net dataset id (default 990)")
    parser.add_argument("--name", default="SCNASDemo", help="dataset name (default SCNASDemo)")
    parser.add_argument("-n", "--num-cases", type=int, default=24, help="training cases (default 24)")
    parser.add_argument("--channels", type=int, default=4, help="MRI channels: T1, T1ce, T2, FLAIR, ... (default 4)")
    parser.add_argument("--size", type=_parse_size, default=(48, 56, 48),
                        help="voxels X,Y,Z around which each case's size jitters +-15%% (default 48,56,48)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same arrays (default 0)")
    parser.add_argument("--num-test", type=int, default=4, help="held-back cases in imagesTs/labelsTs (default 4)")
    parser.add_argument("--raw-dir", default=None, help="nnU-Net raw folder (default $nnUNet_raw)")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_scnas synth``; problems are one-line ValueErrors."""
    make_dataset(args.raw_dir, args.dataset_id, args.name, args.num_cases, args.channels, args.size,
                 args.seed, args.num_test)
