"""``nnUNetTrainerSCNASSearch``: the stochastic bi-level search (paper, Sec. 2.2 and 3) in nnU-Net.

This file is the nnU-Net side: the 4:1 split of each fold's training cases into weight and
architecture cases, a second data loader, seeding, distributed set-up, logging and pictures.
The step itself is ``nnunet_scnas.bilevel.BilevelStep``; the numbers are ``nnunet_scnas.recipe``.

Determinism and resume: the initial network, every architecture draw and every epoch's data
(batches, crops, augmentation) come from seeds derived from (``search_seed``, fold, epoch,
...), and the checkpoint of every epoch holds everything else (weights, alpha, both Adam
states, logger; the plateau counters are replayed). So ``--c`` after a kill continues exactly
where an uninterrupted run would be -- on a CPU with ``nnUNet_n_proc_DA=0`` bit for bit. With
background augmentation workers (nnU-Net's NonDetMultiThreadedAugmenter, the default) even two
uninterrupted runs differ, and on a GPU so do cuDNN's kernels (nnU-Net turns on
``cudnn.benchmark``); see docs/DESIGN.md.

Distributed (``-num_gpus N``): every rank draws the same architectures (the draws' seeds do not
depend on the rank), samples its own share of every batch and averages the gradients of the
group it steps, so weights and alpha stay identical on all ranks. nnU-Net's DDP wrapper is not
used: its reducer cannot serve a backward pass that computes only one group's gradients.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.distributed as dist
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json

from nnunet_scnas._io import atomic_write_json
from nnunet_scnas.bilevel import BilevelStep
from nnunet_scnas.genotypes import CELL_TYPES
from nnunet_scnas.recipe import SEARCH, tau_schedule
from nnunet_scnas.tools.diagram import plot_alpha_history, render_genotype

from .common import SCNASTrainerBase, SCNASUsageError, derived_seed, seed_global_rngs

SPLIT_FILE = "scnas_split.json"
GENOTYPE_FILE = "genotype.json"
GENOTYPE_LATEST_FILE = "genotype_latest.json"
ALPHA_HISTORY_FILE = "alpha_history.json"
CELL_IMAGES_FOLDER = "cells"  # cell_<type>.png of the final genotype (paper, Fig. 2)


SEED_ENV = "SCNAS_SEARCH_SEED"
DEFAULT_SEARCH_SEED = 12345


def _search_seed_from_environment() -> int:
    """``$SCNAS_SEARCH_SEED`` (an integer), else 12345: repeat a search with other seeds to see
    which choices are stable (initial weights and alpha, the 4:1 split, data and draws all follow it)."""
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return DEFAULT_SEARCH_SEED
    try:
        return int(text)
    except ValueError:
        raise SCNASUsageError(f"${SEED_ENV} must be an integer, got {text!r}") from None


def split_weights_arch(keys: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Seeded 4:1 split of a fold's training cases into weight cases and architecture cases."""
    keys = sorted(keys)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(keys))
    n_arch = max(1, int(round(len(keys) * SEARCH.arch_fraction)))
    arch = sorted(keys[i] for i in order[:n_arch])
    weights = sorted(keys[i] for i in order[n_arch:])
    return weights, arch


class ReplicatedNetwork(torch.nn.Module):
    """What DDP gives nnU-Net, minus the reducer that cannot serve ``backward(inputs=one group)``:
    rank 0's weights, alpha and buffers on every rank at the start, and ``.module`` for nnU-Net's
    DDP code paths (checkpoints, deep supervision). ``BilevelStep`` averages the gradients."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class nnUNetTrainerSCNASSearch(SCNASTrainerBase):
    plateau_factor = SEARCH.plateau_factor
    plateau_patience = SEARCH.plateau_patience

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.is_ddp and device.type == "cpu":  # nnU-Net assumes one GPU per rank; a gloo group on CPUs keeps them
            self.device, self.grad_scaler = device, None
        self.num_epochs = SEARCH.epochs
        self.initial_lr, self.betas = SEARCH.weight_lr, SEARCH.weight_betas
        #: None: scaled to the run's alpha steps by the recipe's rule (SEARCH.arch_lr_for), which is
        #: the paper's 3e-3 at the paper's budget; a number fixes it
        self.arch_lr: float | None = None
        self.arch_betas = SEARCH.arch_betas
        self.stem_channels = SEARCH.stem_channels
        self.tau_start, self.tau_end = SEARCH.tau_start, SEARCH.tau_end
        self.arch_warmup_epochs = round(SEARCH.arch_warmup_fraction * SEARCH.epochs)
        self.sampling = "two_op"
        self.checkpoint_cells: bool | None = None  # None: only where the step would not fit otherwise
        self.search_seed = _search_seed_from_environment()
        self.save_every = 1  # --c resumes at the last finished epoch
        self.dataloader_arch = None
        self.bilevel: BilevelStep | None = None
        self._iteration = 0
        self._arch_losses: list[float] = []
        for key in ("tau", "arch_losses", *(f"alpha_entropy_{t}" for t in CELL_TYPES)):
            self.logger.local_logger.my_fantastic_logging.setdefault(key, [])

    # -- network and optimiser ---------------------------------------------------------------
    def initialize(self) -> None:
        if self.checkpoint_cells is None:
            self.checkpoint_cells = self._needs_cell_checkpointing()
        self._set_architecture("nnunet_scnas.search_model.SearchNetwork", {
            "stem_channels": self.stem_channels, "sampling": self.sampling, "tau": self.tau_start,
            "checkpoint_cells": self.checkpoint_cells})
        self._seed_global_rngs("init")  # the same initial weights and alpha in every run
        # nnU-Net's initialize, without its DDP wrapper; then what it sets differently under DDP
        ddp, self.is_ddp = self.is_ddp, False
        try:
            super().initialize()
        finally:
            self.is_ddp = ddp
        if ddp:
            self.network = ReplicatedNetwork(self.network)
            self._set_batch_size_and_oversample()  # each rank's share of the batch
            self.loss = self._build_loss()  # batch Dice over all ranks

    def _needs_cell_checkpointing(self) -> bool:
        """Recompute each cell in backward only if the step would not fit the GPU without: it costs
        step time (docs/BENCHMARKS.md, section 1)."""
        if self.device.type != "cuda":
            return False
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        from nnunet_scnas.tools.memory import estimate_training_memory
        from nnunet_scnas.search_model import SearchNetwork
        c_in = determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)
        net = SearchNetwork(c_in, self.label_manager.num_segmentation_heads, self.stem_channels)
        shape = (self.configuration_manager.batch_size, c_in, *self.configuration_manager.patch_size)
        need = estimate_training_memory(net, shape)
        have = torch.cuda.get_device_properties(self.device).total_memory / 1024 ** 3
        use = need > 0.85 * have
        self.print_to_log_file(f"search step needs ~{need:.1f} GB without cell checkpointing, GPU has {have:.1f} GB: "
                               f"checkpointing {'on' if use else 'off'}")
        return use

    def _do_i_compile(self) -> bool:
        """Never: every step runs another sub-network, which torch.compile would recompile."""
        return False

    def _param_groups(self) -> list[dict]:
        net = self.unwrapped_network()
        return [{"params": net.weight_parameters(), "lr": self.initial_lr, "betas": self.betas},
                {"params": net.arch_parameters(), "lr": self.arch_learning_rate(), "betas": self.arch_betas}]

    def alpha_steps(self, epochs: int | None = None) -> int:
        """Architecture steps in the first ``epochs`` epochs (default: the whole run)."""
        epochs = self.num_epochs if epochs is None else epochs
        return max(0, epochs - self.arch_warmup_epochs) * self.num_iterations_per_epoch

    def arch_learning_rate(self) -> float:
        return self.arch_lr if self.arch_lr is not None else SEARCH.arch_lr_for(self.alpha_steps())

    def on_train_start(self) -> None:
        super().on_train_start()
        rule = "set by the trainer" if self.arch_lr is not None else "recipe: 3e-3 x sqrt(45,000 / alpha steps)"
        self.print_to_log_file(f"alpha: Adam lr {self.arch_learning_rate():.4g} for {self.alpha_steps()} alpha steps "
                               f"({rule}); search seed {self.search_seed}")

    # -- data: weights on 4/5, alpha on 1/5 of the fold's training cases ------------------------
    def _weight_arch_split(self, tr_keys: list[str]) -> tuple[list[str], list[str]]:
        path = join(self.output_folder, SPLIT_FILE)
        if isfile(path):
            split = load_json(path)
            if split.get("seed", self.search_seed) != self.search_seed:
                raise SCNASUsageError(f"fold {self.fold} was started with search seed {split['seed']}, but "
                                      f"${SEED_ENV} gives {self.search_seed}; continue with the same seed, or "
                                      f"delete {self.output_folder} to start over")
            if sorted(split["weights"] + split["architecture"]) != sorted(tr_keys):
                raise SCNASUsageError(f"{path} does not partition fold {self.fold}'s training cases; "
                                      f"the splits changed since the search started. Delete {path} to start over")
            return split["weights"], split["architecture"]
        if len(tr_keys) < 5:
            raise SCNASUsageError(f"fold {self.fold} has {len(tr_keys)} training cases; the 4:1 split into weight "
                                  f"and architecture cases needs at least 5")
        weights, arch = split_weights_arch(tr_keys, self.search_seed + (0 if self.fold == "all" else int(self.fold)))
        if self.local_rank == 0:  # the other ranks draw the same split
            atomic_write_json({"weights": weights, "architecture": arch, "seed": self.search_seed}, path)
        return weights, arch

    def get_tr_and_val_datasets(self):
        tr_keys, val_keys = self.do_split()
        weights, arch = self._weight_arch_split(tr_keys)
        tr = arch if self._loader_role == "architecture" else weights
        return tuple(self.dataset_class(self.preprocessed_dataset_folder, keys,
                                        folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage)
                     for keys in (tr, val_keys))

    _loader_role = "weights"

    def get_dataloaders(self):
        """nnU-Net's loaders (its augmentation, oversampling, deep-supervision targets) for the weight
        cases and the fold's validation cases, plus the same training pipeline on the architecture cases.
        Under DDP each draws batches of this rank's share of the batch size. The batch nnU-Net draws
        here to start its loaders comes before the first epoch's seeding, so it shifts nothing."""
        self._loader_role = "weights"
        dl_weights, dl_val = super().get_dataloaders()
        self._loader_role = "architecture"
        self.dataloader_arch, unused_val = super().get_dataloaders()
        self._loader_role = "weights"
        if hasattr(unused_val, "_finish"):
            unused_val._finish()
        return dl_weights, dl_val

    def on_train_end(self) -> None:
        super().on_train_end()
        if self.dataloader_arch is not None and hasattr(self.dataloader_arch, "_finish"):
            self.dataloader_arch._finish()
        if self.local_rank == 0:
            genotype = self._genotype(self.current_epoch)
            genotype.save(join(self.output_folder, GENOTYPE_FILE))
            self.print_to_log_file(f"Search done. Genotype written to {join(self.output_folder, GENOTYPE_FILE)}:\n"
                                   + genotype.describe())
            note = genotype.randomness_note()
            if note:
                self.print_to_log_file(f"WARNING: {note}")
            self._plot(lambda: render_genotype(genotype, join(self.output_folder, CELL_IMAGES_FOLDER)))

    # -- seeds -------------------------------------------------------------------------------
    def _derived_seed(self, *parts) -> int:
        return derived_seed(self.search_seed, self.fold, *parts)

    def _seed_global_rngs(self, *parts) -> None:
        seed_global_rngs(self.search_seed, self.fold, *parts)

    def on_epoch_start(self) -> None:
        """Data of epoch e depends on (seed, fold, e, rank) only, so a run continued at an epoch
        boundary sees the batches an uninterrupted one would; each rank draws its own."""
        super().on_epoch_start()
        self._seed_global_rngs("data", self.current_epoch, self.local_rank)

    # -- the bi-level step (nnunet_scnas/bilevel.py) ------------------------------------------
    def on_train_epoch_start(self) -> None:
        tau = tau_schedule(self.current_epoch, self.num_epochs, self.arch_warmup_epochs, self.tau_start, self.tau_end)
        self.unwrapped_network().tau.fill_(tau)
        self._iteration = 0
        self._arch_losses = []
        super().on_train_epoch_start()
        self.print_to_log_file(f"tau {tau:.4f}" + (" (alpha warm-up: weights only)"
                                                    if self.current_epoch < self.arch_warmup_epochs else ""))

    def _bilevel_step(self) -> BilevelStep:
        """Built on first use: nnU-Net sets network, optimiser, loss and grad scaler in ``initialize``."""
        if self.bilevel is None:
            self.bilevel = BilevelStep(self.unwrapped_network(), self.network, self.loss, self.optimizer,
                                       grad_scaler=self.grad_scaler, amp=self.device.type == "cuda",
                                       distributed=self.is_ddp, clip_norm=SEARCH.grad_clip_norm,
                                       log=self.print_to_log_file)
        return self.bilevel

    def _batch(self, batch: dict, step: str) -> tuple:
        """The batch on the device, after seeding this step's draw: the same draws after a resume
        and on every rank."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self._derived_seed(self.current_epoch, self._iteration, step))
        self.unwrapped_network().generator = gen
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        return batch["data"].to(self.device, non_blocking=True), target

    def train_step(self, batch: dict) -> dict:
        step = self._bilevel_step()
        where = f" at epoch {self.current_epoch}, iteration {self._iteration}"
        if self.current_epoch >= self.arch_warmup_epochs:
            self._arch_losses.append(step.arch_step(*self._batch(next(self.dataloader_arch), "alpha"), where))
        loss = step.weight_step(*self._batch(batch, "weights"), where)
        self._iteration += 1
        return {"loss": np.array(loss)}

    # -- logging -----------------------------------------------------------------------------
    def _genotype(self, epochs_done: int):
        return self.unwrapped_network().genotype({
            "dataset": self.plans_manager.dataset_name, "plans": self.plans_manager.plans_name,
            "configuration": self.configuration_name, "fold": self.fold, "trainer": self.__class__.__name__,
            "epochs": epochs_done, "alpha_steps": self.alpha_steps(epochs_done),
            "arch_lr": self.arch_learning_rate(), "search_seed": self.search_seed, "sampling": self.sampling,
            "stem_channels": self.stem_channels})

    def on_epoch_end(self) -> None:
        net = self.unwrapped_network()
        epoch = self.current_epoch
        arch_losses = self._arch_losses
        if self.is_ddp:
            per_rank: list = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, arch_losses)
            arch_losses = [v for losses in per_rank for v in losses]
        arch_loss = float(np.nanmean(arch_losses)) if arch_losses else float("nan")
        self.logger.log("tau", float(net.tau), epoch)
        self.logger.log("arch_losses", arch_loss, epoch)
        summary = net.genotype()  # derivation records each cell type's mean entropy and confidence
        entropies, confidence = summary.provenance["mean_entropy"], summary.mean_confidence()
        for t in CELL_TYPES:
            self.logger.log(f"alpha_entropy_{t}", entropies[t], epoch)
        self.print_to_log_file(f"arch_loss {arch_loss:.4f}, alpha entropy per edge (max {math.log(8):.3f}): "
                               + ", ".join(f"{t} {v:.3f}" for t, v in entropies.items())
                               + "; mean confidence (uniform 0.125): "
                               + ", ".join(f"{t} {v:.3f}" for t, v in confidence.items()))
        if self.local_rank == 0:
            self._append_alpha_history(epoch)
        super().on_epoch_end()
        if self.local_rank == 0:
            from .plots import plot_search_progress
            self._plot(lambda: plot_search_progress(self.logger.local_logger.my_fantastic_logging, self.output_folder))
            self._plot(lambda: plot_alpha_history(load_json(join(self.output_folder, ALPHA_HISTORY_FILE)),
                                                  join(self.output_folder, "alpha_history.png")))

    def _plot(self, draw) -> None:
        """Pictures are for reading, not for the search: a failure is logged, the search goes on."""
        try:
            draw()
        except Exception as e:  # noqa: BLE001 (matplotlib can fail in many ways, e.g. a full disk)
            self.print_to_log_file(f"WARNING: could not draw a figure: {type(e).__name__}: {e}")

    def _append_alpha_history(self, epoch: int) -> None:
        path = join(self.output_folder, ALPHA_HISTORY_FILE)
        history = load_json(path) if isfile(path) else []
        history = [h for h in history if h["epoch"] < epoch]  # drop epochs redone after a resume
        net = self.unwrapped_network()
        history.append({"epoch": epoch, "tau": float(net.tau), "softmax_alpha": {
            t: [[round(v, 5) for v in row] for row in torch.softmax(net.alphas[t].detach().float(), -1).tolist()]
            for t in CELL_TYPES}})
        atomic_write_json(history, path)

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank == 0 and not self.disable_checkpointing:
            # nnU-Net saves checkpoint_latest in on_epoch_end, before it counts the epoch as done
            self._genotype(self.current_epoch + 1).save(join(self.output_folder, GENOTYPE_LATEST_FILE))
