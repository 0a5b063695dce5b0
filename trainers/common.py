"""What both SCNAS trainers share: the network written into the plans, the paper's Adam with
plateau-on-training-loss schedule and stop criterion, Jaccard loss, atomic checkpoints,
one-line input errors."""
from __future__ import annotations

import hashlib
import os
import random
import tempfile

import numpy as np

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_scnas._io import atomic_write, remove_temp_files
from nnunet_scnas.macro import MIN_SIZE, STRIDES, check_spatial_size

from .losses import SoftJaccardLoss

PLANS_COMMAND = "nnUNetv2_plan_scnas -d DATASET_ID"


def derived_seed(*parts) -> int:
    """A 63-bit seed that depends on ``parts`` only (not on the process, the rank or the time)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_global_rngs(*parts) -> None:
    """Seed the RNGs nnU-Net draws initial weights, cases, crops and augmentations from."""
    seed = derived_seed(*parts)
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class SCNASUsageError(SystemExit):
    """Bad input to an SCNAS trainer: the command ends with this one line, not a traceback."""

    def __init__(self, message: str):
        super().__init__(f"SCNAS error: {message}")


#: stop a training before the first epoch that would end past this many seconds of epochs
WALL_TIME_ENV = "SCNAS_WALL_TIME"


def wall_time_budget() -> float | None:
    """``$SCNAS_WALL_TIME`` in seconds (None if unset): for comparisons at equal wall time."""
    value = os.environ.get(WALL_TIME_ENV)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise SCNASUsageError(f"{WALL_TIME_ENV} must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise SCNASUsageError(f"{WALL_TIME_ENV} must be positive, got {value!r}")
    return seconds


def epoch_seconds(starts: list[float], ends: list[float]) -> float:
    """Seconds from the first epoch's start to the last finished epoch's end: checkpoint writes
    and plots between epochs count, and so would a pause between a kill and its resume."""
    return float(ends[-1] - starts[0]) if ends else 0.0


class TrainLossPlateau(ReduceLROnPlateau):
    """lr x ``factor`` after ``patience`` epochs without a lower training loss (paper, Sec. 3).

    nnU-Net calls ``lr_scheduler.step(epoch)`` at every epoch start; that call is ignored and the
    trainer calls ``observe(train_loss)`` at every epoch end instead. The counters are not stored
    in checkpoints: ``replay`` rebuilds them from the logged training losses.
    """

    def step(self, *args, **kwargs) -> None:
        pass

    def observe(self, train_loss: float) -> None:
        super().step(train_loss)

    def replay(self, train_losses: list[float]) -> None:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        for loss in train_losses:
            self.observe(loss)
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr


class WallTimePoly:
    """nnU-Net's poly decay, lr = lr0 (1 - t / T)^0.9 per parameter group, with the seconds of
    training t over the ``$SCNAS_WALL_TIME`` budget T as its progress: at equal wall time the
    retrain anneals to zero as stock nnU-Net's poly schedule does over its iterations. (The
    paper's plateau rule waits 30 epochs for a plateau; a budget of a few dozen epochs ends at the
    initial rate.) The trainer calls ``advance`` at each epoch start; nnU-Net's ``step(epoch)``
    is ignored."""

    def __init__(self, optimizer: torch.optim.Optimizer, exponent: float = 0.9):
        self.optimizer, self.exponent = optimizer, exponent
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def step(self, epoch=None) -> None:
        pass

    def advance(self, progress: float) -> None:
        factor = (1 - min(max(progress, 0.0), 1.0)) ** self.exponent
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * factor


class _StopTraining(Exception):
    pass


class SCNASTrainerBase(nnUNetTrainer):
    """Subclasses write their network into the plans (``_set_architecture`` in ``initialize``)
    and give the optimiser's parameter groups (``_param_groups``)."""

    #: the paper's plateau rule and stop criterion; subclasses take the numbers from nnunet_scnas.recipe
    plateau_factor: float
    plateau_patience: int
    min_lr = 0.0
    #: True: nnU-Net's poly decay over the ``$SCNAS_WALL_TIME`` budget (``WallTimePoly``, which
    #: needs the variable) instead of the paper's plateau rule
    poly_over_wall_time = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.weight_decay = 0.0  # the paper's Adam has none
        self.use_jaccard_loss = True
        self._check_patch_size()
        wall_time_budget()  # a bad value fails here, in one line, before any set-up

    # -- network -------------------------------------------------------------------------
    def _check_patch_size(self) -> None:
        try:
            check_spatial_size(self.configuration_manager.patch_size)
        except ValueError as e:
            raise SCNASUsageError(
                f"plans '{self.plans_manager.plans_name}' configuration '{self.configuration_name}' has patch size "
                f"{self.configuration_manager.patch_size}, but {e.args[0].split('; ')[0]} (min {MIN_SIZE}). "
                f"Fix: run '{PLANS_COMMAND}' and train with -p nnUNetPlansSCNAS") from None

    def _set_architecture(self, network_class_name: str, arch_kwargs: dict) -> None:
        """Write the network into the plans, so nnU-Net's static builder, the plans.json copied to
        the output folder and every later ``nnUNetv2_predict`` rebuild exactly this network."""
        cfg = self.plans_manager.plans["configurations"][self.configuration_name]
        cfg["architecture"] = {"network_class_name": network_class_name,
                               "arch_kwargs": {**arch_kwargs, "strides": STRIDES},
                               "_kw_requires_import": []}
        type(self.plans_manager).get_configuration.cache_clear()
        self.configuration_manager = self.plans_manager.get_configuration(self.configuration_name)

    def unwrapped_network(self) -> torch.nn.Module:
        """The SCNAS network itself, without the DDP replica wrapper or torch.compile's."""
        mod = self.network.module if self.is_ddp else self.network
        return getattr(mod, "_orig_mod", mod)

    # -- optimisation ----------------------------------------------------------------------
    def _param_groups(self) -> list[dict]:
        raise NotImplementedError

    def configure_optimizers(self):
        # foreach: on the CPU PyTorch defaults to a Python loop over the 333 tensors of a stem-8 network
        # (7.9 ms a step, 4.9 ms with foreach; bit-equal results, docs/BENCHMARKS.md section 7)
        optimizer = torch.optim.Adam(self._param_groups(), weight_decay=self.weight_decay, foreach=True)
        if self.poly_over_wall_time:
            return optimizer, WallTimePoly(optimizer)
        return optimizer, TrainLossPlateau(optimizer, mode="min", factor=self.plateau_factor,
                                           patience=self.plateau_patience)

    def _build_loss(self):
        loss = super()._build_loss()
        if not self.use_jaccard_loss:
            return loss
        lm = self.label_manager
        kwargs = {"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5, "ddp": self.is_ddp}
        if lm.has_regions:
            jaccard = DC_and_BCE_loss({}, {**kwargs, "do_bg": True}, weight_ce=0,
                                      use_ignore_label=lm.ignore_label is not None, dice_class=SoftJaccardLoss)
        else:
            jaccard = DC_and_CE_loss({**kwargs, "do_bg": False}, {}, weight_ce=0, ignore_label=lm.ignore_label,
                                     dice_class=SoftJaccardLoss)
        if isinstance(loss, DeepSupervisionWrapper):  # keep nnU-Net's deep-supervision weights
            loss.loss = jaccard
            return loss
        return jaccard

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        if isinstance(self.lr_scheduler, TrainLossPlateau):
            self.lr_scheduler.observe(self.logger.get_value("train_losses", step=-1))

    def on_epoch_start(self) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        if lr < self.min_lr:
            self.print_to_log_file(f"Stopping: learning rate {lr:.3g} is below {self.min_lr:g} (paper's criterion)")
            raise _StopTraining
        budget = wall_time_budget()
        if budget is not None:
            spent = self._seconds_agreed()
            if self._wall_time_is_up(spent, budget):
                raise _StopTraining
            if isinstance(self.lr_scheduler, WallTimePoly):
                self.lr_scheduler.advance(spent / budget)
        super().on_epoch_start()

    def _seconds_agreed(self) -> float:
        """``training_seconds`` of rank 0 on every rank, so that all ranks stop at the same epoch
        (none waits for another in a gradient all-reduce) and run the same learning rate."""
        spent = self.training_seconds()
        if self.is_ddp:
            value = torch.tensor([spent], dtype=torch.float64, device=self.device)
            torch.distributed.broadcast(value, src=0)
            spent = float(value.item())
        return spent

    def _wall_time_is_up(self, spent: float, budget: float) -> bool:
        """Would another epoch end past the budget, at the mean epoch time so far?"""
        if not self.current_epoch:
            return False
        stop = spent * (1 + 1 / self.current_epoch) > budget
        if stop:
            self.print_to_log_file(f"Stopping: {WALL_TIME_ENV}={budget:g} s of training; {spent:.0f} s spent in "
                                   f"{self.current_epoch} epochs, another would end past it")
        return stop

    def training_seconds(self) -> float:
        """``epoch_seconds`` of nnU-Net's log, which checkpoints keep: a resumed run counts its
        earlier epochs too."""
        return epoch_seconds(self.logger.get_value("epoch_start_timestamps", step=None),
                             self.logger.get_value("epoch_end_timestamps", step=None))

    def run_training(self) -> None:
        if self.poly_over_wall_time and wall_time_budget() is None:  # here, not in __init__: --val needs no budget
            raise SCNASUsageError(f"{type(self).__name__} decays its learning rate over a wall-time budget: set "
                                  f"{WALL_TIME_ENV}=SECONDS")
        try:
            super().run_training()
        except _StopTraining:
            self.on_train_end()

    # -- checkpoints ------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.local_rank == 0:  # a killed run's temporary files are never renamed; nothing else writes them
            remove_temp_files(self.output_folder)
        super().on_train_start()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically (``nnunet_scnas._io.atomic_write``): neither a kill
        nor a crash of the machine leaves a checkpoint that cannot be read."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)  # writes nothing
        atomic_write(filename, super().save_checkpoint)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        # nnunetv2 2.8.1's load_checkpoint takes a dict by its signature, but reads the checkpoint
        # only from a path (a dict ends in a NameError); until that is fixed, a dict goes via a file
        if isinstance(filename_or_checkpoint, dict):
            fd, tmp = tempfile.mkstemp(suffix=".pth")
            os.close(fd)
            try:
                torch.save(filename_or_checkpoint, tmp)
                return self.load_checkpoint(tmp)
            finally:
                os.unlink(tmp)
        if not self.was_initialized:
            self.initialize()
        # nnU-Net matches key names by calling network.state_dict() once per entry: quadratic, over
        # a minute for the supernet's ~2600 entries. It only reads the keys; one call serves them all.
        entries = self.network.state_dict()
        self.network.state_dict = lambda *args, **kwargs: entries
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            del self.network.state_dict
        # nnU-Net writes checkpoint_latest before it updates the best EMA Dice of that epoch; max()
        # keeps the first of equals and skips NaN exactly as its "new best" rule does
        emas = self.logger.get_value("ema_fg_dice", step=None)
        if emas:
            self._best_ema = max(emas)
        if isinstance(self.lr_scheduler, TrainLossPlateau):
            self.lr_scheduler.replay(self.logger.get_value("train_losses", step=None))
