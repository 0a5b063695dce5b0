"""Trainers of ``nnunet_scnas demo``: SCNAS and stock nnU-Net on one training budget.

``_demoCPU`` is sized for the whole demo to run in minutes on 2 CPU cores: search at stem 8,
batch 1 (8 epochs of 12 bi-level iterations: 96 alpha steps), then the retrained network and a
random genotype of its cost at stem 8 and stock nnU-Net narrowed to 8 base features, each 10 epochs
of 20 iterations, validation without test-time mirroring. Every training is seeded
(``ShortBudget.seed``). ``_demoGPU`` keeps the paper's widths (search stem 48, retrain stem 68,
nnU-Net as planned) on a short budget: search 20 x 100, both trainings 40 x 250 iterations.
Both budgets give SCNAS and nnU-Net the same iterations, batch size, validation and loss:
nnU-Net's Dice + CE (BCE for regions) instead of the paper's Jaccard distance, which on budgets
this short leaves small regions stuck (on empty patches its gradient vanishes). Measured times and
Dice of these trainers: docs/BENCHMARKS.md ("Short-budget trainers").
"""
from __future__ import annotations

import copy

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .budget import ShortBudget
from .retrain import nnUNetTrainerSCNASRetrain
from .search import nnUNetTrainerSCNASSearch


class _CPU(ShortBudget):
    epochs, iterations, val_iterations, nnunet_loss, mirror_at_inference, seed = 10, 20, 4, True, False, 0


class _GPU(ShortBudget):
    epochs, iterations, val_iterations, nnunet_loss, seed = 40, 250, 50, True, 0


class nnUNetTrainerSCNASSearch_demoCPU(_CPU, nnUNetTrainerSCNASSearch):
    """Batch 1: a bi-level step of the supernet at batch 2 is too slow on a CPU (docs/BENCHMARKS.md).
    The search's own validation (of the derived sub-network) is on 2 of the fold's 5 cases: the
    comparison is made by the retrain and stock nnU-Net, on all of them."""
    epochs, iterations, val_iterations, stem, arch_warmup, max_val_cases = 8, 12, 2, 8, 0, 2

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        self.batch_size = 1


class nnUNetTrainerSCNASRetrain_demoCPU(_CPU, nnUNetTrainerSCNASRetrain):
    """Adam at 3e-3 instead of the paper's 3e-4: 100 iterations are too few for the latter."""
    search_trainer_name = "nnUNetTrainerSCNASSearch_demoCPU"
    stem, lr = 8, 3e-3


class nnUNetTrainerSCNASRetrain_demoCPURandom(nnUNetTrainerSCNASRetrain_demoCPU):
    """The control: a random genotype of the searched one's cost ($SCNAS_GENOTYPE), same budget."""
    search_trainer_name = None


class nnUNetTrainer_demoCPU(_CPU, nnUNetTrainer):
    """Stock nnU-Net (network, loss, SGD, poly schedule), 8 base features instead of 32."""
    base_features = 8

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        cm = copy.deepcopy(configuration_manager)
        kwargs = cm.configuration["architecture"]["arch_kwargs"]
        cap = kwargs["features_per_stage"][-1]
        kwargs["features_per_stage"] = [min(cls.base_features * 2 ** i, cap)
                                        for i in range(len(kwargs["features_per_stage"]))]
        return super().build_network_architecture(plans_manager, cm, num_input_channels, num_output_channels,
                                                  enable_deep_supervision)


class nnUNetTrainerSCNASSearch_demoGPU(_GPU, nnUNetTrainerSCNASSearch):
    epochs, iterations, arch_warmup = 20, 100, 2


class nnUNetTrainerSCNASRetrain_demoGPU(_GPU, nnUNetTrainerSCNASRetrain):
    search_trainer_name = "nnUNetTrainerSCNASSearch_demoGPU"
    lr = 1e-3


class nnUNetTrainerSCNASRetrain_demoGPURandom(nnUNetTrainerSCNASRetrain_demoGPU):
    search_trainer_name = None


class nnUNetTrainer_demoGPU(_GPU, nnUNetTrainer):
    pass
