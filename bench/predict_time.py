"""Sliding-window prediction time of a derived SCNAS network against stock nnU-Net at matched FLOPs.

Both networks run through nnU-Net's own ``nnUNetPredictor.predict_sliding_window_return_logits``
(Gaussian weighting, step 0.5, mirroring off unless ``--mirror``) on the same random volume.
The stock network is nnU-Net's PlainConvUNet with its 3d_fullres topology for the patch
(2 convs per stage, InstanceNorm, LeakyReLU, stride 2 until the coarsest map is 4 voxels);
its base feature count is chosen so that its FLOPs per patch are closest to SCNAS's. A third
row, ``stock_onednn``, is the same stock network with SCNAS's CPU conv kernel choice
(``nnunet_scnas.operations.Conv3d``). Runs alternate between the networks; the last line is
``scnas/stock time=X flops=Y``.

    python bench/predict_time.py --genotype docs/example_genotype.json --stem 16
    python bench/predict_time.py --code .bench_baseline ...   # another version of nnunet_scnas
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from _code import check_code, use_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stock(in_ch: int, classes: int, patch: list[int], base: int):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    n_stages = 1
    while all(p // 2 ** n_stages >= 4 for p in patch) and n_stages < 6:
        n_stages += 1
    return PlainConvUNet(in_ch, n_stages, [min(base * 2 ** i, 320) for i in range(n_stages)], torch.nn.Conv3d, 3,
                         [1] + [2] * (n_stages - 1), 2, classes, 2, conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
                         norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
                         nonlin_kwargs={"inplace": True}, deep_supervision=False)


def _predictor(net: torch.nn.Module, patch: list[int], in_ch: int, classes: int, mirror: bool):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = {"dataset_name": "bench", "plans_name": "bench", "transpose_forward": [0, 1, 2],
             "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": {"patch_size": patch, "architecture": {}}}}
    dataset_json = {"labels": {"background": 0, **{f"l{i}": i for i in range(1, classes)}},
                    "channel_names": {str(i): f"c{i}" for i in range(in_ch)}, "file_ending": ".nii.gz"}
    pm = PlansManager(plans)
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror, device=torch.device("cpu"),
                        perform_everything_on_device=False, allow_tqdm=False)
    p.manual_initialization(net.eval(), pm, pm.get_configuration("3d_fullres"), None, dataset_json, "bench",
                            (0, 1, 2) if mirror else None)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genotype", default="docs/example_genotype.json")
    ap.add_argument("--stem", type=int, default=16)
    ap.add_argument("--patch", default="64,64,64")
    ap.add_argument("--volume", default="128,128,128")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--code", default=REPO, help="folder to import nnunet_scnas from (to compare two versions)")
    a = ap.parse_args()
    use_code(a.code)
    from nnunet_scnas import Genotype, SCNASNetwork, count_flops, count_parameters
    torch.set_num_threads(a.threads)
    patch = [int(v) for v in a.patch.split(",")]
    volume = [int(v) for v in a.volume.split(",")]
    scnas = SCNASNetwork(a.channels, a.classes, Genotype.load(a.genotype), a.stem, deep_supervision=False)
    shape = [1, a.channels, *patch]
    f_scnas = count_flops(scnas, shape)
    base = min(range(2, 65), key=lambda b: abs(count_flops(_stock(a.channels, a.classes, patch, b), shape) - f_scnas))
    stock = _stock(a.channels, a.classes, patch, base)
    f_stock = count_flops(stock, shape)
    check_code(a.code)
    print(f"patch {patch}, volume {volume}, mirroring {a.mirror}, {a.threads} threads, code {a.code}")
    print(f"SCNAS stem {a.stem}: {count_parameters(scnas) / 1e6:.2f} M params, {f_scnas / 1e9:.2f} GFLOPs per patch")
    print(f"stock PlainConvUNet base {base}: {count_parameters(stock) / 1e6:.2f} M params, "
          f"{f_stock / 1e9:.2f} GFLOPs per patch")
    x = torch.randn(a.channels, *volume)
    preds = {"scnas": _predictor(scnas, patch, a.channels, a.classes, a.mirror),
             "stock": _predictor(stock, patch, a.channels, a.classes, a.mirror)}
    try:  # the same network with SCNAS's conv kernel choice: how much of the gap is that choice
        from nnunet_scnas.operations import Conv3d
    except ImportError:  # --code of a version without it
        Conv3d = None
    if Conv3d is not None:
        stock_onednn = copy.deepcopy(stock)
        for m in stock_onednn.modules():
            if type(m) is torch.nn.Conv3d:
                m.__class__ = Conv3d
        preds["stock_onednn"] = _predictor(stock_onednn, patch, a.channels, a.classes, a.mirror)
    times = {k: [] for k in preds}
    with torch.no_grad():
        for k, p in preds.items():  # warm-up
            p.predict_sliding_window_return_logits(x)
        for _ in range(a.reps):
            for k, p in preds.items():
                t0 = time.perf_counter()
                p.predict_sliding_window_return_logits(x)
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("median prediction time: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
    if "stock_onednn" in med:
        print(f"scnas/stock_onednn time={med['scnas'] / med['stock_onednn']:.2f} (stock's convs through oneDNN too)")
    print(f"scnas/stock time={med['scnas'] / med['stock']:.2f} flops={f_scnas / f_stock:.2f}")


if __name__ == "__main__":
    main()
