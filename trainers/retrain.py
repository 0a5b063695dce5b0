"""``nnUNetTrainerSCNASRetrain``: the derived network, trained from scratch (paper, Sec. 3).

The genotype is frozen into the fold folder at the first start; it comes from, in order:
that frozen copy, ``$SCNAS_GENOTYPE`` (transfer from another task), or the search result of
the same dataset, plans, configuration and fold. It is written into the plans' architecture
block (so nnU-Net's predictor rebuilds the network) and into every checkpoint (so folds with
different genotypes still ensemble, see ``SCNASNetwork.load_state_dict``).
"""
from __future__ import annotations

import os

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_scnas.genotypes import Genotype
from nnunet_scnas.recipe import RETRAIN

from .common import SCNASTrainerBase, SCNASUsageError
from .search import GENOTYPE_FILE

GENOTYPE_ENV = "SCNAS_GENOTYPE"


class nnUNetTrainerSCNASRetrain(SCNASTrainerBase):
    plateau_factor = RETRAIN.plateau_factor
    plateau_patience = RETRAIN.plateau_patience
    min_lr = RETRAIN.min_lr
    #: whose search result is the default genotype (None: only $SCNAS_GENOTYPE)
    search_trainer_name: str | None = "nnUNetTrainerSCNASSearch"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = RETRAIN.epochs  # the batch size comes from the plans
        self.initial_lr, self.betas = RETRAIN.lr, RETRAIN.betas
        self.stem_channels = RETRAIN.stem_channels
        self.genotype, self.genotype_source = self._find_genotype()

    def search_result_path(self) -> str:
        return join(get_output_folder(self.plans_manager.dataset_name, self.search_trainer_name,
                                      self.plans_manager.plans_name, self.configuration_name, self.fold), GENOTYPE_FILE)

    def _find_genotype(self) -> tuple[Genotype, str]:
        frozen = join(self.output_folder, GENOTYPE_FILE)
        env = os.environ.get(GENOTYPE_ENV)
        if isfile(frozen):
            path, why = frozen, "frozen at the first start of this fold"
        elif env:
            path, why = env, f"${GENOTYPE_ENV}"
        elif self.search_trainer_name is None:
            raise SCNASUsageError(f"{self.__class__.__name__} retrains a genotype from another task: set "
                                  f"{GENOTYPE_ENV}=/path/to/genotype.json")
        else:
            path, why = self.search_result_path(), f"search result of {self.search_trainer_name}"
            if not isfile(path):
                raise SCNASUsageError(
                    f"no genotype for {self.__class__.__name__} fold {self.fold}: expected the search result at {path} "
                    f"(run nnUNetv2_train {self.plans_manager.dataset_name} {self.configuration_name} {self.fold} "
                    f"-tr {self.search_trainer_name} -p {self.plans_manager.plans_name} first) or set "
                    f"{GENOTYPE_ENV}=/path/genotype.json")
        try:
            genotype = Genotype.load(path)
        except ValueError as e:
            raise SCNASUsageError(f"invalid genotype ({why}): {e}") from None
        if env and path == frozen and genotype.cells != _cells_or_none(env):
            self.print_to_log_file(f"NOTE: ${GENOTYPE_ENV} is ignored: fold {self.fold} was started with {frozen}")
        return genotype, f"{path} ({why})"

    def initialize(self) -> None:
        self._set_architecture("nnunet_scnas.model.SCNASNetwork", {
            "genotype": self.genotype.to_dict(), "stem_channels": self.stem_channels})
        super().initialize()

    def on_train_start(self) -> None:
        if self.local_rank == 0:
            self.genotype.save(join(self.output_folder, GENOTYPE_FILE))
        self.print_to_log_file(f"SCNAS genotype: {self.genotype_source}\n{self.genotype.describe()}")
        super().on_train_start()

    def _param_groups(self) -> list[dict]:
        return [{"params": self.network.parameters(), "lr": self.initial_lr, "betas": self.betas}]


def _cells_or_none(path: str):
    try:
        return Genotype.load(path).cells
    except ValueError:
        return None
