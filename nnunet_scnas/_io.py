"""Crash-safe file writing, without torch (the dataset generator uses it too).

Every file the package writes for a user (json, reports, figures, checkpoints) goes through
``atomic_write``: the content is written to a temporary file in the target folder, fsynced and
renamed over the target, so a kill or a crash leaves the old file or the new one, never half of
one. A SIGKILL can still leave the temporary file itself behind; its name always matches
``TEMP_PATTERN`` and ``remove_temp_files`` deletes such leftovers.
"""
from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from typing import Any, Callable

#: every temporary file of ``atomic_write`` is named ``TEMP_PREFIX`` + random part + target suffix
TEMP_PREFIX = ".tmp_"
#: glob pattern (``fnmatch``) of those temporary files; nothing else in this package writes such names
TEMP_PATTERN = TEMP_PREFIX + "*"
#: permissions of the written file (``mkstemp`` would leave the owner-only 0o600)
FILE_MODE = 0o644


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write ``path`` crash-safely: ``write(tmp_path)`` fills a temporary file in the target folder
    (created, empty, before the call; named after ``TEMP_PATTERN``, with the suffix of ``path``, so
    writers that pick the format from the extension, like matplotlib's ``savefig``, still work),
    which is then fsynced and renamed over ``path``. On any exception, in ``write`` or after, the
    temporary file is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """``atomic_write`` of a UTF-8 text file."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """``atomic_write`` of ``json.dump(obj)`` (indent 1; NaN and infinity are refused)."""
    text = json.dumps(obj, indent=1, allow_nan=False)  # fails before anything is written
    atomic_write_text(text, path)


def remove_temp_files(folder: str | os.PathLike) -> list[str]:
    """Delete the leftovers of interrupted ``atomic_write`` calls (files matching ``TEMP_PATTERN``)
    in ``folder`` and its subfolders; returns their paths. Call it only when no writer is running
    in that folder (e.g. when a trainer starts): a running writer's temporary file matches too."""
    removed = []
    for sub, _, files in os.walk(os.fspath(folder)):
        for name in files:
            if fnmatch.fnmatch(name, TEMP_PATTERN):
                tmp = os.path.join(sub, name)
                try:
                    os.unlink(tmp)
                except FileNotFoundError:  # removed meanwhile: gone either way
                    continue
                removed.append(tmp)
    return removed


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
