"""The paper's training recipe in one place (Kim et al. 2019, Sec. 3), plus the choices it leaves open.

Trainers, the planner, the command line and the benchmarks read these numbers; change them here.
Each constant names the sentence of the paper it comes from, or says that the choice is ours
(docs/DESIGN.md explains each of ours).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchRecipe:
    """Stochastic bi-level search (Sec. 2.2 and 3)."""

    stem_channels: int = 48        # Sec. 3: "48 output channels of the stem cell" to fit batch 1 on one GPU
    epochs: int = 200              # Sec. 3: "trained for 200 epochs"
    batch_size: int = 4            # Sec. 3: "batch size of 4" (over 4 GPUs); we use the plans' batch
    weight_lr: float = 0.025       # Sec. 3: Adam, initial lr 0.025 ...
    weight_betas: tuple[float, float] = (0.1, 0.001)   # ... betas (0.1, 0.001) for the weights Theta
    arch_lr: float = 3e-3          # Sec. 3: Adam, initial lr 0.003 ...
    arch_betas: tuple[float, float] = (0.5, 0.999)     # ... betas (0.5, 0.999) for alpha
    plateau_patience: int = 20     # Sec. 3: "a plateau for 20 epochs on the training loss ...
    plateau_factor: float = 0.1    # ... the learning rate was reduced by a factor of 10"
    arch_fraction: float = 0.2     # Sec. 3: alpha on 1/5 of each fold's training cases, Theta on the other 4/5
    # ours (the paper is silent): temperature schedule and alpha warm-up (docs/DESIGN.md, "Search")
    tau_start: float = 1.0
    tau_end: float = 0.05
    arch_warmup_fraction: float = 0.1  # 20 of 200 epochs: weights only, so alpha is not fit to random weights
    grad_clip_norm: float = 12.0       # as nnU-Net's train_step
    iterations_per_epoch: int = 250    # nnU-Net's epoch, the unit of the paper's 200 epochs (ours)

    @property
    def alpha_steps(self) -> int:
        """Alpha steps of the paper's search: (200 - 20 warm-up epochs) x 250 = 45,000."""
        return (self.epochs - round(self.arch_warmup_fraction * self.epochs)) * self.iterations_per_epoch

    def arch_lr_for(self, alpha_steps: int) -> float:
        """Alpha's learning rate for a search of ``alpha_steps`` architecture steps (ours).

        Adam moves a logit by at most about its learning rate per step, so at the paper's 3e-3 a
        search of a few hundred steps cannot leave uniform (24 steps: at most +-0.07). The rule
        keeps the random walk that noisy gradients cause the same at every budget, and lets a
        consistent gradient move alpha sqrt(steps) times that: lr = 3e-3 * sqrt(45,000 / steps),
        the paper's 3e-3 at its budget and above (docs/DESIGN.md, "Search budget").
        """
        if alpha_steps <= 0:
            return self.arch_lr
        return self.arch_lr * max(1.0, math.sqrt(self.alpha_steps / alpha_steps))


@dataclass(frozen=True)
class RetrainRecipe:
    """Retraining the derived network from scratch (Sec. 3)."""

    stem_channels: int = 68        # Sec. 3: "increasing the number of stem channels to 68"
    epochs: int = 500              # Sec. 3: "terminated ... if it lasted for 500 epochs ...
    min_lr: float = 1e-7           # ... or if the learning rate was smaller than 10^-7"
    batch_size: int = 8            # Sec. 3: "batch size of 8"; we use the plans' batch
    lr: float = 3e-4               # Sec. 3: "initial learning rate of 0.0003 ...
    betas: tuple[float, float] = (0.9, 0.999)  # ... beta parameters of (0.9, 0.999)"
    plateau_patience: int = 30     # Sec. 3: "reduced by a factor of 5 if a training loss was not
    plateau_factor: float = 0.2    # reduced for 30 epochs"


def tau_schedule(epoch: int, num_epochs: int, warmup_epochs: int, tau_start: float, tau_end: float) -> float:
    """Gumbel-softmax temperature (ours; the paper anneals tau without a schedule): ``tau_start``
    during the alpha warm-up, then exponential decay to ``tau_end`` at the last epoch, so the
    search drifts from two ops per edge towards one."""
    if epoch <= warmup_epochs or num_epochs - 1 <= warmup_epochs:
        return tau_start
    progress = min(1.0, (epoch - warmup_epochs) / (num_epochs - 1 - warmup_epochs))
    return tau_start * (tau_end / tau_start) ** progress


SEARCH = SearchRecipe()
RETRAIN = RetrainRecipe()
