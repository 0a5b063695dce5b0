"""nnU-Net trainers for SCNAS (installed as ``nnunet_scnas.trainers``).

nnU-Net finds them by name through ``nnUNet_extTrainer`` (set for every process by the
package's .pth file), e.g. ``nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainerSCNASSearch``.
"""
from importlib.metadata import version as _version

_nnunet = _version("nnunetv2")
if tuple(int(p) for p in _nnunet.split(".")[:2] if p.isdigit()) < (2, 8):
    raise ImportError(f"nnunet_scnas needs nnunetv2 >= 2.8 (external trainer lookup); found {_nnunet}. "
                      f"Run: pip install -U 'nnunetv2>=2.8.1'")

from .demo import (  # noqa: E402
    nnUNetTrainer_demoCPU,
    nnUNetTrainer_demoGPU,
    nnUNetTrainerSCNASRetrain_demoCPU,
    nnUNetTrainerSCNASRetrain_demoCPURandom,
    nnUNetTrainerSCNASRetrain_demoGPU,
    nnUNetTrainerSCNASRetrain_demoGPURandom,
    nnUNetTrainerSCNASSearch_demoCPU,
    nnUNetTrainerSCNASSearch_demoGPU,
)
from .retrain import nnUNetTrainerSCNASRetrain  # noqa: E402
from .search import nnUNetTrainerSCNASSearch  # noqa: E402
from .variants import (  # noqa: E402
    nnUNetTrainerSCNASRetrain_5epochs,
    nnUNetTrainerSCNASRetrain_20epochs,
    nnUNetTrainerSCNASRetrain_nnUNetRecipe,
    nnUNetTrainerSCNASRetrain_smoke,
    nnUNetTrainerSCNASRetrain_transfer,
    nnUNetTrainerSCNASRetrain_wallTime,
    nnUNetTrainerSCNASSearch_5epochs,
    nnUNetTrainerSCNASSearch_20epochs,
    nnUNetTrainerSCNASSearch_nnUNetLoss,
    nnUNetTrainerSCNASSearch_smoke,
)

__all__ = [
    "nnUNetTrainerSCNASSearch", "nnUNetTrainerSCNASRetrain",
    "nnUNetTrainerSCNASSearch_5epochs", "nnUNetTrainerSCNASSearch_20epochs",
    "nnUNetTrainerSCNASRetrain_5epochs", "nnUNetTrainerSCNASRetrain_20epochs",
    "nnUNetTrainerSCNASSearch_nnUNetLoss", "nnUNetTrainerSCNASRetrain_nnUNetRecipe",
    "nnUNetTrainerSCNASSearch_smoke", "nnUNetTrainerSCNASRetrain_smoke", "nnUNetTrainerSCNASRetrain_transfer",
    "nnUNetTrainerSCNASRetrain_wallTime",
    "nnUNetTrainerSCNASSearch_demoCPU", "nnUNetTrainerSCNASRetrain_demoCPU", "nnUNetTrainer_demoCPU",
    "nnUNetTrainerSCNASRetrain_demoCPURandom", "nnUNetTrainerSCNASSearch_demoGPU",
    "nnUNetTrainerSCNASRetrain_demoGPU", "nnUNetTrainer_demoGPU", "nnUNetTrainerSCNASRetrain_demoGPURandom",
]
