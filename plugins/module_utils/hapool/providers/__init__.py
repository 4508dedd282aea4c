"""Providers: create, list and destroy the web hosts of a pool.

A *pool* is hapool's Auto Scaling Group + target group; its web hosts are *instances*. A
provider is the thing that launches and terminates instances:

- ``local``   — an nginx process on this machine per instance (no Docker needed; the default);
- ``docker``  — a container per instance, through the Docker SDK;
- ``vagrant`` — a Vagrant machine per instance (Vagrant's docker provider here, libvirt or
  VirtualBox for real VMs), through python-vagrant.

Their state lives on disk or in the engine, so a new provider object (a new process, after a
controller restart) finds the instances again. This package is stdlib-only at import time: the
docker SDK and python-vagrant are imported lazily by the provider that needs them; a missing SDK
is a :class:`ProviderUnavailableError`.

The package, by concern (this file keeps only the registry, the factory and the re-exports that
callers import from ``hapool.providers``):

- ``base.py``       — :class:`Provider` (the interface), :class:`Instance`, :class:`LaunchSpec`,
  the instance states;
- ``names.py``      — pool / instance name validation, :func:`new_instance_name`, :class:`NameLedger`;
- ``state.py``      — the state lock, JSON state files (atomic), default project and state paths;
- ``cpu.py``        — :func:`cpu_percent`, :func:`sample_cpu_percent`;
- ``procfs.py``     — the one ``/proc/<pid>/stat`` reader and process helpers (this machine);
- ``net.py``        — :func:`.net.wait_tcp` (a host's web server accepts connections);
- ``containers.py`` — what providers of Docker containers share (SDK import, cgroup/stats CPU,
  hung main process);
- ``options.py``    — the module options that choose and configure a provider;
- ``local.py``, ``docker.py``, ``vagrant.py`` — one file per provider. Errors are in
  ``hapool/errors.py``.

How to add a provider — one file plus tests:

1. Write ``providers/<name>.py`` with a subclass of :class:`Provider`. Set ``name = "<name>"``;
   its constructor takes the state directory (``state_dir``, or set ``state_dir_setting`` to
   the argument's name) and keyword-only settings, and calls
   ``super().__init__(state_dir, clock=clock, rng=rng)`` (which sets ``self.state_dir`` and the
   names ledger ``self.ledger``: reserve each new name with ``self.ledger.reserve``).

   Must implement: ``list(pool=None)``, ``launch(pool, spec=None)``, ``destroy(pool, instance)``
   (see :class:`Provider` for what each returns and guarantees). May override: ``get``
   (default: scans ``list``), ``cpu_seconds`` (default: ``None`` for every name), ``close``.
   Raise ``hapool.errors.ProviderError`` subclasses only. Reuse the shared modules above;
   never import another provider's module. Map the module options it understands to its
   settings in ``OPTIONS`` (override ``settings_from_options`` for anything else).
2. Register the class in :data:`PROVIDERS` below (one import, one entry): ``get_provider``,
   the modules' ``provider`` choices and the inventory plugin read it from there.
3. Add ``tests/unit/test_providers_<name>.py`` (no engine) and an integration or e2e test
   against the real engine; ``tests/unit/test_providers_core.py`` already checks every
   registered provider's options map to real settings.

A module option the existing ones do not cover also needs an entry in
``options.PROVIDER_ARGUMENT_SPEC``, in the modules' documentation and among the pool
validator's ``launch`` keys (``pools.py``); the playbooks pass the pool entry, and
``options.pool_params`` takes every option of its ``launch`` from it.
"""

from __future__ import annotations

import inspect
import os
import pathlib
from typing import Any

from ..errors import (
    ImageNotFoundError,
    InstanceNotFoundError,
    InvalidNameError,
    NameReusedError,
    OrphanError,
    ProviderError,
    ProviderUnavailableError,
)
from .base import (
    BROKEN,
    DESTROYED,
    MISSING,
    RUNNING,
    STOPPED,
    Instance,
    LaunchSpec,
    LaunchTemplate,
    Provider,
    sort_instances,
)
from .containers import DEFAULT_IMAGE, DEFAULT_NETWORK
from .cpu import cpu_percent, sample_cpu_percent
from .docker import DockerProvider
from .local import LocalProvider
from .names import (
    INSTANCE_RE,
    NAME_SUFFIX_BITS,
    POOL_RE,
    NameLedger,
    instance_name,
    new_instance_name,
    validate_instance_name,
    validate_pool,
)
from .state import default_project_dir, default_state_root, file_lock, read_json, write_json_atomic
from .vagrant import VagrantProvider

#: The registry: provider name -> class. A new provider is one entry here (see above).
PROVIDERS: dict[str, type[Provider]] = {
    cls.name: cls for cls in (LocalProvider, DockerProvider, VagrantProvider)
}
PROVIDER_NAMES: tuple[str, ...] = tuple(PROVIDERS)


def provider_class(name: str) -> type[Provider]:
    """The registered class of provider ``name``; :class:`ProviderError` for an unknown name."""
    cls = PROVIDERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProviderError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDERS)}")
    return cls


def get_provider(name: str, *, state_root: str | os.PathLike[str] | None = None, **settings: Any) -> Provider:
    """Make a provider from its name and settings (``None`` values mean "the default").

    ``state_root`` (default :func:`default_state_root`) places each provider's state in
    ``<state_root>/<provider>`` unless its state directory setting (``state_dir``, or the
    class's ``state_dir_setting``: ``vagrant_dir``) is given explicitly. Unknown settings are an
    error, so a typo in a playbook does not pass silently.
    """
    cls = provider_class(name)
    settings = {k: v for k, v in settings.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ProviderError(
            f"unknown setting(s) for the {name} provider: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(accepted))})"
        )
    if cls.state_dir_setting not in settings:
        root = pathlib.Path(state_root) if state_root is not None else default_state_root()
        settings[cls.state_dir_setting] = str(root / name)
    return cls(**settings)


__all__ = [
    "BROKEN",
    "DEFAULT_IMAGE",
    "DEFAULT_NETWORK",
    "DESTROYED",
    "INSTANCE_RE",
    "MISSING",
    "NAME_SUFFIX_BITS",
    "POOL_RE",
    "PROVIDERS",
    "PROVIDER_NAMES",
    "RUNNING",
    "STOPPED",
    "DockerProvider",
    "ImageNotFoundError",
    "Instance",
    "InstanceNotFoundError",
    "InvalidNameError",
    "LaunchSpec",
    "LaunchTemplate",
    "LocalProvider",
    "NameLedger",
    "NameReusedError",
    "OrphanError",
    "Provider",
    "ProviderError",
    "ProviderUnavailableError",
    "VagrantProvider",
    "cpu_percent",
    "default_project_dir",
    "default_state_root",
    "file_lock",
    "get_provider",
    "instance_name",
    "new_instance_name",
    "provider_class",
    "read_json",
    "sample_cpu_percent",
    "sort_instances",
    "validate_instance_name",
    "validate_pool",
    "write_json_atomic",
]
