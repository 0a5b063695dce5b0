"""Trainers of ``nnunet_scnas demo``: SCNAS and stock nnU-Net on one training budget.

``_demoCPU`` fits the whole demo in 15 minutes on 2 CPU cores: search at stem 8, batch 1
(3 epochs of 8 bi-level iterations), then the retrained network at stem 8 and stock nnU-Net
narrowed to 8 base features, each 5 epochs of 20 iterations, validation without test-time mirroring.
``_demoGPU`` keeps the paper's widths (search stem 48, retrain stem 68, nnU-Net as planned)
on a short budget: search 20 x 100, both trainings 40 x 250 iterations.
Both budgets give SCNAS and nnU-Net the same iterations, batch size, validation and loss:
nnU-Net's Dice + CE (BCE for regions) instead of the paper's Jaccard distance, which on budgets
this short leaves small regions stuck (on empty patches its gradient vanishes; measured: the
first demo's retrain predicted "enhancing tumour" everywhere, Dice 0.01, pseudo-Dice on patches
0.9 for the whole tumour).
"""
from __future__ import annotations

import copy

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .retrain import nnUNetTrainerSCNASRetrain
from .search import nnUNetTrainerSCNASSearch

_CUDA = torch.device("cuda")


class _Budget:
    epochs: int
    iterations: int
    mirror_at_inference = True

    def _apply_budget(self) -> None:
        self.use_jaccard_loss = False  # no-op for stock nnU-Net, which has nnU-Net's loss anyway
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations
        self.num_val_iterations_per_epoch = max(2, self.iterations // 5)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        config = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.mirror_at_inference:  # 8 passes per window: too slow on a CPU
            self.inference_allowed_mirroring_axes = None
        return config


class _CPU(_Budget):
    epochs, iterations, mirror_at_inference = 5, 20, False


class _GPU(_Budget):
    epochs, iterations = 40, 250


class nnUNetTrainerSCNASSearch_demoCPU(_CPU, nnUNetTrainerSCNASSearch):
    """Batch 1: a CPU spends ~8 s on one bi-level step of the supernet at batch 2."""

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 3, 8, 2
        self.stem_channels, self.arch_warmup_epochs = 8, 0

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        self.batch_size = 1

    def do_split(self):
        """The search's own validation (of the derived sub-network) on 2 of the fold's 5 cases:
        the comparison is made by the retrain and stock nnU-Net, on all of them."""
        tr_keys, val_keys = super().do_split()
        return tr_keys, sorted(val_keys)[:2]


class nnUNetTrainerSCNASRetrain_demoCPU(_CPU, nnUNetTrainerSCNASRetrain):
    """Adam at 3e-3 instead of the paper's 3e-4: 100 iterations are too few for the latter."""
    search_trainer_name = "nnUNetTrainerSCNASSearch_demoCPU"

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()
        self.stem_channels, self.initial_lr = 8, 3e-3


class nnUNetTrainer_demoCPU(_CPU, nnUNetTrainer):
    """Stock nnU-Net (network, loss, SGD, poly schedule), 8 base features instead of 32."""
    base_features = 8

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()

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
    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()
        self.num_epochs, self.num_iterations_per_epoch, self.arch_warmup_epochs = 20, 100, 2


class nnUNetTrainerSCNASRetrain_demoGPU(_GPU, nnUNetTrainerSCNASRetrain):
    search_trainer_name = "nnUNetTrainerSCNASSearch_demoGPU"

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()
        self.initial_lr = 1e-3


class nnUNetTrainer_demoGPU(_GPU, nnUNetTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_budget()
