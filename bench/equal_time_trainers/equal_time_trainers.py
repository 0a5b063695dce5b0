"""Trainers of bench/hippocampus_equal_time.sh (found through nnUNet_extTrainer; the script sets it).

Stock nnU-Net trains its recipe for 1000 iterations; its seconds of training epochs are the budget
T that the SCNAS retrains get through ``SCNAS_WALL_TIME`` (they stop before the epoch that would
end past it). Every training runs epochs of 20 iterations with 5 validation iterations, batch 2,
and no test-time mirroring (8 passes per window are too slow on a CPU), so the budget buys the
same kind of epochs for all.
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_wallTime, nnUNetTrainerSCNASSearch
from nnunet_scnas.trainers.budget import ShortBudget


class nnUNetTrainer_et(ShortBudget, nnUNetTrainer):
    """Stock nnU-Net, its recipe (SGD 1e-2 with poly decay, Dice + CE, its augmentation), its
    plans (32-256 features on hippocampus), 50 epochs x 20 iterations = 1000 iterations."""
    epochs, iterations, val_iterations, seed, mirror_at_inference = 50, 20, 5, 0, False


class nnUNetTrainerSCNASRetrain_etTransfer(ShortBudget, nnUNetTrainerSCNASRetrain_wallTime):
    """(a) A transferred genotype ($SCNAS_GENOTYPE), stem 24, Adam 3e-3 (the paper's 3e-4 is for
    500 epochs) decayed to zero over $SCNAS_WALL_TIME as nnU-Net's poly schedule (the paper's
    plateau rule never acts in ~60 epochs), nnU-Net's Dice + CE, until $SCNAS_WALL_TIME. Stem 24:
    its step costs less than stock nnU-Net's here
    (0.9 against 1.3 s for the demo's genotype, bench/train_step.py)."""
    search_trainer_name = None
    epochs, iterations, val_iterations, stem, lr, nnunet_loss, seed = 10_000, 20, 5, 24, 3e-3, True, 0
    mirror_at_inference = False


class nnUNetTrainerSCNASSearch_et(ShortBudget, nnUNetTrainerSCNASSearch):
    """(b) The search on this fold: stem 8, batch 1, 6 epochs of 20 bi-level iterations, the first
    weights only (100 alpha steps, alpha's learning rate from the recipe's rule). The weights' Adam
    at 3e-3: at this budget the paper's 0.025 with betas (0.1, 0.001) leaves the supernet predicting
    background (docs/BENCHMARKS.md, section 6)."""
    epochs, iterations, val_iterations, stem, arch_warmup, lr, nnunet_loss = 6, 20, 5, 8, 1, 3e-3, True
    mirror_at_inference, max_val_cases = False, 5

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        self.batch_size = 1


class nnUNetTrainerSCNASRetrain_etSearched(nnUNetTrainerSCNASRetrain_etTransfer):
    """(b) The genotype the search above found, retrained as (a), until $SCNAS_WALL_TIME = T minus
    the search's seconds."""
    search_trainer_name = "nnUNetTrainerSCNASSearch_et"


class nnUNetTrainerSCNASRetrain_etControl(nnUNetTrainerSCNASRetrain_etTransfer):
    """(c) The control: a uniform random genotype of the transferred genotype's parameters and
    FLOPs ($SCNAS_GENOTYPE, drawn by the script), retrained as (a), until $SCNAS_WALL_TIME = T."""


class nnUNetTrainerSCNASRetrain_etControl2(nnUNetTrainerSCNASRetrain_etControl):
    """(c) The second control (``N_CONTROL=2``): another draw."""


class nnUNetTrainerSCNASRetrain_etControl3(nnUNetTrainerSCNASRetrain_etControl):
    """(c) The third control (``N_CONTROL=3``): another draw."""


class nnUNetTrainerSCNASRetrain_etTransfer16(nnUNetTrainerSCNASRetrain_etTransfer):
    """Ablation (``ABLATION=1``): (a) at stem 16, the width of the 2026-11-28 run, with the rate
    annealed over T: separates the schedule's gain from the width's."""
    stem = 16
