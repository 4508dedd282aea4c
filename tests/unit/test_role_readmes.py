"""roles/<role>/README.md is generated from meta/argument_specs.yml and meta/main.yml by
scripts/role-readme.py (``make role-readmes``): every README is up to date with its spec and
documents every variable; the generator renders types, defaults, choices, nested options and
Ansible's markup."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("role_readme", ROOT / "scripts" / "role-readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def test_every_role_has_an_argument_spec() -> None:
    assert [p.name for p in ROLES] == ["haproxy", "heal_timer", "nginx_web"]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_the_readme_is_up_to_date_with_the_argument_spec(role: Path) -> None:
    readme = role / "README.md"
    assert readme.is_file(), f"{readme.relative_to(ROOT)} is missing: run make role-readmes"
    assert readme.read_text() == GEN.render(role), (
        f"{readme.relative_to(ROOT)} is out of date with meta/argument_specs.yml: run make role-readmes"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_the_readme_documents_every_variable_and_entry_point(role: Path) -> None:
    text = (role / "README.md").read_text()
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert len(options) >= 20
    for name, spec in options.items():
        assert f"### `{name}`\n\ntype: {spec['type']}" in text, name
        for sub in spec.get("options") or {}:
            assert f"- `{sub}` (type: " in text, f"{name}.{sub}"
    for entry in specs:
        assert f"- `{entry}`: " in text
        if entry != "main":
            assert f"tasks_from: {entry}" in text
    for section in ("## Requirements", "## Role variables", "## Example playbook", "## License", "## Author"):
        assert section in text
    assert f"role: hapool.pool.{role.name}" in text


def test_the_generator_renders_types_defaults_choices_nesting_and_markup(tmp_path: Path) -> None:
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "main.yml").write_text(
        textwrap.dedent(
            """\
            galaxy_info:
              author: someone
              description: A demo role.
              license: MIT
              min_ansible_version: "2.17"
              platforms: [{name: Debian, versions: [bookworm]}]
            dependencies: []
            """
        )
    )
    (role / "meta" / "argument_specs.yml").write_text(
        textwrap.dedent(
            """\
            argument_specs:
              main:
                short_description: Demo
                description: [Does C(things) with O(demo_mode=fast).]
                options: &options
                  demo_mode:
                    type: str
                    default: slow
                    choices: [slow, fast]
                    description: [How fast., "I(Really) B(fast) V(fast), see U(https://example.org)."]
                  demo_items:
                    type: list
                    elements: dict
                    required: true
                    description: The items.
                    options:
                      name: {type: str, required: true, description: Item name (C((x)) style).}
                  demo_empty:
                    type: str
                    default: ""
                    description: Empty by default.
              stop:
                short_description: Stop it
                description: Stops.
                options: *options
            """
        )
    )
    text = GEN.render(role)
    assert text.startswith("# Ansible role: demo\n")
    assert "A demo role." in text and "Does `things` with `demo_mode=fast`." in text
    assert "### `demo_mode`\n\ntype: str; default: `slow`; choices: `slow`, `fast`\n\nHow fast.\n\n" in text
    assert "*Really* **fast** `fast`, see <https://example.org>." in text
    assert "### `demo_items`\n\ntype: list of dict; required\n\nThe items.\n\nKeys of each item:\n" in text
    assert "- `name` (type: str; required): Item name (`(x)` style)." in text
    assert 'type: str; default: `""`' in text
    assert "- Ansible (ansible-core) 2.17 or later.\n- Platforms: Debian bookworm." in text
    assert "The entry point `stop` takes the same variables as `main`." in text
    assert "    - role: hapool.pool.demo\n" in text and "        tasks_from: stop\n" in text
    assert "## License\n\nMIT\n" in text and "## Author information\n\nsomeone\n" in text
