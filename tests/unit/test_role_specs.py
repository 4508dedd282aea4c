"""Each role's meta/argument_specs.yml documents its defaults/main.yml: every default has an
entry in the ``main`` entry point, and a documented default is the value the role uses (values
that are Jinja expressions are documented in words and skipped)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _load(role: str) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return defaults, spec["argument_specs"]["main"]["options"]


def test_every_role_has_argument_specs() -> None:
    assert sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir()) == ROLES


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented_with_its_value(role: str) -> None:
    defaults, options = _load(role)
    undocumented = set(defaults) - set(options)
    assert not undocumented, f"undocumented in {role}'s argument_specs: {undocumented}"
    for name, value in defaults.items():
        if isinstance(value, str) and "{{" in value:
            continue
        assert "default" in options[name], f"{role}: {name} has no documented default (it is {value!r})"
        documented = options[name]["default"]
        assert documented == value, f"{role}: {name} documents {documented!r}, is {value!r}"


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_prefixed_with_the_role_name(role: str) -> None:
    defaults, options = _load(role)
    assert all(name.startswith(f"{role}_") for name in [*defaults, *options]), role
