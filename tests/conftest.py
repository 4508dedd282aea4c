"""Shared pytest set-up.

Makes ``plugins/module_utils`` importable as ``ansible.module_utils`` (the way Ansible
itself loads them for modules), so tests import exactly what modules import.
"""

from __future__ import annotations

import pathlib

import ansible.module_utils

ROOT = pathlib.Path(__file__).resolve().parent.parent
_MU = str(ROOT / "plugins" / "module_utils")
if _MU not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MU)
