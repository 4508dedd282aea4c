"""The provider options a module takes from the pool's entry of ``hapool_pools``
(providers/options.py ``pool_params``): pool_instance, pool_instance_info, heal_plan, scale_plan and
site_plan resolve them in this one place, so no playbook lists them by hand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.pools import _LAUNCH
from ansible.module_utils.hapool.providers.options import (
    ENTRY_OPTIONS,
    LAUNCH_ARGUMENT_SPEC,
    PROVIDER_ARGUMENT_SPEC,
    launch_spec,
    pool_params,
    provider_settings,
)
from helpers.modules import run_module

#: A module's parameters as Ansible hands them over when the task sets nothing but the pool.
UNSET: dict[str, Any] = {key: None for key in (*PROVIDER_ARGUMENT_SPEC, *LAUNCH_ARGUMENT_SPEC)}

LAUNCH = {
    "image": "hapool/base:bookworm",
    "network": "pool-net",
    "docker_host": "tcp://127.0.0.1:2375",
    "bind_network": "127.0.1.0/24",
    "port": "8080",  # templated values arrive as strings: converted to the option's type
    "vagrant_dir": "~/vagrant",
    "vagrantfile": "/srv/Vagrantfile",
    "vagrant_backend": "libvirt",
    "box": "debian/bookworm64",
    "vm_network": "192.168.57.0/24",
    "start_timeout": 30,
    "cpus": "0.5",
    "memory": "256m",
}
ENTRY = {"name": "web", "provider": "vagrant", "min": 1, "max": 4, "launch": LAUNCH}


def test_the_entry_alone_gives_the_provider_and_every_launch_option() -> None:
    got = pool_params({**UNSET, "pool": ENTRY, "state_dir": "/state"})
    assert got["pool"] == "web" and got["provider"] == "vagrant" and got["state_dir"] == "/state"
    assert {key: got[key] for key in ENTRY_OPTIONS} == {
        **LAUNCH, "port": 8080, "cpus": 0.5, "start_timeout": 30.0,
        "vagrant_dir": os.path.expanduser("~/vagrant"),
    }  # fmt: skip
    assert type(got["port"]) is int and type(got["start_timeout"]) is float
    # what the provider and the launch get from them
    assert provider_settings("vagrant", got)["backend"] == "libvirt"
    assert launch_spec(got).cpus == 0.5 and launch_spec(got).box == "debian/bookworm64"
    assert ENTRY["launch"]["port"] == "8080"  # the entry itself is left as it was


def test_explicit_options_win_over_the_entry() -> None:
    given = {**UNSET, "pool": ENTRY, "provider": "docker", "image": "mine:1", "port": 81, "cpus": 2.0}
    got = pool_params(given)
    assert (got["provider"], got["image"], got["port"], got["cpus"]) == ("docker", "mine:1", 81, 2.0)
    assert got["network"] == "pool-net" and got["memory"] == "256m"  # the others still come from it


def test_a_pool_name_or_no_pool_takes_nothing_and_the_provider_defaults_to_local() -> None:
    named = pool_params({**UNSET, "pool": "web", "network": "n"})
    assert named == {**UNSET, "pool": "web", "provider": "local", "network": "n"}
    assert pool_params({**UNSET, "pool": None})["pool"] is None
    assert pool_params({**UNSET, "pool": None, "provider": "docker"})["provider"] == "docker"
    # an entry without provider or launch
    assert pool_params({**UNSET, "pool": {"name": "api", "launch": None}}) == {
        **UNSET, "pool": "api", "provider": "local"}  # fmt: skip


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (["web"], "pool must be a pool name or the pool's entry of hapool_pools .* not list"),
        (7, "pool must be a pool name or the pool's entry of hapool_pools .* not int"),
        (True, "not bool"),
        ({"provider": "local"}, "the pool entry has no name"),
        ({"name": 5}, "the pool entry has no name"),
        ({"name": "web", "launch": ["image"]}, "pool web: launch must be a dict"),
        ({"name": "web", "launch": {"port": "eighty"}}, "pool web: launch.port 'eighty' is not a int"),
        ({"name": "web", "launch": {"cpus": True}}, "pool web: launch.cpus True is not a float"),
        ({"name": "web", "launch": {"vagrant_backend": "kvm"}}, "launch.vagrant_backend 'kvm' is not one of"),
    ],
)
def test_an_entry_that_is_not_one_is_a_clear_error(pool: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        pool_params({**UNSET, "pool": pool})


def test_the_entry_options_are_the_launch_keys_the_pool_validator_knows() -> None:
    """A provider option added to PROVIDER_ARGUMENT_SPEC is one a pool's launch may set (and
    pool_validate checks it), with no playbook passing it."""
    assert set(ENTRY_OPTIONS) == set(_LAUNCH)


def test_the_modules_take_the_entry(tmp_path: Path) -> None:
    """pool_instance and pool_instance_info, run as Ansible runs them: the provider and its
    options come from the entry (a docker entry with an engine that is not there fails on that
    engine), a name still works, anything else fails clearly. Nothing is launched."""
    state = str(tmp_path / "state")
    engine = {"docker_host": "unix:///nonexistent/docker.sock"}
    entry = {"name": "web", "provider": "docker", "launch": engine}
    listed = run_module("pool_instance_info", {"pool": entry, "state_dir": state})
    assert listed["failed"] and listed["error"] == "ProviderUnavailableError", listed
    assert "nonexistent/docker.sock" in listed["msg"]
    local = run_module("pool_instance_info", {"pool": {**entry, "provider": None}, "state_dir": state})
    assert not local.get("failed") and local["count"] == 0, local  # no provider in the entry: local
    explicit = run_module("pool_instance_info", {"pool": entry, "provider": "local", "state_dir": state})
    assert not explicit.get("failed") and explicit["count"] == 0, explicit  # the task's provider wins
    named = run_module("pool_instance", {"pool": "web", "name": "web-000001", "state": "absent",
                                         "state_dir": state})  # fmt: skip
    assert not named.get("failed") and named["changed"] is False, named
    gone = run_module("pool_instance", {"pool": entry, "name": "web-000001", "state": "absent",
                                        "state_dir": state})  # fmt: skip
    assert gone["failed"] and gone["error"] == "ProviderUnavailableError", gone
    bad = run_module("pool_instance", {"pool": ["web"], "state_dir": state})
    assert bad["failed"] and bad["error"] == "InvalidArgumentError" and "not list" in bad["msg"], bad
