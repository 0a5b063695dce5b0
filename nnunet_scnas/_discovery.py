"""Trainer discovery for nnU-Net >= 2.8, imported at interpreter start by ``nnunet_scnas.pth``.

nnU-Net looks for ``-tr`` classes in its own package, then in the folders listed in the
environment variable ``nnUNet_extTrainer``. Appending our shim folder to it in every Python
process of this environment (spawned DDP workers included) makes the SCNAS trainers findable
by ``nnUNetv2_train`` and ``nnUNetv2_predict`` without anything exported by hand. This module
must stay cheap: it only locates a folder, it imports neither torch nor nnU-Net.
"""
import importlib.util
import os

ENV = "nnUNet_extTrainer"


def shim_folder() -> str | None:
    spec = importlib.util.find_spec("nnunet_scnas.trainers")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "nnunet_ext")


def register() -> None:
    folder = shim_folder()
    if folder is None or not os.path.isdir(folder):
        return
    paths = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ[ENV] = os.pathsep.join(paths + [folder])


try:
    register()
except Exception:  # never break an interpreter start
    pass
