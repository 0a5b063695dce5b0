"""Test-only trainers for tests/test_integration_datasets.py (found through nnUNet_extTrainer):
the smallest search and retrain that still learn. They use nnU-Net's Dice + CE/BCE: the paper's
Jaccard alone left the region datasets at a validation Dice of 0.07 after 40 iterations (on
patches without a region its gradient vanishes); tests/test_nnunet_pipeline.py runs the
Jaccard loss end to end. The retrain is seeded (with nnUNet_n_proc_DA=0 a rerun on one machine
repeats itself) and runs 4 x 30 iterations: after 3 x 30 one CI run left the ignore-label dataset
at a validation Dice of 0.0 where this machine's runs reached 0.69."""
from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain_smoke, nnUNetTrainerSCNASSearch_smoke


class nnUNetTrainerSCNASSearch_integration(nnUNetTrainerSCNASSearch_smoke):
    epochs, iterations, val_iterations, nnunet_loss, max_val_cases = 1, 8, 1, True, 2


class nnUNetTrainerSCNASRetrain_integration(nnUNetTrainerSCNASRetrain_smoke):
    search_trainer_name = "nnUNetTrainerSCNASSearch_integration"
    epochs, iterations, val_iterations, nnunet_loss, seed = 4, 30, 1, True, 0
