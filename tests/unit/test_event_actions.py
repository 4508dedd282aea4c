"""The catalogue of event actions (module_utils/hapool/actions.py) is the one list: every action
the playbooks and roles write (``hapool_event`` tasks) or read (``hapool_event_info``), and every
action the heal watcher writes, is in it; and docs/observability.md describes exactly it.

``hapool_event`` accepts any action, so a typo in a playbook (``action: replcae``) would only
show as an event nobody reads: this test is where it fails."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from ansible.module_utils.hapool import actions
from ansible.module_utils.hapool.actions import KNOWN_ACTIONS, unknown_actions

ROOT = pathlib.Path(__file__).resolve().parents[2]
WRITERS = ("hapool_event",)
READERS = ("hapool_event_info",)
_VARIABLE = re.compile(r"\A\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\Z")
_TEMPLATED = re.compile(r"\{\{|\{%")


Used = tuple[dict[str, set[str]], list[str]]  # action -> files using it, what could not be read


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!vault, !unsafe) as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _any_tag)


def yaml_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    files = [*(root / "playbooks").rglob("*.yml"), *(root / "roles").rglob("*.yml")]
    return sorted(f for f in files if "molecule" not in f.parts)


def _nodes(value: Any) -> Iterator[Any]:
    """Every mapping and list in a YAML document, depth first."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            yield node
            stack.extend(node)


def _module_args(task: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    """The arguments of ``task`` when it calls one of the modules ``names`` (FQCN too)."""
    for key, args in task.items():
        if isinstance(key, str) and key.rsplit(".", 1)[-1] in names:
            if isinstance(args, str):  # free form: key=value ...
                return dict(re.findall(r"(\w+)=(\S+)", args))
            return args if isinstance(args, dict) else {}
    return None


def _task_actions(task: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """``(literal actions, variables the action is, expressions)`` of one task."""
    literals: list[str] = []
    variables: list[str] = []
    expressions: list[str] = []
    written = _module_args(task, WRITERS)
    if written is not None and "action" in written:
        action = str(written["action"])
        variable = _VARIABLE.match(action)
        if variable:
            variables.append(variable.group(1))
        elif _TEMPLATED.search(action):
            expressions.append(action)
        else:
            literals.append(action)
    read = _module_args(task, READERS)
    listed = (read or {}).get("actions") or []
    listed = listed.split(",") if isinstance(listed, str) else listed
    literals += [str(a).strip() for a in listed if not _TEMPLATED.search(str(a))]
    return literals, variables, expressions


def scan(files: list[pathlib.Path], root: pathlib.Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """``(action -> the files that use it, problems)``: literal actions of hapool_event tasks,
    the literal values of a variable such a task's action is (``action: "{{ var }}"``, e.g.
    tasks/record_events.yml), and the actions hapool_event_info tasks filter on."""
    mappings = {
        f: [n for n in _nodes(list(yaml.load_all(f.read_text(), Loader=_Loader))) if isinstance(n, dict)]
        for f in files
    }
    found: dict[str, set[str]] = {}
    variables: dict[str, int] = {}  # variable an action is -> how many literal values it is given
    problems: list[str] = []
    for path, nodes in mappings.items():
        for node in nodes:
            literals, names, expressions = _task_actions(node)
            for action in literals:
                found.setdefault(action, set()).add(str(path.relative_to(root)))
            variables.update(dict.fromkeys(names, 0))
            problems += [f"{path}: action {e!r} is an expression this test cannot check" for e in expressions]
    for path, nodes in mappings.items():
        for node in nodes:
            for key, value in node.items():
                if key in variables and isinstance(value, str) and not _TEMPLATED.search(value):
                    found.setdefault(value, set()).add(str(path.relative_to(root)))
                    variables[key] += 1
    problems += [f"the action variable {name} is never given a literal value" for name, n in variables.items()
                 if not n]  # fmt: skip
    return found, problems


def watcher_actions() -> dict[str, set[str]]:
    """The actions the heal watcher (a standalone script of the heal_timer role) writes."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "roles").rglob("*.py")):
        for action in re.findall(r"""self\.event\(\s*["']([^"']+)["']""", path.read_text()):
            found.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def used() -> Used:
    """What the repository's playbooks and roles use, and what the scan could not read."""
    found, problems = scan(yaml_files())
    for action, where in watcher_actions().items():
        found.setdefault(action, set()).update(where)
    return found, problems


def test_every_action_the_playbooks_and_roles_use_is_in_the_catalogue(used: Used) -> None:
    found, problems = used
    assert not problems, problems
    missing = {action: sorted(found[action]) for action in unknown_actions(found)}
    assert not missing, f"not in actions.KNOWN_ACTIONS (a typo, or an action to catalogue): {missing}"
    # The scan found what it is there to find (a scan that reads nothing passes nothing).
    assert len(found) >= 10, sorted(found)
    assert {"replace", "scale_out", "balancer_restart"} <= set(found), sorted(found)


def test_a_typo_in_a_playbook_action_fails(tmp_path: pathlib.Path) -> None:
    literal = tmp_path / "literal.yml"
    literal.write_text(
        "- name: Log\n  hapool_event:\n    path: /x\n    pool: web\n    action: replcae\n"
        "- name: Read\n  hapool.core.hapool_event_info:\n    path: /x\n    actions: [scale_out, scael_in]\n"
    )
    through_variable = tmp_path / "variable.yml"
    through_variable.write_text(
        "- name: Log\n  hapool_event:\n    action: \"{{ _what }}\"\n"
        "- name: Use\n  ansible.builtin.include_tasks: x.yml\n  vars:\n    _what: scale_lanuch\n"
    )
    found, problems = scan([literal, through_variable], tmp_path)
    assert not problems
    assert unknown_actions(found) == ["replcae", "scael_in", "scale_lanuch"]


def test_an_action_expression_the_test_cannot_read_is_reported(tmp_path: pathlib.Path) -> None:
    task = tmp_path / "expr.yml"
    task.write_text("- name: Log\n  hapool_event:\n    action: \"{{ 'scale_' ~ way }}\"\n")
    _, problems = scan([task], tmp_path)
    assert problems and "cannot check" in problems[0]


def test_the_catalogue_names_each_action_once_with_a_meaning() -> None:
    constants = {n: v for n, v in vars(actions).items() if n.isupper() and isinstance(v, str)}
    assert set(constants.values()) == set(KNOWN_ACTIONS)
    for name, value in constants.items():
        assert name == value.upper(), f"{name} = {value!r}: a constant is named after its action"
    assert len(set(constants.values())) == len(constants)
    for action, meaning in KNOWN_ACTIONS.items():
        assert meaning.strip() and "\n" not in meaning, action


def test_docs_describe_exactly_the_catalogue() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    table = text[text.index("| action | written by |") :].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert sorted(documented) == sorted(KNOWN_ACTIONS)


@pytest.mark.parametrize("action", sorted(KNOWN_ACTIONS))
def test_each_catalogued_action_has_a_writer(action: str, used: Used) -> None:
    """No dead entry: the action is written by a playbook or role, or named by its constant in
    the Python that writes events (module_utils, library)."""
    if action in used[0]:
        return
    python = [*(ROOT / "plugins" / "module_utils" / "hapool").rglob("*.py"), *(ROOT / "library").glob("*.py")]
    constant = action.upper()
    users = [p for p in python if p.name != "actions.py" and re.search(rf"\b{constant}\b", p.read_text())]
    assert users, f"{action}: nothing writes it"
