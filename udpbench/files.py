"""Opening a file the user named, safely: a regular file only, never a device, FIFO or socket.

A leaf like ``errors.py``: result files (``output/``) and token files (``protocol/``) both
open what a user names, and ``/dev/zero`` must not read forever nor a FIFO block forever.
"""
from __future__ import annotations

import os
import stat

from udpbench.errors import UserError


def open_regular(path, what: str = "file"):
    """``path`` opened for binary reading; a UserError unless it is a regular file.

    The open itself does not block (O_NONBLOCK: opening a FIFO with no writer would wait
    forever); the check is on the opened descriptor, so nothing can swap the file in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{what} {path} is {kind}: refused")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path, limit: int, what: str = "file") -> bytes:
    """The whole of a regular file of at most ``limit`` bytes, or a UserError saying why not."""
    with open_regular(path, what) as f:
        data = f.read(limit + 1)  # the size is checked on what is read: a file may grow meanwhile
    if len(data) > limit:
        raise UserError(f"{what} {path} is larger than {_size_words(limit)}: refused")
    return data


def _size_words(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"
