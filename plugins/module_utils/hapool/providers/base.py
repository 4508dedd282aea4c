"""What every provider is made of: the instance states, :class:`Instance`, :class:`LaunchSpec`
and the :class:`Provider` base class (see this package's docstring for how to add one)."""

from __future__ import annotations

import abc
import dataclasses
import os
import pathlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ProviderError
from .names import NameLedger, instance_name, validate_instance_name, validate_pool

#: Instance states. ``running`` is the only one where ``alive`` is true.
RUNNING = "running"
STOPPED = "stopped"  # the process / container / machine exists but does not run
MISSING = "missing"  # recorded in the provider's state, but nothing exists behind it
BROKEN = "broken"  # the provider's own record is unreadable
DESTROYED = "destroyed"  # returned by destroy()


@dataclasses.dataclass(frozen=True)
class Instance:
    """One web host of a pool, as its provider sees it now."""

    name: str
    pool: str
    provider: str
    address: str  # IPv4 address that HAProxy connects to ("" when the host is not running)
    port: int  # TCP port of its web server (0 when unknown)
    created: float  # epoch seconds of the launch
    state: str = RUNNING
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state == RUNNING

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe dict (what modules return and the inventory plugin uses)."""
        return {
            "name": self.name,
            "pool": self.pool,
            "provider": self.provider,
            "address": self.address,
            "port": self.port,
            "created": self.created,
            "state": self.state,
            "alive": self.alive,
            "extra": dict(self.extra),
        }


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """What to launch (the pool's launch template). ``None`` means the provider's default.

    ``image`` is used by docker and vagrant (docker backend); ``box`` by vagrant VMs;
    ``cpus`` (float, cores) and ``memory`` (bytes, or a string like ``"256m"``) limit a
    container or size a VM; the local provider ignores them.

    ``template`` is a baked launch template (``hapool.templates``): the artefact (a docker image
    reference, or the local provider's template tree) and its version, which the instance
    records (``extra["template"]``). A host launched from a template is ready as it starts: no
    provisioning. Providers that cannot launch from a template refuse one.
    """

    name: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: int | str | None = None
    box: str | None = None
    template: LaunchTemplate | None = None


@dataclasses.dataclass(frozen=True)
class LaunchTemplate:
    """A baked version of a pool's launch template: where its artefact is, and its version."""

    artifact: str  # docker: an image reference; local: the template tree (a directory)
    version: str  # 12 hex digits (hapool.templates.template_version)


def sort_instances(instances: list[Instance]) -> list[Instance]:
    return sorted(instances, key=lambda i: (i.pool, i.created, i.name))


class Provider(abc.ABC):
    """What every provider implements. Pool and instance names are validated by the caller-facing
    methods; every method raises :class:`hapool.errors.ProviderError` subclasses only.

    Must implement: ``list``, ``launch``, ``destroy``. May override: ``get`` (default: a scan
    of ``list``), ``cpu_seconds`` (default: ``None`` for every name), ``close``.
    """

    #: The provider's name in playbooks and in :data:`hapool.providers.PROVIDERS`.
    name: ClassVar[str] = ""
    #: The constructor argument that holds the provider's state directory; :func:`get_provider`
    #: sets it to ``<state_root>/<name>`` when it is not given.
    state_dir_setting: ClassVar[str] = "state_dir"
    #: Module option -> constructor setting (``pool_instance``, ``pool_instance_info``, the
    #: inventory plugin); options a provider does not map are ignored.
    OPTIONS: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        #: Where the provider keeps its state (its lock, its records, the names ledger).
        self.state_dir = pathlib.Path(state_dir).absolute()
        #: Every instance name each pool ever used (``<state_dir>/pools/<pool>/names``).
        self.ledger = NameLedger(self.state_dir)
        self.clock = clock
        self.rng: random.Random = rng if rng is not None else random.SystemRandom()

    @classmethod
    def settings_from_options(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor settings among module ``params`` (:attr:`OPTIONS`; unset left out)."""
        return {setting: params[opt] for opt, setting in cls.OPTIONS.items() if params.get(opt) is not None}

    @abc.abstractmethod
    def list(self, pool: str | None = None) -> list[Instance]:
        """Every instance of ``pool`` (all pools when ``None``), dead ones included, oldest first."""

    def get(self, pool: str, name: str) -> Instance | None:
        """The instance ``name`` of ``pool``, or ``None``."""
        validate_instance_name(name)
        for instance in self.list(pool):
            if instance.name == name:
                return instance
        return None

    @abc.abstractmethod
    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        """Create and start a new instance; return it running (address and port known).

        On failure nothing is left behind; if clean-up fails too, :class:`OrphanError` names
        what is left. ``spec.name`` asks for a given name (never one used before).
        """

    @abc.abstractmethod
    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        """Stop and remove an instance. Returns what was destroyed (state ``destroyed``), or
        ``None`` when there was no such instance (destroy is idempotent)."""

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        """Cumulative CPU time (user + system, in seconds) each instance of ``names`` has used so
        far, by instance name; ``None`` where it cannot be read (no such instance, not running,
        or the provider cannot tell). Only the difference of two samples means something: see
        :func:`.cpu.cpu_percent` and :func:`.cpu.sample_cpu_percent`.

        This default knows nothing and returns ``None`` for every name; providers that can
        measure override it.
        """
        validate_pool(pool)
        return dict.fromkeys((instance_name(n) for n in names), None)

    @property
    def bake_kind(self) -> str | None:
        """How a pool of this provider bakes its launch template (``hapool.baking``): ``"docker"``
        (a build container committed to an image), ``"local"`` (a rendered host tree), or ``None``
        (this default: the provider does not launch from baked templates)."""
        return None

    def template_base(self, spec: LaunchSpec | None = None) -> str:
        """What a pool's launch template is built on, as an exact id (a docker image id, the
        nginx binary's digest): part of the template's version. Providers that cannot launch
        from a baked template (this default) raise :class:`ProviderError`."""
        raise ProviderError(
            f"the {self.name} provider does not launch from baked templates "
            "(local, docker and vagrant's docker backend do)"
        )

    def artifact_exists(self, artifact: str) -> bool:
        """Whether the artefact of a baked template (a docker image reference, a local template
        tree) is still there to launch from. Providers that cannot launch from a baked template
        (this default) raise :class:`ProviderError`."""
        raise ProviderError(
            f"the {self.name} provider does not launch from baked templates "
            "(local, docker and vagrant's docker backend do)"
        )

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release engine connections (docker client); safe to call twice."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
