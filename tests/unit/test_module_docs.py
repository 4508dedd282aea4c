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
import yaml
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC

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
        assert doc.get("aliases") == arg.get("aliases"), option
        assert doc.get("elements") == arg.get("elements"), option
        assert doc.get("description"), option


def _fragment(name: str) -> dict[str, Any]:
    path = ROOT / "plugins" / "doc_fragments" / f"{name}.py"
    fragment = runpy.run_path(str(path))["ModuleDocFragment"]
    options: dict[str, Any] = yaml.safe_load(fragment.DOCUMENTATION)["options"]
    return options


def test_runtime_options_are_documented_once(rendered: dict[str, Any]) -> None:
    """Every module taking ``socket``/``timeout`` takes RUNTIME_ARGUMENT_SPEC and renders the
    one wording of the haproxy_runtime doc fragment."""
    fragment = _fragment("haproxy_runtime")
    assert set(fragment) == set(RUNTIME_ARGUMENT_SPEC)
    users = [name for name in MODULES if "socket" in argument_spec(name)]
    assert {"haproxy_server", "haproxy_stats_info"} <= set(users)
    for name in users:
        spec = argument_spec(name)
        assert {key: spec[key] for key in RUNTIME_ARGUMENT_SPEC} == RUNTIME_ARGUMENT_SPEC, name
        options = rendered[name]["doc"]["options"]
        for option, doc in fragment.items():
            assert options[option] == doc, (name, option)
