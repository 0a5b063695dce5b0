"""Shim that nnU-Net imports from ``nnUNet_extTrainer``; the classes live in nnunet_scnas.trainers."""
from nnunet_scnas.trainers import *  # noqa: F401,F403
