"""Module options shared by ``pool_instance`` and ``pool_instance_info`` (and the inventory
plugin): one argument spec for "which provider, with which settings", and the mapping from
those options to :func:`get_provider` settings and a :class:`LaunchSpec`.

Options a provider does not use are ignored (``image`` means nothing to ``local``), so one set
of pool variables can serve every provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import PROVIDER_NAMES, LaunchSpec, Provider, get_provider, provider_class

# Every provider is imported by the package (its registry, PROVIDERS), so AnsiballZ ships them
# all with each module that uses these options.

PROVIDER_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "provider": {"type": "str", "default": "local", "choices": list(PROVIDER_NAMES)},
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

def provider_settings(provider: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``provider`` among ``params`` (unset options are left out; each provider
    class maps its options: ``Provider.OPTIONS`` / ``settings_from_options``)."""
    return provider_class(provider).settings_from_options(params)


def provider_from_params(params: Mapping[str, Any]) -> Provider:
    """A provider for module parameters (``provider``, ``state_dir`` and the settings)."""
    name = str(params.get("provider") or "local")
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
