"""Every module's documentation (with its doc fragments, as ansible-doc renders it) matches the
argument spec it really builds: same options, types, defaults, choices and required flags."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "library").glob("*.py"))


class _Captured(Exception):
    pass


def argument_spec(name: str) -> dict[str, Any]:
    """The argument_spec the module passes to AnsibleModule (captured, the module does not run)."""
    captured: dict[str, Any] = {}

    def capture(**kwargs: Any) -> None:
        captured.update(kwargs)
        raise _Captured

    with mock.patch("ansible.module_utils.basic.AnsibleModule", capture), pytest.raises(_Captured):
        runpy.run_path(str(ROOT / "library" / f"{name}.py"), run_name="__main__")
    return dict(captured["argument_spec"])


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """ansible-doc's JSON of every module (one run), doc fragments included."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", "module", *MODULES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    docs: dict[str, Any] = json.loads(proc.stdout)
    return docs


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_argument_spec(name: str, rendered: dict[str, Any]) -> None:
    doc = rendered[name]
    assert doc["examples"] and doc["return"], name
    spec, options = argument_spec(name), dict(doc["doc"]["options"])
    assert set(options) == set(spec), name
    for option, arg in spec.items():
        doc = options[option]
        assert doc["type"] == arg.get("type", "str"), option
        assert doc.get("default") == arg.get("default"), option
        assert doc.get("choices") == arg.get("choices"), option
        assert bool(doc.get("required", False)) == bool(arg.get("required", False)), option
        assert doc.get("description"), option
