"""Test-only trainers for tests/test_integration_datasets.py (found through nnUNet_extTrainer):
the smallest search and retrain that still learn. They use nnU-Net's Dice + CE/BCE: the paper's
Jaccard alone left the region datasets at a validation Dice of 0.07 after 40 iterations (on
patches without a region its gradient vanishes); tests/test_nnunet_pipeline.py runs the
Jaccard loss end to end."""
import torch

from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_smoke, nnUNetTrainerSCNASSearch_smoke

_CUDA = torch.device("cuda")


class nnUNetTrainerSCNASSearch_integration(nnUNetTrainerSCNASSearch_smoke):
    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 8, 1
        self.use_jaccard_loss = False

    def do_split(self):
        tr_keys, val_keys = super().do_split()
        return tr_keys, val_keys[:2]


class nnUNetTrainerSCNASRetrain_integration(nnUNetTrainerSCNASRetrain_smoke):
    search_trainer_name = "nnUNetTrainerSCNASSearch_integration"

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 30, 1
        self.use_jaccard_loss = False
