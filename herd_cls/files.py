"""Writing files so that no reader ever sees half of one, and a full disk is one clear error."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .registry import HerdError

_UMASK = os.umask(0)
os.umask(_UMASK)
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class DiskFullError(HerdError):
    """No room to write a file: names the folder, the space the file needs and what is free."""

    def __init__(self, path: Path, needed: int):
        free = shutil.disk_usage(path.parent).free
        super().__init__(
            f"no space left on the disk of {path.parent} to write {path.name}: it needs "
            f"{_size(needed)}, {_size(free)} are free; free some space or write to another folder "
            "(--out-dir, --out); nothing already written was changed"
        )


def atomic_write(path: Path, data: bytes | str | Callable[[io.BytesIO], None]) -> Path:
    """Write ``data`` (bytes, text, or a function that writes into a binary buffer) to ``path``
    through a temp file in the same folder and a rename, so no reader sees half a file and the old
    file stays whole when the disk is full (a :class:`DiskFullError`)."""
    path = Path(path)
    if callable(data):
        buffer = io.BytesIO()
        data(buffer)
        data = buffer.getvalue()
    payload = data.encode() if isinstance(data, str) else data
    if shutil.disk_usage(path.parent).free < len(payload):
        raise DiskFullError(path, len(payload))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; give it a plain file's mode
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in _FULL:
            raise DiskFullError(path, len(payload)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
