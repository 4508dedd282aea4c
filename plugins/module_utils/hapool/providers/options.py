"""Module options shared by ``pool_instance``, ``pool_instance_info``, the plan modules (and the
inventory plugin): one argument spec for "which provider, with which settings", the pool entry
that fills them in (:func:`pool_params`), and the mapping from those options to
:func:`get_provider` settings and a :class:`LaunchSpec`.

Options a provider does not use are ignored (``image`` means nothing to ``local``), so one set
of pool variables can serve every provider; a module given the pool's entry of
``hapool_pools`` takes its ``provider`` and every option of its ``launch`` from it, so a new
provider's options reach the modules without a playbook listing them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidArgumentError
from . import PROVIDER_NAMES, LaunchSpec, Provider, get_provider, provider_class

# Every provider is imported by the package (its registry, PROVIDERS), so AnsiballZ ships them
# all with each module that uses these options.

PROVIDER_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    # No default here: an unset provider is the pool entry's, else DEFAULT_PROVIDER (pool_params).
    "provider": {"type": "str", "choices": list(PROVIDER_NAMES)},
    "state_dir": {"type": "path"},
    "image": {"type": "str"},
    "network": {"type": "str"},
    "docker_host": {"type": "str"},
    "bind_network": {"type": "str"},
    "port": {"type": "int"},
    "vagrant_dir": {"type": "path"},
    "vagrantfile": {"type": "path"},
    "vagrant_backend": {"type": "str", "choices": ["docker", "libvirt", "virtualbox"]},
    "box": {"type": "str"},
    "vm_network": {"type": "str"},
    "start_timeout": {"type": "float"},
}

LAUNCH_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "cpus": {"type": "float"},
    "memory": {"type": "str"},
}

#: The provider when neither the task nor the pool entry names one.
DEFAULT_PROVIDER = "local"

#: The options a pool entry's ``launch`` may set: every provider and launch option but the
#: provider itself and the state directory.
ENTRY_OPTIONS: tuple[str, ...] = tuple(
    key for key in (*PROVIDER_ARGUMENT_SPEC, *LAUNCH_ARGUMENT_SPEC) if key not in ("provider", "state_dir")
)

_TYPES: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "path": lambda value: os.path.expanduser(str(value)),
}


def pool_entry(value: Any) -> dict[str, Any]:
    """A module's ``pool`` option as a pool entry: an entry of ``hapool_pools`` (a mapping with a
    ``name``) as it is, a pool name as ``{"name": name}``; anything else is an
    :class:`InvalidArgumentError`."""
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"pool must be a pool name or the pool's entry of hapool_pools (a dict with a name), "
            f"not {type(value).__name__} {value!r}"
        )
    if not isinstance(value.get("name"), str):
        raise InvalidArgumentError(f"the pool entry has no name: {dict(value)!r}")
    if value.get("launch") is not None and not isinstance(value["launch"], Mapping):
        raise InvalidArgumentError(f"pool {value['name']}: launch must be a dict, not {value['launch']!r}")
    return dict(value)


def _entry_option(pool: str, key: str, value: Any) -> Any:
    spec = {**PROVIDER_ARGUMENT_SPEC, **LAUNCH_ARGUMENT_SPEC}[key]
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean")
        converted = _TYPES[spec.get("type", "str")](value)
    except (TypeError, ValueError) as exc:
        what = f"pool {pool}: launch.{key} {value!r}"
        raise InvalidArgumentError(f"{what} is not a {spec['type']}: {exc}") from exc
    if spec.get("choices") and converted not in spec["choices"]:
        what = f"pool {pool}: launch.{key} {value!r}"
        raise InvalidArgumentError(f"{what} is not one of {', '.join(spec['choices'])}")
    return converted


def pool_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A module's parameters with the pool entry's filled in where the task gives none.

    ``params["pool"]`` is a pool name, the pool's entry of ``hapool_pools`` (see
    :func:`pool_entry`) or ``None`` (no pool). From an entry come its ``provider`` and each option
    of its ``launch`` that is one of :data:`ENTRY_OPTIONS`, converted to the option's type; an
    option the task sets explicitly wins. ``pool`` becomes the pool's name and ``provider`` is
    always set (:data:`DEFAULT_PROVIDER` when neither names one)."""
    entry = pool_entry(params["pool"]) if params.get("pool") is not None else {}
    launch: Mapping[str, Any] = entry.get("launch") or {}
    name = entry.get("name")
    taken = {
        key: _entry_option(str(name), key, launch[key])
        for key in ENTRY_OPTIONS
        if params.get(key) is None and launch.get(key) is not None
    }
    provider = params.get("provider") or entry.get("provider") or DEFAULT_PROVIDER
    return {**params, **taken, "pool": name, "provider": provider}


def provider_settings(provider: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``provider`` among ``params`` (unset options are left out; each provider
    class maps its options: ``Provider.OPTIONS`` / ``settings_from_options``)."""
    return provider_class(provider).settings_from_options(params)


def provider_from_params(params: Mapping[str, Any]) -> Provider:
    """A provider for module parameters (``provider``, ``state_dir`` and the settings)."""
    name = str(params.get("provider") or DEFAULT_PROVIDER)
    return get_provider(name, state_root=params.get("state_dir"), **provider_settings(name, params))


def launch_spec(params: Mapping[str, Any]) -> LaunchSpec:
    return LaunchSpec(
        name=params.get("name"),
        image=params.get("image"),
        cpus=params.get("cpus"),
        memory=params.get("memory"),
        box=params.get("box"),
    )


def view(instance: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields a diff shows (no provider internals)."""
    if not instance:
        return {}
    keys = ("name", "pool", "provider", "address", "port", "state")
    return {k: instance.get(k) for k in keys}
