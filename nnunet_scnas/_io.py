"""Crash-safe file writing, without torch (the dataset generator uses it too)."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """json.dump to a temporary file in the target folder, fsync, then rename over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
