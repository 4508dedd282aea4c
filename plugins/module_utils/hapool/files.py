"""Files written so that a reader sees the old or the new content, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile


def atomic_write(path: str | os.PathLike[str], text: str, mode: int = 0o644, fsync: bool = True) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory, then a rename.

    The directory is created when missing. ``fsync`` flushes the data to disk before the rename,
    so that a crash leaves the old or the new file (what a state file read after a restart needs).
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(os.fspath(path))}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
