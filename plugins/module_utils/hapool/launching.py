"""Launching a host from a pool's entry and adding it to the balancer at runtime: what
``pool_instance`` and ``tasks/register_runtime.yml`` do, for the code that acts without a
playbook (the watcher's fast path, the warm pool's refill). Stdlib only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .haproxy import RuntimeClient
from .providers import Instance, LaunchTemplate, Provider, validate_pool
from .providers.options import (
    LAUNCH_ARGUMENT_SPEC,
    PROVIDER_ARGUMENT_SPEC,
    launch_spec,
    pool_params,
    provider_from_params,
)
from .server_change import WantedServer, execute_plan, plan_server_change


def entry_params(entry: Mapping[str, Any], state_root: str | None, name: str | None = None) -> dict[str, Any]:
    """The parameters ``pool_instance`` has when a task gives it only the pool's entry (its
    provider and launch options come from the entry) and the state root."""
    params: dict[str, Any] = dict.fromkeys((*PROVIDER_ARGUMENT_SPEC, *LAUNCH_ARGUMENT_SPEC))
    params.update(pool=dict(entry), state_dir=state_root, name=name)
    return pool_params(params)


def provider_for(entry: Mapping[str, Any], state_root: str | None) -> Provider:
    """The provider of a pool entry, as a module given the entry builds it (no task options)."""
    return provider_from_params(entry_params(entry, state_root))


def launch_from_template(
    provider: Provider, entry: Mapping[str, Any], state_root: str, name: str, template: LaunchTemplate
) -> Instance:
    """Launch host ``name`` of the pool ``entry`` from its baked ``template``, with the launch
    options of the entry (``pool_instance``'s launch, no provisioning). Provider errors raise."""
    spec = replace(launch_spec(entry_params(entry, state_root, name)), template=template)
    return provider.launch(validate_pool(str(entry.get("name") or "")), spec)


def runtime_server_params(
    entry: Mapping[str, Any], check_defaults: Mapping[str, Any], instance: Instance
) -> dict[str, Any]:
    """``haproxy_server``'s parameters for a host launched from a template, as
    ``tasks/register_runtime.yml`` passes them: health-gated (it starts DOWN and takes traffic
    after ``rise`` good checks), checked at ``fastinter`` until then."""
    check = {**check_defaults, **(entry.get("check") or {})}

    def text(key: str) -> str | None:
        value = check.get(key)
        return None if value in (None, "") else str(value)

    return {
        "backend": entry["name"],
        "name": instance.name,
        "address": instance.address,
        "port": instance.port,
        "state": "present",
        "weight": entry.get("weight"),
        "check": bool(check.get("enabled", True)),
        "inter": text("inter"),
        "fastinter": text("fastinter"),
        "downinter": text("fastinter") or text("inter"),
        "rise": check.get("rise"),
        "fall": check.get("fall"),
        "slowstart": text("slowstart"),
    }


def add_at_runtime(
    client: RuntimeClient,
    entry: Mapping[str, Any],
    check_defaults: Mapping[str, Any],
    instance: Instance,
    *,
    weight: int | None = None,
) -> None:
    """``add server`` for ``instance`` (health-gated: it takes traffic after its good checks),
    checked like the configuration's servers; ``weight`` overrides the pool's (0: a warm host)."""
    params = runtime_server_params(entry, check_defaults, instance)
    if weight is not None:
        params["weight"] = weight
    wanted = WantedServer.from_params(params)
    execute_plan(client, plan_server_change(client.get_server(wanted.backend, wanted.name), wanted))


__all__ = ["add_at_runtime", "entry_params", "launch_from_template", "provider_for", "runtime_server_params"]
