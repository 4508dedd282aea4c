"""pool_template_info: a pool's launch template version from its inputs, and where the pool stands
against its index of baked versions (reuse or bake, the artefact, the hosts behind); bad input is
a clear error naming the thing. Most tests call the module's run() in-process on tmp_path trees;
a few run the module the way Ansible does (helpers.modules.run_module)."""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ansible.module_utils.hapool.errors import InvalidArgumentError, TemplateError
from ansible.module_utils.hapool.templates import VERSION_RE, index_path, read_index, record_bake, write_index
from helpers.modules import LIBRARY, run_module

MODULE = runpy.run_path(str(LIBRARY / "pool_template_info.py"))  # not __main__: main() does not run
SPEC: dict[str, dict[str, Any]] = MODULE["ARGUMENT_SPEC"]

POOL = {"name": "web", "provider": "docker", "min": 1, "max": 3, "launch": {"image": "hapool/base:bookworm"}}
VARIABLES = {"nginx_web_hostname": "@@HAPOOL_HOST@@", "nginx_web_workers": 2, "nginx_web_gzip": True}
BASE = "sha256:" + "0b" * 32
OLD = "aaaaaaaaaaaa"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Any]:
    """A role (with the files the default excludes skip), an extra file and a state root."""
    role = tmp_path / "roles" / "nginx_web"
    for rel, text in {
        "tasks/main.yml": "- name: nginx\n  ansible.builtin.package: {name: nginx}\n",
        "templates/nginx.conf.j2": "server_name {{ nginx_web_hostname }};\n",
        "defaults/main.yml": "nginx_web_workers: 1\n",
        "README.md": "generated\n",
        "molecule/default/molecule.yml": "driver: {name: docker}\n",
    }.items():
        (role / rel).parent.mkdir(parents=True, exist_ok=True)
        (role / rel).write_text(text)
    extra = tmp_path / "scripts" / "hapool-start"
    extra.parent.mkdir()
    extra.write_text("#!/bin/sh\nexec nginx -g 'daemon off;'\n")
    return {"role": role, "extra": extra, "state": tmp_path / "state", "root": tmp_path}


def params(tree: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The module's parameters as Ansible hands them over: every option, defaults filled in."""
    base = {key: spec.get("default") for key, spec in SPEC.items()}
    defaults = {
        "pool": POOL,
        "variables": VARIABLES,
        "role_dir": str(tree["role"]),
        "files": [str(tree["extra"])],
        "base": BASE,
        "state_dir": str(tree["state"]),
    }
    return {**base, **defaults, **given}


def info(tree: dict[str, Any], **given: Any) -> dict[str, Any]:
    result: dict[str, Any] = MODULE["run"](SimpleNamespace(params=params(tree, **given)))
    return result


def bake(
    tree: dict[str, Any], version: str, *, usable: bool = True, pool: str = "web", now: float = 1.0
) -> str:
    """Record a bake of ``version`` in the pool's index; its artefact."""
    path = index_path(tree["state"], pool)
    artifact = f"hapool/{pool}:{version}"
    index = record_bake(read_index(path, pool), version, artifact, now, usable=usable,
                        reason="" if usable else "health check: 502")  # fmt: skip
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_index(path, index)
    return artifact


# --- the version ----------------------------------------------------------------------------------


def test_a_pool_never_baked_gets_a_version_to_bake_and_a_summary(tree: dict[str, Any]) -> None:
    got = info(tree)
    assert VERSION_RE.match(got["version"]), got
    assert got == {
        "changed": False,
        "version": got["version"],
        "current": None,
        "action": "bake",
        "artifact": None,
        "versions": [],
        "behind": [],
        # tasks, templates, defaults (README.md and molecule/ excluded) and the extra file
        "reason": "",
        # the variables with the forced json_extra; tasks, templates, defaults (README.md and
        # molecule/ excluded), the extra file and the bake code
        "inputs": {"provider": "docker", "base": BASE, "variables": 4, "files": 5},
    }
    assert not tree["state"].exists()  # read-only: nothing made, not even the index's directory


def test_same_inputs_give_the_same_version_wherever_they_are(tree: dict[str, Any]) -> None:
    first = info(tree)["version"]
    assert info(tree)["version"] == first
    # variable order, another copy of the role elsewhere, another state root: the same version
    reordered = dict(reversed(list(VARIABLES.items())))
    copy = tree["root"] / "elsewhere" / "nginx_web"
    shutil.copytree(tree["role"], copy)
    again = info(tree, variables=reordered, role_dir=str(copy), state_dir=str(tree["root"] / "other"))
    assert again["version"] == first
    # a pool entry given with its numbers as strings is the same pool once validated
    assert info(tree, pool={**POOL, "min": "1", "max": "3"})["version"] == first


def test_editing_a_role_file_gives_a_new_version(tree: dict[str, Any]) -> None:
    first = info(tree)["version"]
    conf = tree["role"] / "templates" / "nginx.conf.j2"
    conf.write_text(conf.read_text() + "gzip on;\n")
    second = info(tree)["version"]
    assert second != first
    conf.write_text("server_name {{ nginx_web_hostname }};\n")  # back as it was: back to the version
    assert info(tree)["version"] == first
    # a new file, a moved file: new versions
    (tree["role"] / "templates" / "extra.conf").write_text("")
    assert info(tree)["version"] not in (first, second)
    (tree["role"] / "templates" / "extra.conf").rename(tree["role"] / "extra.conf")
    moved = info(tree)["version"]
    (tree["role"] / "extra.conf").unlink()
    assert moved != first and info(tree)["version"] == first


def test_the_excluded_files_are_not_part_of_the_template(tree: dict[str, Any]) -> None:
    first = info(tree)["version"]
    (tree["role"] / "README.md").write_text("regenerated\n")
    (tree["role"] / "molecule" / "default" / "verify.yml").write_text("- hosts: all\n")
    (tree["role"] / "tasks" / "__pycache__").mkdir()
    (tree["role"] / "tasks" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert info(tree)["version"] == first


@pytest.mark.parametrize(
    "change",
    [
        {"variables": {**VARIABLES, "nginx_web_workers": 4}},
        {"variables": {**VARIABLES, "nginx_web_new": None}},
        {"base": "sha256:" + "0c" * 32},
        {"pool": {**POOL, "provider": "local"}},
        {"pool": {**POOL, "name": "api"}},
        {"files": []},
    ],
    ids=["variable value", "new variable", "base", "provider", "pool", "no extra file"],
)
def test_every_input_is_part_of_the_version(tree: dict[str, Any], change: dict[str, Any]) -> None:
    assert info(tree, **change)["version"] != info(tree)["version"]


def test_an_extra_files_content_and_name_are_part_of_the_version(tree: dict[str, Any]) -> None:
    first = info(tree)["version"]
    tree["extra"].write_text(tree["extra"].read_text() + "# changed\n")
    changed = info(tree)["version"]
    assert changed != first
    renamed = tree["extra"].with_name("start.sh")
    tree["extra"].rename(renamed)
    assert info(tree, files=[str(renamed)])["version"] not in (first, changed)
    # an extra file with a role file's path and content is not that role file
    alone = info(tree, files=[])["version"]
    twin = tree["root"] / "main.yml"
    shutil.copy(tree["role"] / "tasks" / "main.yml", twin)
    assert info(tree, files=[str(twin)])["version"] != alone


def test_the_hosts_and_the_index_do_not_change_the_version(tree: dict[str, Any]) -> None:
    first = info(tree)["version"]
    bake(tree, OLD)
    assert info(tree, instances=[{"name": "web-000001", "template": OLD}])["version"] == first


# --- the index: reuse or bake ---------------------------------------------------------------------


def test_a_version_recorded_usable_is_reused_with_its_artifact(tree: dict[str, Any]) -> None:
    version = info(tree)["version"]
    bake(tree, OLD, now=1.0)
    artifact = bake(tree, version, now=2.0)
    got = info(tree)
    assert (got["action"], got["artifact"], got["current"]) == ("reuse", artifact, version)
    assert got["versions"] == [
        {"version": OLD, "artifact": f"hapool/web:{OLD}", "baked_at": 1.0, "usable": True, "reason": ""},
        {"version": version, "artifact": artifact, "baked_at": 2.0, "usable": True, "reason": ""},
    ]
    # once a role file changes, the new version is to bake; the current one stays what it was
    (tree["role"] / "defaults" / "main.yml").write_text("nginx_web_workers: 2\n")
    changed = info(tree)
    assert (changed["action"], changed["artifact"], changed["current"]) == ("bake", None, version)


def test_a_version_whose_bake_failed_is_baked_again(tree: dict[str, Any]) -> None:
    version = info(tree)["version"]
    bake(tree, OLD, now=1.0)
    bake(tree, version, usable=False, now=2.0)
    got = info(tree)
    assert (got["action"], got["artifact"], got["current"]) == ("bake", None, OLD)
    failed = {"version": version, "artifact": f"hapool/web:{version}", "baked_at": 2.0, "usable": False}
    assert got["versions"][-1] == {**failed, "reason": "health check: 502"}


def test_another_pools_index_is_not_read(tree: dict[str, Any]) -> None:
    version = info(tree)["version"]
    bake(tree, version, pool="api")
    got = info(tree)
    assert (got["action"], got["current"], got["versions"]) == ("bake", None, [])


# --- behind ----------------------------------------------------------------------------------------


def test_behind_lists_the_bare_and_the_old_hosts(tree: dict[str, Any]) -> None:
    version = info(tree)["version"]
    bake(tree, OLD, now=1.0)
    bake(tree, version, now=2.0)
    instances = [
        {"name": "web-00000c", "template": version},
        {"name": "web-00000b", "template": OLD},
        {"name": "web-00000a", "template": None},  # launched bare, provisioned
        # as pool_instance_info returns them: no template key (a bare host), other keys ignored
        {"name": "web-000009", "pool": "web", "provider": "docker", "alive": True, "extra": {}},
    ]
    got = info(tree, instances=instances)
    assert got["behind"] == ["web-000009", "web-00000a", "web-00000b"]
    assert info(tree, instances=instances[:1])["behind"] == []


def test_no_host_is_behind_before_the_first_good_bake(tree: dict[str, Any]) -> None:
    bake(tree, OLD, usable=False)
    instances = [{"name": "web-00000a", "template": None}, {"name": "web-00000b", "template": OLD}]
    assert info(tree, instances=instances)["behind"] == []


# --- bad input ---------------------------------------------------------------------------------------


def test_a_role_dir_that_cannot_be_read_is_an_error_naming_it(tree: dict[str, Any]) -> None:
    missing = tree["root"] / "roles" / "nginx_wbe"
    with pytest.raises(TemplateError, match=re.escape(f"role_dir {missing}: {missing} is not a directory")):
        info(tree, role_dir=str(missing))
    a_file = tree["role"] / "tasks" / "main.yml"
    with pytest.raises(TemplateError, match=re.escape(f"{a_file} is not a directory")):
        info(tree, role_dir=str(a_file))


def test_extra_files_that_cannot_be_read_or_share_a_basename_are_errors(tree: dict[str, Any]) -> None:
    missing = tree["root"] / "scripts" / "gone"
    with pytest.raises(TemplateError, match=re.escape(f"cannot read the extra file {missing}: No such file")):
        info(tree, files=[str(missing)])
    with pytest.raises(
        TemplateError, match=re.escape(f"cannot read the extra file {tree['root']}: Is a dir")
    ):
        info(tree, files=[str(tree["root"])])
    other = tree["root"] / "other" / "hapool-start"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    words = (
        r"the extra files .*/scripts/hapool-start and .*/other/hapool-start have the same basename "
        r"'hapool-start' \(extra files are keyed by basename\)"
    )
    with pytest.raises(TemplateError, match=words):
        info(tree, files=[str(tree["extra"]), str(other)])


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"nginx_web_ports": {80, 443}}, "variable nginx_web_ports is not JSON-safe: a set"),
        ({"nginx_web_key": b"k"}, "variable nginx_web_key is not JSON-safe: a bytes"),
        ({"nginx_web_ratio": math.nan}, "variable nginx_web_ratio is nan, which JSON cannot hold"),
        ({"nginx_web_map": {"a": [1, {"b": math.inf}]}}, r"variable nginx_web_map.a\[1\].b is inf"),
        ({"nginx_web_map": {1: "x"}}, "variable nginx_web_map has a key that is not a string: 1"),
    ],
    ids=["set", "bytes", "nan", "nested inf", "int key"],
)
def test_a_variable_json_cannot_hold_is_an_error_naming_it(
    tree: dict[str, Any], variables: dict[str, Any], words: str
) -> None:
    with pytest.raises(TemplateError, match=words):
        info(tree, variables=variables)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "is not JSON"),
        ('{"schema": 9, "pool": "web", "current": null, "versions": []}',
         "corrupt: unknown template index schema 9"),
        ('{"schema": 1, "pool": "web", "current": "bbbbbbbbbbbb", "versions": []}',
         "corrupt: current 'bbbbbbbbbbbb' is not one of the recorded versions"),
        ('{"schema": 1, "pool": "web", "current": null, "versions": [{"version": "x"}]}',
         "corrupt: version record 1: version 'x' is not 12 lowercase hex digits"),
        ('{"schema": 1, "pool": "api", "current": null, "versions": []}', "is pool 'api''s, not 'web''s"),
    ],
    ids=["not json", "schema", "current unknown", "bad record", "another pool's"],
)  # fmt: skip
def test_a_corrupt_index_is_an_error_naming_the_file(tree: dict[str, Any], content: str, words: str) -> None:
    path = Path(index_path(tree["state"], "web"))
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(TemplateError, match=f"the template index {re.escape(str(path))} .*{words}"):
        info(tree)
    assert path.read_text() == content  # never rewritten


def test_an_index_that_cannot_be_read_is_an_error(tree: dict[str, Any]) -> None:
    path = Path(index_path(tree["state"], "web"))
    path.mkdir(parents=True)  # a directory where the file should be: unreadable even for root
    with pytest.raises(TemplateError, match=f"cannot read the template index {re.escape(str(path))}"):
        info(tree)


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"pool": {"name": "web", "servers": [{"name": "s1", "address": "127.0.0.1"}]}},
         "pool web has no provider: a static pool .* has no launch template"),
        ({"pool": {**POOL, "provider": "ec2"}}, "pool web: provider must be one of"),
        ({"pool": {**POOL, "provider": "vagrant", "launch": {"vagrant_backend": "libvirt"}}},
         "pool web: the vagrant libvirt backend has no launch template"),
        ({"pool": {**POOL, "weight": "abc"}}, "pool web: weight must be a number, got 'abc'"),
        ({"pool": {**POOL, "name": "Web/.."}}, "pool Web/..: name must be 1-32 characters"),
        ({"base": ""}, r"pool web: base \(the provider's base image id\) is empty"),
        ({"base": "  "}, "base .* is empty"),
        ({"instances": [{"name": "web-00000a"}, {"name": "web-00000a", "template": None}]},
         "instance web-00000a is given twice"),
        ({"instances": [{"template": OLD}]}, r"instances\[0\] has no name"),
        ({"instances": [{"name": "web-00000a", "template": "v1"}]},
         "instance web-00000a: template 'v1' is not a version"),
        ({"instances": ["web-00000a"]}, r"instances\[0\] must be a dict with name and template"),
    ],
    ids=["static pool", "provider", "vagrant vm", "pool setting", "pool name", "empty base", "blank base",
         "host twice", "host without name", "bad host version", "host not a dict"],
)  # fmt: skip
def test_bad_pool_base_or_hosts_are_errors_naming_them(
    tree: dict[str, Any], given: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        info(tree, **given)


# --- the module as Ansible runs it ------------------------------------------------------------------


def test_the_module_reports_in_check_mode_and_changes_nothing(tree: dict[str, Any]) -> None:
    args = {key: value for key, value in params(tree).items() if value is not None}
    version = info(tree)["version"]
    artifact = bake(tree, version)
    before = sorted(p.relative_to(tree["root"]) for p in tree["root"].rglob("*"))
    for check_mode in (False, True):
        result = run_module("pool_template_info", args, check_mode=check_mode)
        assert not result.get("failed") and result["changed"] is False, result
        assert (result["version"], result["action"], result["artifact"]) == (version, "reuse", artifact)
    assert sorted(p.relative_to(tree["root"]) for p in tree["root"].rglob("*")) == before


def test_the_module_fails_with_the_message(tree: dict[str, Any]) -> None:
    args = {key: value for key, value in params(tree).items() if value is not None}
    path = Path(index_path(tree["state"], "web"))
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    bad = run_module("pool_template_info", args)
    assert bad["failed"] and bad["error"] == "TemplateError", bad
    assert bad["msg"] == f"the template index {path} is corrupt: a template index must be an object, not list"
    path.unlink()
    # NaN comes through Ansible's JSON arguments: refused, named
    nan = run_module("pool_template_info", {**args, "variables": {"nginx_web_ratio": math.nan}})
    assert nan["failed"] and nan["msg"] == "variable nginx_web_ratio is nan, which JSON cannot hold", nan
    # a required option missing is Ansible's own error
    missing = run_module("pool_template_info", {k: v for k, v in args.items() if k != "role_dir"})
    assert missing["failed"] and "role_dir" in missing["msg"], missing


def test_the_argument_spec_is_the_documented_one() -> None:
    """The options the brief of the module names, with their types (test_module_docs checks the
    documentation against this spec)."""
    assert {key: (spec["type"], spec.get("required", False)) for key, spec in SPEC.items()} == {
        "pool": ("dict", True),
        "variables": ("dict", False),
        "role_dir": ("path", True),
        "files": ("list", False),
        "base": ("str", False),
        "state_dir": ("path", False),
        "instances": ("list", False),
    }


ROLE = LIBRARY.parent / "roles" / "nginx_web"


def test_the_version_is_pool_templates_for_the_same_pool(tmp_path: Path) -> None:
    """pool_template_info (base omitted: the provider's) and pool_template's plan (check mode: no
    build host) hash the same inputs - the same function - so they give the same version; the
    variables the bake sets itself (a local pool's paths, the host name) change neither."""
    state = tmp_path / "state"
    pool = {
        "name": "web",
        "provider": "local",
        "template": {"enabled": True, "variables": {"nginx_web_keepalive_timeout": 7}},
    }
    seen = {"nginx_web_worker_processes": "1", "nginx_web_root": str(tmp_path / "web" / "html")}
    common = {"pool": pool, "variables": seen, "role_dir": str(ROLE), "state_dir": str(state)}
    reported = run_module("pool_template_info", common)
    planned = run_module("pool_template", common, check_mode=True)
    assert not reported.get("failed") and not planned.get("failed"), (reported, planned)
    assert reported["version"] == planned["version"], (reported, planned)
    assert (planned["action"], planned["changed"], planned["reason"]) == ("bake", True, "first bake")
    assert reported["inputs"]["base"].startswith("nginx /") and reported["action"] == "bake"
    assert planned["variables"] == {
        "nginx_web_worker_processes": "1",
        "nginx_web_keepalive_timeout": 7,
        "nginx_web_hostname": "@@HAPOOL_HOST@@",
        "nginx_web_json_extra": {"pools": ["web"]},
    }
    moved = {**seen, "nginx_web_root": "/elsewhere", "nginx_web_hostname": "web-1"}
    assert run_module("pool_template_info", {**common, "variables": moved})["version"] == reported["version"]
    assert not state.exists()  # neither made anything


def test_editing_the_real_roles_readme_or_molecule_does_not_change_the_version(tmp_path: Path) -> None:
    """The nginx_web role's documentation and tests are not part of the template (DEFAULT_EXCLUDE):
    a README.md at any depth and molecule/; its tasks, templates, defaults and meta are."""
    role = tmp_path / "nginx_web"
    shutil.copytree(ROLE, role)
    base = {"pool": POOL, "role_dir": str(role), "base": BASE, "state_dir": str(tmp_path / "state")}
    first = run_module("pool_template_info", base)["version"]
    (role / "README.md").write_text((role / "README.md").read_text() + "\nMore words.\n")
    (role / "templates" / "README.md").write_text("# the templates\n")
    molecule = role / "molecule" / "default" / "converge.yml"
    molecule.parent.mkdir(parents=True, exist_ok=True)
    molecule.write_text("- hosts: all\n")
    assert run_module("pool_template_info", base)["version"] == first
    conf = role / "templates" / "nginx.conf.j2"
    conf.write_text(conf.read_text() + "# changed\n")
    assert run_module("pool_template_info", base)["version"] != first


def test_pool_instance_info_reports_a_corrupt_index_and_still_lists_the_hosts(tmp_path: Path) -> None:
    """A status page needs the instances even when the pool's template index is corrupt:
    pool_instance_info does not fail, its template view names the file, and it warns."""
    state = tmp_path / "state"
    pool = {"name": "web", "provider": "local", "template": {"enabled": True}}
    path = Path(index_path(state, "web"))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = run_module("pool_instance_info", {"pool": pool, "state_dir": str(state)})
    assert not result.get("failed"), result
    assert result["instances"] == [] and result["count"] == 0
    assert result["template"]["current"] is None and result["template"]["behind"] == []
    assert result["template"]["error"].startswith(f"the template index {path} is not JSON"), result
    assert str(path) in json.dumps(result.get("warnings")), result  # ansible-core 2.19: warning summaries
    assert path.read_text() == "{not json"  # never rewritten
    path.write_text('{"schema": 1, "pool": "web", "current": null, "versions": []}')
    fine = run_module("pool_instance_info", {"pool": pool, "state_dir": str(state)})
    assert fine["template"] == {"current": None, "behind": []}, fine
