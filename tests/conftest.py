"""Shared pytest set-up.

Makes ``plugins/module_utils`` importable as ``ansible.module_utils`` (the way Ansible
itself loads them for modules), so tests import exactly what modules import:
``from ansible.module_utils.hapool.<name> import ...``. The bootstrap is the project's one,
``scripts/_core_path.py`` (also used by scripts/events.py, bench/ and the tests' subprocesses
through ``_core_path.SNIPPET``).
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import _core_path

_core_path.use_core()
