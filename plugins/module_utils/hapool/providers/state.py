"""A provider's state on disk: its lock, its JSON files, and where the state root is by default.

Each provider keeps its state in ``<state root>/<provider>`` (:func:`default_state_root`);
JSON state files are replaced atomically (:func:`write_json_atomic`, through
:func:`hapool.files.atomic_write`), so a reader sees the old or the new file, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ProviderError
from ..files import atomic_write


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive advisory lock (flock) on ``path`` — serialises launches across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_json_atomic(path: pathlib.Path, data: Any) -> None:
    """Write ``data`` as JSON (sorted keys, indented) with :func:`hapool.files.atomic_write`.

    Serialised first: data that is not JSON-safe raises before the old file is touched.
    """
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: pathlib.Path, default: Any = None) -> Any:
    """Read a JSON file; ``default`` if it does not exist; :class:`ProviderError` if corrupt."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise ProviderError(f"cannot read state file {path}: {exc}") from exc


def default_project_dir(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> pathlib.Path:
    """The hapool checkout a module or plugin works for, when no path is given.

    In order: ``$HAPOOL_PROJECT_DIR``; the directory of ``$ANSIBLE_CONFIG`` (the Makefile and
    the test runner export it; modules on the local connection inherit it); the nearest
    ancestor of the working directory holding an ``ansible.cfg``; the working directory.
    """
    env = os.environ if environ is None else environ
    if env.get("HAPOOL_PROJECT_DIR"):
        return pathlib.Path(env["HAPOOL_PROJECT_DIR"]).resolve()
    if env.get("ANSIBLE_CONFIG"):
        cfg = pathlib.Path(env["ANSIBLE_CONFIG"])
        return (cfg if cfg.is_dir() else cfg.parent).resolve()
    here = pathlib.Path(cwd if cwd is not None else os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "ansible.cfg").is_file():
            return candidate
    return here


def default_state_root(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> pathlib.Path:
    """``$HAPOOL_STATE_DIR``, else ``<project>/.state``. Providers use ``<root>/<provider>``."""
    env = os.environ if environ is None else environ
    if env.get("HAPOOL_STATE_DIR"):
        return pathlib.Path(env["HAPOOL_STATE_DIR"]).resolve()
    return default_project_dir(env, cwd) / ".state"
