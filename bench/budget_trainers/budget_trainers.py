"""Trainers of bench/hippocampus_budget.sh: SCNAS and stock nnU-Net on one iteration budget.

Found by nnU-Net through nnUNet_extTrainer (the script sets it); not part of the package.
Widths are not set here but in the plans the script writes (stock: features_per_stage matched
to the retrained SCNAS network's FLOPs; both: batch 2), so that nnUNetv2_predict rebuilds
exactly the trained networks. ``_budgetCPU`` is sized for 2 CPU cores, ``_budgetGPU`` for one GPU.
"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_scnas.recipe import RETRAIN, SEARCH
from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain, nnUNetTrainerSCNASSearch
from nnunet_scnas.trainers.budget import ShortBudget
from nnunet_scnas.trainers.common import TrainLossPlateau
from nnunet_scnas.trainers.variants import nnUNetTrainerSCNASRetrain_nnUNetRecipe


class _Budget(ShortBudget):
    # one loss for both (nnU-Net's Dice + CE): the paper's Jaccard alone needs a long schedule
    epochs, iterations, val_iterations, nnunet_loss = 4, 40, 5, True  # 160 training iterations


class _GPU:
    epochs, iterations = 100, 250


class nnUNetTrainer_budgetCPU(_Budget, nnUNetTrainer):
    pass


class nnUNetTrainerSCNASSearch_budgetCPU(_Budget, nnUNetTrainerSCNASSearch):
    epochs, iterations, stem, arch_warmup = 3, 15, 8, 1  # 45 bi-level steps


class nnUNetTrainerSCNASRetrain_budgetCPU(_Budget, nnUNetTrainerSCNASRetrain):
    """Adam 3e-3: the paper's 3e-4 is for 500 epochs, not 160 iterations."""
    search_trainer_name = "nnUNetTrainerSCNASSearch_budgetCPU"
    stem, lr = 12, 3e-3


class nnUNetTrainerSCNASRetrain_budgetCPUTransfer(nnUNetTrainerSCNASRetrain_budgetCPU):
    """The demo's genotype (found on synthetic BraTS-like data), via $SCNAS_GENOTYPE."""


class nnUNetTrainer_budgetCPUAdam(nnUNetTrainer_budgetCPU):
    """Control: stock nnU-Net's network trained with the SCNAS retrain's optimiser (Adam, lr 3e-3,
    no weight decay; the retrain's plateau rule does not fire in so few epochs, so the lr is
    constant for both), to separate the architecture from the optimiser."""

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=nnUNetTrainerSCNASRetrain_budgetCPU.lr)
        return optimizer, TrainLossPlateau(optimizer, mode="min", factor=nnUNetTrainerSCNASRetrain.plateau_factor,
                                           patience=nnUNetTrainerSCNASRetrain.plateau_patience)


class nnUNetTrainer_budgetCPULong(nnUNetTrainer_budgetCPU):
    """Stock nnU-Net with 5x the iterations: about the SCNAS retrain's wall time on a CPU."""
    epochs = 20


class nnUNetTrainerSCNASRetrain_budgetCPUnnUNetRecipe(_Budget, nnUNetTrainerSCNASRetrain_nnUNetRecipe):
    """Control: the retrained SCNAS network with stock nnU-Net's recipe (SGD 1e-2, poly)."""
    search_trainer_name = nnUNetTrainerSCNASRetrain_budgetCPU.search_trainer_name
    stem = nnUNetTrainerSCNASRetrain_budgetCPU.stem


class nnUNetTrainer_budgetGPU(_GPU, nnUNetTrainer_budgetCPU):
    pass


class nnUNetTrainerSCNASSearch_budgetGPU(_GPU, nnUNetTrainerSCNASSearch_budgetCPU):
    epochs, iterations, stem, arch_warmup = 50, 100, SEARCH.stem_channels, 5


class nnUNetTrainerSCNASRetrain_budgetGPU(_GPU, nnUNetTrainerSCNASRetrain_budgetCPU):
    search_trainer_name = "nnUNetTrainerSCNASSearch_budgetGPU"
    stem = RETRAIN.stem_channels


class nnUNetTrainerSCNASRetrain_budgetGPUTransfer(nnUNetTrainerSCNASRetrain_budgetGPU):
    pass


class nnUNetTrainer_budgetGPUAdam(_GPU, nnUNetTrainer_budgetCPUAdam):
    pass


class nnUNetTrainerSCNASRetrain_budgetGPUnnUNetRecipe(_GPU, nnUNetTrainerSCNASRetrain_budgetCPUnnUNetRecipe):
    search_trainer_name = nnUNetTrainerSCNASRetrain_budgetGPU.search_trainer_name
    stem = nnUNetTrainerSCNASRetrain_budgetGPU.stem
