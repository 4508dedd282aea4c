"""Run the project's Ansible modules for real, two ways.

* :func:`run_module` executes ``library/<name>.py`` the way Ansible runs a module (a file of
  ``ANSIBLE_MODULE_ARGS`` as its argument, JSON on stdout), with ``plugins/module_utils``
  served as ``ansible.module_utils`` by the project's bootstrap (``scripts/_core_path.py``,
  as ``tests/conftest.py`` does; AnsiballZ does the same for modules). Fast
  (no controller start-up), so most module tests use it.
* :func:`run_playbook` runs ``ansible-playbook`` with the project's ansible.cfg (library and
  module_utils from there, AnsiballZ packaging, check mode and diff handled by Ansible).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _core_path  # scripts/_core_path.py (tests/conftest.py and bench/lib.py put scripts/ on sys.path)

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "library"
VENV_BIN = Path(sys.executable).parent

_RUNNER = _core_path.SNIPPET + """
import runpy
path, args = sys.argv[1], sys.argv[2]
sys.argv = [path, args]
runpy.run_path(path, run_name="__main__")
"""


def run_module(
    name: str, args: dict[str, Any], *, check_mode: bool = False, diff: bool = False, timeout: float = 120
) -> dict[str, Any]:
    """Run ``library/<name>.py`` with ``args``; return its JSON result (``failed`` on failure)."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
        args_file = handle.name
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(LIBRARY / f"{name}.py"), args_file],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        os.unlink(args_file)
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise AssertionError(
            f"module {name} printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from exc
    result["_rc"] = proc.returncode
    if proc.returncode != 0:
        result.setdefault("failed", True)
    return result


def run_playbook(playbook: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook`` from the project root with its ansible.cfg."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), str(playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
