"""Trainers of bench/search_vs_random.sh: one search on hippocampus, then its genotype and
FLOP-matched random genotypes retrained on one budget (found through nnUNet_extTrainer; the script
sets it). Every training is seeded and the script runs augmentation in-process
(nnUNet_n_proc_DA=0), so a rerun on the same kind of machine repeats the numbers."""
from nnunet_scnas.trainers import nnUNetTrainerSCNASRetrain, nnUNetTrainerSCNASSearch
from nnunet_scnas.trainers.budget import ShortBudget

N_RANDOM = 5


class nnUNetTrainerSCNASSearch_svr(ShortBudget, nnUNetTrainerSCNASSearch):
    """Stem 8, batch 1 (a CPU spends several seconds on one bi-level step at batch 2), 6 epochs of
    20 bi-level iterations, the first epoch weights only: 100 alpha steps, alpha's learning rate
    from the recipe's rule; nnU-Net's Dice + CE as for the retrains."""
    epochs, iterations, val_iterations, stem, arch_warmup, nnunet_loss = 6, 20, 5, 8, 1, True
    mirror_at_inference, max_val_cases = False, 5

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        self.batch_size = 1


class nnUNetTrainerSCNASRetrain_svr(ShortBudget, nnUNetTrainerSCNASRetrain):
    """The searched genotype: stem 8, batch 2, 2 epochs of 40 iterations, Adam 3e-3 (the paper's
    3e-4 is for 500 epochs), nnU-Net's Dice + CE, seeded."""
    search_trainer_name = "nnUNetTrainerSCNASSearch_svr"
    epochs, iterations, val_iterations, stem, lr, nnunet_loss, seed = 2, 40, 5, 8, 3e-3, True, 0
    mirror_at_inference = False


for _k in range(N_RANDOM):  # one results folder per random genotype ($SCNAS_GENOTYPE)
    _name = f"nnUNetTrainerSCNASRetrain_svrRandom{_k}"
    globals()[_name] = type(_name, (nnUNetTrainerSCNASRetrain_svr,), {"search_trainer_name": None})
