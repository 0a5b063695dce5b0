"""Trainer variants in nnU-Net's style: each changes one thing. A retrain variant reads the
genotype of the search variant with the same suffix."""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .budget import ShortBudget
from .retrain import nnUNetTrainerSCNASRetrain
from .search import nnUNetTrainerSCNASSearch

_CUDA = torch.device("cuda")


class nnUNetTrainerSCNASSearch_5epochs(ShortBudget, nnUNetTrainerSCNASSearch):
    epochs, arch_warmup = 5, 0


class nnUNetTrainerSCNASSearch_20epochs(ShortBudget, nnUNetTrainerSCNASSearch):
    epochs, arch_warmup = 20, 2


class nnUNetTrainerSCNASRetrain_5epochs(ShortBudget, nnUNetTrainerSCNASRetrain):
    search_trainer_name = "nnUNetTrainerSCNASSearch_5epochs"
    epochs = 5


class nnUNetTrainerSCNASRetrain_20epochs(ShortBudget, nnUNetTrainerSCNASRetrain):
    search_trainer_name = "nnUNetTrainerSCNASSearch_20epochs"
    epochs = 20


class nnUNetTrainerSCNASRetrain_transfer(nnUNetTrainerSCNASRetrain):
    """The retrain with a genotype found on another task ($SCNAS_GENOTYPE), in a results folder
    of its own, so that it sits beside the per-task retrain in ``nnunet_scnas compare``."""
    search_trainer_name = None


class nnUNetTrainerSCNASRetrain_wallTime(nnUNetTrainerSCNASRetrain):
    """The retrain for a fixed wall time ($SCNAS_WALL_TIME, required): nnU-Net's poly decay over
    that time (``common.WallTimePoly``) instead of the paper's plateau rule, which cannot act in a
    short budget. Reads the genotype of nnUNetTrainerSCNASSearch, or $SCNAS_GENOTYPE."""
    poly_over_wall_time = True

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1_000_000  # the wall time ends the training, with the rate at ~0, not the paper's 500


class nnUNetTrainerSCNASSearch_nnUNetLoss(nnUNetTrainerSCNASSearch):
    """Ablation: nnU-Net's Dice + CE loss instead of the Jaccard distance. The optimisers stay the
    paper's: nnU-Net has no architecture optimiser to swap in."""

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.use_jaccard_loss = False


class nnUNetTrainerSCNASRetrain_nnUNetRecipe(nnUNetTrainerSCNASRetrain):
    """Ablation: the derived network trained with nnU-Net's loss (Dice + CE) and optimiser (SGD,
    Nesterov 0.99, lr 1e-2, weight decay 3e-5, poly schedule) instead of the paper's."""

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.use_jaccard_loss = False
        self.initial_lr, self.weight_decay, self.min_lr = 1e-2, 3e-5, 0.0

    def configure_optimizers(self):
        return nnUNetTrainer.configure_optimizers(self)


class _Smoke(ShortBudget):
    """Pipeline check on a CPU: stem 8, 2 epochs of at most 20 iterations, final validation on 3
    cases without test-time mirroring (also for nnUNetv2_predict with this trainer)."""
    epochs, iterations, val_iterations, stem = 2, 20, 2, 8
    mirror_at_inference, max_val_cases = False, 3


class nnUNetTrainerSCNASSearch_smoke(_Smoke, nnUNetTrainerSCNASSearch):
    __doc__ = _Smoke.__doc__ + " 10 iterations per epoch; alpha steps from the first one."
    iterations, arch_warmup = 10, 0


class nnUNetTrainerSCNASRetrain_smoke(_Smoke, nnUNetTrainerSCNASRetrain):
    __doc__ = _Smoke.__doc__ + (" Adam lr 3e-3 instead of 3e-4, so that 40 iterations show learning "
                                "(docs/BENCHMARKS.md, \"Short-budget trainers\").")
    search_trainer_name = "nnUNetTrainerSCNASSearch_smoke"
    lr = 3e-3
