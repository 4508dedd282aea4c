"""Every fact a playbook sets or registers, and every loop_var, is internal: its name starts
with `_` (`_hapool_*`), so it never shares the namespace of the user settings (`hapool_*`,
docs/CONVENTIONS.md, "playbooks/")."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "playbooks").rglob("*.yml"))
SET_FACT = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
SET_FACT_OPTIONS = {"cacheable"}
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
#: The one set_fact whose names are not the playbook's own: a build host of a bake takes the
#: template's nginx_web_* variables (the role's inputs, names known only at run time) as facts.
ROLE_INPUTS = {("plays/bake.yml", "set_fact {{ item.key }}")}


def tasks_of(data: Any) -> Iterator[dict[str, Any]]:
    """Every task of a playbook or task file, in plays, blocks, rescues and always sections."""
    if isinstance(data, list):
        for entry in data:
            yield from tasks_of(entry)
    elif isinstance(data, dict):
        if not any(key in data for key in ("hosts", "import_playbook", "ansible.builtin.import_playbook")):
            yield data
        for key in TASK_LISTS:
            yield from tasks_of(data.get(key) or [])


def names_set(task: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(what, name) for each name a task sets: set_fact keys, register, loop_var."""
    for key in SET_FACT & task.keys():
        args = task[key]
        if isinstance(args, dict):
            yield from (("set_fact", name) for name in args if name not in SET_FACT_OPTIONS)
    if "register" in task:
        yield "register", task["register"]
    loop_var = (task.get("loop_control") or {}).get("loop_var")
    if loop_var is not None:
        yield "loop_var", loop_var


def unprefixed(path: pathlib.Path) -> list[str]:
    data = yaml.safe_load(path.read_text())
    return [f"{what} {name}" for task in tasks_of(data) for what, name in names_set(task)
            if not str(name).startswith("_")]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT / "playbooks")) for p in FILES])
def test_every_fact_a_playbook_sets_is_internal(path: pathlib.Path) -> None:
    rel = str(path.relative_to(ROOT / "playbooks"))
    found = [name for name in unprefixed(path) if (rel, name) not in ROLE_INPUTS]
    assert found == [], f"{path.relative_to(ROOT)}: name these `_hapool_*`"


def test_the_check_reads_nested_blocks_and_every_kind_of_name(tmp_path: pathlib.Path) -> None:
    playbook = tmp_path / "p.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  tasks:\n"
        "    - block:\n"
        "        - ansible.builtin.set_fact: {hapool_x: 1, _hapool_y: 2, cacheable: false}\n"
        "      rescue:\n"
        "        - {ansible.builtin.command: 'true', register: out}\n"
        "    - {ansible.builtin.debug: {}, loop: [1], loop_control: {loop_var: hapool_item}}\n"
        "- ansible.builtin.import_playbook: other.yml\n"
    )
    assert unprefixed(playbook) == ["set_fact hapool_x", "register out", "loop_var hapool_item"]


def test_the_playbooks_are_all_read() -> None:
    names = {str(p.relative_to(ROOT / "playbooks")) for p in FILES}
    assert {"heal.yml", "tasks/pool_lock.yml", "plays/release.yml", "vars/pool_run.yml"} <= names
