"""Test-only search variants on a tiny synthetic dataset (tests/test_resume.py).

nnU-Net finds them through ``nnUNet_extTrainer`` (the test appends this folder); the gloo test
imports this module directly, so its spawned ranks can import ``run_rank`` too.
"""
from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist

from nnunet_scnas import CELL_TYPES
from nnunet_scnas.trainers import nnUNetTrainerSCNASSearch
from nnunet_scnas.trainers.budget import ShortBudget

_CUDA = torch.device("cuda")


class nnUNetTrainerSCNASSearch_tinyResume(ShortBudget, nnUNetTrainerSCNASSearch):
    """Stem 4, 4 epochs of 3 bi-level iterations, alpha steps from the first one, plateau patience 0
    (so that ``--c`` has learning-rate drops to replay), one validation case without mirroring,
    no figures (each epoch's would take longer than the epoch)."""
    epochs, iterations, val_iterations, stem, arch_warmup = 4, 3, 1, 4, 0
    mirror_at_inference, max_val_cases = False, 1
    plateau_patience = 0

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.logger.plot_progress_png = lambda output_folder: None
        # nnUNetv2_train -device cpu uses every core; for convs this small threads only add waiting,
        # badly so on a busy machine (measured: 9 s instead of 0.3 s per step with 2 threads)
        torch.set_num_threads(1)

    def _plot(self, draw) -> None:
        pass


class nnUNetTrainerSCNASSearch_tinyDDP(nnUNetTrainerSCNASSearch_tinyResume):
    """2 epochs of 2 iterations; records every architecture draw and, for every alpha step, this
    rank's gradients before and after averaging."""
    epochs, iterations = 2, 2

    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.draws: list[torch.Tensor] = []
        self.alpha_grads: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []

    def initialize(self) -> None:
        super().initialize()
        net = self.unwrapped_network()
        sample = net.sample

        def recording_sample():
            weights = sample()
            self.draws.append(torch.cat([weights[t].detach().flatten() for t in CELL_TYPES]))
            return weights

        net.sample = recording_sample

    def _bilevel_step(self):
        step = super()._bilevel_step()
        if getattr(step, "_recording", False):
            return step
        average, alphas = step.average, {id(a) for a in step.arch_params}

        def recording_average(params):
            params = list(params)
            is_alpha = {id(p) for p in params} == alphas
            local = [p.grad.clone() for p in params] if is_alpha else None
            average(params)
            if is_alpha:
                self.alpha_grads.append((local, [p.grad.clone() for p in params]))

        step.average, step._recording = recording_average, True
        return step


def run_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One rank of the gloo search: the trainer's own DDP code path on the CPU (nnU-Net's
    run_ddp needs NCCL and GPUs). nnUNet_* paths come from the parent's environment."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    pre = os.path.join(os.environ["nnUNet_preprocessed"], "Dataset981_ResumeTiny")
    with open(os.path.join(pre, "nnUNetPlansSCNAS.json")) as f:
        plans = json.load(f)
    with open(os.path.join(pre, "dataset.json")) as f:
        dataset_json = json.load(f)
    plans["continue_training"] = False  # nnU-Net's get_trainer_from_args adds this key
    trainer = nnUNetTrainerSCNASSearch_tinyDDP(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
    trainer.run_training()
    net = trainer.unwrapped_network()
    torch.save({"is_ddp": trainer.is_ddp, "batch_size": trainer.batch_size, "draws": trainer.draws,
                "alpha_grads": trainer.alpha_grads, "state": net.state_dict(),
                "genotype": trainer._genotype(trainer.current_epoch).cells, "output_folder": trainer.output_folder},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
