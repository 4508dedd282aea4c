"""Baked artefacts that went away and what interrupted bakes leave, with real nginx processes on
loopback (local provider, no Docker, no Ansible run but the modules themselves).

* pool_instance given a pool entry whose current template tree was deleted fails with a message
  that says to bake again (playbooks/bake.yml or site.yml) and leaves no host behind;
* :func:`hapool.baking.sweep` destroys the throw-away host of a validation whose owner is gone
  (a running nginx in a scratch state root) and keeps the one of a live owner.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ansible.module_utils.hapool.baking import artifact_name, owner, sweep
from ansible.module_utils.hapool.providers import LaunchSpec
from ansible.module_utils.hapool.providers.local import LocalProvider
from ansible.module_utils.hapool.providers.procfs import pid_alive
from ansible.module_utils.hapool.templates import index_path, read_index, record_bake, write_index
from helpers.modules import run_module

pytestmark = pytest.mark.integration

VERSION = "0123456789ab"


def test_pool_instance_from_a_deleted_template_tree_says_to_bake_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tree = Path(artifact_name("local", state, "web", VERSION))  # recorded current, never there
    path = index_path(state, "web")
    os.makedirs(os.path.dirname(path))
    write_index(path, record_bake(read_index(path, "web"), VERSION, str(tree), 1.0, usable=True))
    entry = {"name": "web", "provider": "local", "template": {"enabled": True}}
    result = run_module("pool_instance", {"pool": entry, "state_dir": str(state)})
    assert result["failed"], result
    assert f"the template tree {tree} of pool web's template version {VERSION} is missing" in result["msg"]
    assert "playbooks/bake.yml (or site.yml)" in result["msg"], result
    assert not list((state / "local" / "pools" / "web").glob("web-*")), "a failed launch left a host"
    assert read_index(path, "web").current == VERSION  # the launch changes no record


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def scratch_host(scratch: Path) -> tuple[LocalProvider, int]:
    """A host launched (real nginx) in a validation's scratch state root, and its nginx pid."""
    provider = LocalProvider(scratch / "local")
    host = provider.launch("web", LaunchSpec())
    pid = host.extra["pid"]
    assert isinstance(pid, int) and pid_alive(pid)
    return provider, pid


def test_sweep_destroys_a_dead_validations_scratch_host_and_keeps_a_live_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tdir = state / "templates" / "web"
    me, start = owner()
    dead = tdir / f".check-{dead_pid()}-99-abcd1234"
    live = tdir / f".check-{me}-{start}-efgh5678"
    _, dead_nginx = scratch_host(dead)
    live_provider, live_nginx = scratch_host(live)
    try:
        swept = sweep(LocalProvider(tmp_path / "local"), str(state), "web")
        assert swept == [str(dead)]
        assert not dead.exists() and not pid_alive(dead_nginx)
        assert live.exists() and pid_alive(live_nginx)
    finally:
        for host in live_provider.list("web"):
            live_provider.destroy("web", host)
        if dead.exists():  # the sweep failed: do not leave its nginx running
            provider = LocalProvider(dead / "local")
            for host in provider.list("web"):
                provider.destroy("web", host)
