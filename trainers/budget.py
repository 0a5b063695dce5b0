"""Short training budgets for any nnU-Net trainer, SCNAS or stock, stated as class attributes.

A budget trainer lists ``ShortBudget`` before the trainer it shortens and states only its numbers::

    class nnUNetTrainerSCNASSearch_smoke(ShortBudget, nnUNetTrainerSCNASSearch):
        epochs, iterations, val_iterations, stem, arch_warmup = 2, 10, 2, 8, 0

``ShortBudget.__init__`` runs the trainer's own ``__init__`` (nnU-Net's signature: plans,
configuration, fold, dataset_json, device), then writes the attributes that are not None over the
trainer's values; a subclass's ``__init__`` may change them afterwards. Attributes left at None
keep the trainer's value, so a budget changes nothing it does not name.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .common import seed_global_rngs


class ShortBudget:
    #: num_epochs
    epochs: int | None = None
    #: num_iterations_per_epoch (training)
    iterations: int | None = None
    #: num_val_iterations_per_epoch (the pseudo-Dice on patches after each epoch)
    val_iterations: int | None = None
    #: stem_channels of an SCNAS network
    stem: int | None = None
    #: initial_lr (for SCNAS the weights' Adam; for stock nnU-Net its SGD)
    lr: float | None = None
    #: arch_warmup_epochs of an SCNAS search (epochs before alpha takes steps)
    arch_warmup: int | None = None
    #: nnU-Net's Dice + CE (BCE for regions) instead of the paper's Jaccard distance: sets
    #: use_jaccard_loss = False, an attribute that stock nnU-Net, whose loss this is anyway, ignores
    nnunet_loss: bool = False
    #: False: no test-time mirroring in the final validation and in nnUNetv2_predict with this
    #: trainer (8 passes per window: too slow on a CPU)
    mirror_at_inference: bool = True
    #: final validation on the first this many of the fold's validation cases (sorted); None: all
    max_val_cases: int | None = None
    #: seed nnU-Net's global RNGs from (seed, fold) before the network is built and from (seed, fold,
    #: epoch) at every epoch start, so that with nnUNet_n_proc_DA=0 (augmentation in this process) a
    #: rerun repeats the training bit for bit on a CPU; None: nnU-Net's unseeded behaviour. (The
    #: search seeds itself, ``search_seed``.)
    seed: int | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if issubclass(cls, nnUNetTrainer) and mro.index(nnUNetTrainer) < mro.index(ShortBudget):
            # nnUNetTrainer's methods do not call super(): ShortBudget's would never run
            raise TypeError(f"{cls.__name__}: list ShortBudget before the nnU-Net trainer among its bases")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_budget()

    def apply_budget(self) -> None:
        """Write the budget's attributes that are not None over the trainer's (called by __init__)."""
        for attribute, value in (("num_epochs", self.epochs), ("num_iterations_per_epoch", self.iterations),
                                 ("num_val_iterations_per_epoch", self.val_iterations),
                                 ("stem_channels", self.stem), ("initial_lr", self.lr),
                                 ("arch_warmup_epochs", self.arch_warmup)):
            if value is not None:
                setattr(self, attribute, value)
        if self.nnunet_loss:
            self.use_jaccard_loss = False

    def initialize(self):
        if self.seed is not None and not self.was_initialized:
            seed_global_rngs(self.seed, self.fold, "init")
        super().initialize()

    def on_epoch_start(self):
        super().on_epoch_start()
        if self.seed is not None:
            seed_global_rngs(self.seed, self.fold, "data", self.current_epoch)

    def do_split(self):
        tr_keys, val_keys = super().do_split()
        if self.max_val_cases is not None:
            val_keys = sorted(val_keys)[:self.max_val_cases]
        return tr_keys, val_keys

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        config = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.mirror_at_inference:
            self.inference_allowed_mirroring_axes = None
        return config
