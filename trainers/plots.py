"""Search progress plot beside nnU-Net's progress.png: tau, alpha entropy per cell type, losses."""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

from nnunet_scnas._io import atomic_write  # noqa: E402
from nnunet_scnas.tools.diagram import default_style  # noqa: E402
from nnunet_scnas.genotypes import CELL_TYPES  # noqa: E402


@default_style
def plot_search_progress(log: dict, output_folder: str) -> None:
    n = len(log["tau"])
    x = list(range(n))
    fig, axes = plt.subplots(3, 1, figsize=(10, 12), sharex=True)
    axes[0].plot(x, log["train_losses"][:n], label="weight loss (train)")
    axes[0].plot(x, log["arch_losses"][:n], label="architecture loss")
    axes[0].plot(x, log["val_losses"][:n], label="validation loss (derived net)")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for t in CELL_TYPES:
        axes[1].plot(x, log[f"alpha_entropy_{t}"][:n], label=t)
    axes[1].axhline(math.log(8), color="grey", ls=":", label="uniform")
    axes[1].set_ylabel("mean entropy of softmax(alpha) per edge")
    axes[1].legend()
    axes[2].plot(x, log["tau"][:n], color="k")
    axes[2].set_ylabel("tau")
    axes[2].set_xlabel("epoch")
    fig.tight_layout()
    try:
        atomic_write(os.path.join(output_folder, "progress_search.png"), fig.savefig)
    finally:
        plt.close(fig)
