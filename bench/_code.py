"""Import ``nnunet_scnas`` from a chosen folder, to compare two versions of the code."""
from __future__ import annotations

import os
import sys


def use_code(folder: str) -> None:
    """Make ``import nnunet_scnas`` load ``folder/nnunet_scnas`` in this process."""
    sys.path.insert(0, os.path.abspath(folder))
    # an installed nnunet_scnas (an editable install's finder, imported at start-up by its .pth)
    # would otherwise shadow the folder
    sys.meta_path[:] = [f for f in sys.meta_path if "_EditableFinder" not in getattr(f, "__name__", "")]
    for name in [m for m in sys.modules if m == "nnunet_scnas" or m.startswith("nnunet_scnas.")]:
        del sys.modules[name]


def check_code(folder: str) -> None:
    """Fail if ``nnunet_scnas`` did not come from ``folder``."""
    import nnunet_scnas
    got = os.path.dirname(nnunet_scnas.__file__)
    if got != os.path.join(os.path.abspath(folder), "nnunet_scnas"):
        raise RuntimeError(f"nnunet_scnas was imported from {got}, not from {folder}")
