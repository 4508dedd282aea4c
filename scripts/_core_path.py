"""The one bootstrap of hapool's core for code that Ansible does not run.

Everything imports the core as ``ansible.module_utils.hapool.<name>``: the modules in
``library/`` (Ansible serves ``plugins/module_utils`` to them, ansible.cfg ``module_utils``),
and the tests, ``scripts/events.py``, ``bench/`` and the tests' subprocesses, which call
:func:`use_core` first. It appends this repository's ``plugins/module_utils`` to
``ansible.module_utils.__path__`` (what AnsiballZ does for modules). Without Ansible (the
system Python: the core is stdlib only) it makes ``ansible`` and ``ansible.module_utils``
empty namespace packages holding just that directory. In the built collection the imports
are rewritten to ``ansible_collections.hapool.pool.plugins.module_utils.hapool.<name>``
(scripts/build-collection.py).

How callers find this file: ``scripts/events.py`` imports it from its own directory;
``tests/conftest.py`` and ``bench/lib.py`` put ``scripts/`` on ``sys.path``; a subprocess
starts with :data:`SNIPPET`.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
MODULE_UTILS = ROOT / "plugins" / "module_utils"

# Code that makes the core importable in a new interpreter (``python -c SNIPPET + code``).
SNIPPET = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import _core_path; _core_path.use_core()\n"


def use_core() -> Path:
    """Make ``ansible.module_utils.hapool`` this repository's core (idempotent); return its directory."""
    path = str(MODULE_UTILS)
    try:
        from ansible import module_utils  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != "ansible":
            raise
        ansible = types.ModuleType("ansible")
        ansible.__path__ = []
        module_utils = types.ModuleType("ansible.module_utils")
        module_utils.__path__ = []
        ansible.module_utils = module_utils  # type: ignore[attr-defined]
        sys.modules["ansible"] = ansible
        sys.modules["ansible.module_utils"] = module_utils
    if path not in module_utils.__path__:
        module_utils.__path__.append(path)
    return MODULE_UTILS / "hapool"
