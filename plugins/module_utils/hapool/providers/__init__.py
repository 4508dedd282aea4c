"""Providers: create, list and destroy the web hosts of a pool.

A *pool* is hapool's Auto Scaling Group + target group; its web hosts are *instances*. A
provider is the thing that launches and terminates instances:

- ``local``   — an nginx process on this machine per instance (no Docker needed; the default);
- ``docker``  — a container per instance, through the Docker SDK;
- ``vagrant`` — a Vagrant machine per instance (Vagrant's docker provider here, libvirt or
  VirtualBox for real VMs), through python-vagrant.

Every provider implements :class:`Provider`: ``list``, ``get``, ``launch``, ``destroy``, and
``cpu_seconds`` (the CPU time each host consumed so far; :func:`cpu_percent` and
:func:`sample_cpu_percent` turn two samples into percent of one core). Their state lives on
disk or in the engine, so a new provider object (a new process, after a controller restart)
finds the instances again.

This package is stdlib-only at import time. The docker SDK and python-vagrant are imported
lazily by the provider that needs them; a missing SDK is a :class:`ProviderUnavailableError`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import fcntl
import importlib
import inspect
import json
import math
import os
import pathlib
import random
import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from ..errors import HapoolError

PROVIDER_NAMES: tuple[str, ...] = ("local", "docker", "vagrant")
DEFAULT_IMAGE = "hapool/base:bookworm"
DEFAULT_NETWORK = "hapool"

POOL_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME_SUFFIX_BITS = 24  # 6 hex digits: web-3f9a2c

#: Instance states. ``running`` is the only one where ``alive`` is true.
RUNNING = "running"
STOPPED = "stopped"  # the process / container / machine exists but does not run
MISSING = "missing"  # recorded in the provider's state, but nothing exists behind it
BROKEN = "broken"  # the provider's own record is unreadable
DESTROYED = "destroyed"  # returned by destroy()


# --- errors -------------------------------------------------------------------------------------


class ProviderError(HapoolError):
    """A provider could not do what was asked (the message says what and what to do)."""


class ProviderUnavailableError(ProviderError):
    """The provider cannot work at all here: engine down, binary or Python SDK missing."""


class ImageNotFoundError(ProviderError):
    """The image of a pool is not on the engine (hapool never pulls: build it locally)."""


class InstanceNotFoundError(ProviderError):
    """No instance of that name in the pool."""


class InvalidNameError(ProviderError, ValueError):
    """A pool or instance name is not safe for every provider (files, containers, Ruby)."""


class NameReusedError(ProviderError):
    """An instance name was used before in the pool; names are never reused."""


class OrphanError(ProviderError):
    """A launch failed *and* its clean-up failed: something is left; the message names it."""

    def __init__(self, message: str, orphan: str) -> None:
        self.orphan = orphan
        super().__init__(message)


# --- data ---------------------------------------------------------------------------------------


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
    """

    name: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: int | str | None = None
    box: str | None = None


# --- validation and names ----------------------------------------------------------------------


def validate_pool(pool: str) -> str:
    if not isinstance(pool, str) or not POOL_RE.match(pool):
        raise InvalidNameError(
            f"invalid pool name {pool!r}: use 1-32 characters, a lowercase letter first, then "
            "lowercase letters, digits or '_' (it names groups, containers and directories)"
        )
    return pool


def validate_instance_name(name: str) -> str:
    if not isinstance(name, str) or not INSTANCE_RE.match(name):
        raise InvalidNameError(
            f"invalid instance name {name!r}: use 1-63 characters: lowercase letters, digits, "
            "'-' or '_', a letter or digit first"
        )
    return name


def new_instance_name(pool: str, rng: random.Random, taken: Collection[str] = ()) -> str:
    """A new instance name ``<pool>-<6 hex digits>`` that is not in ``taken``.

    ``rng`` is passed in (tests use a seeded ``random.Random``; providers default to
    ``random.SystemRandom()``). ``taken`` holds every name the pool ever used (see
    :class:`NameLedger`), so names are never reused, like cloud instance ids.
    """
    validate_pool(pool)
    space = 1 << NAME_SUFFIX_BITS
    if len(taken) >= space // 2:
        raise ProviderError(f"pool {pool!r} has used up its instance names ({len(taken)} taken)")
    for _ in range(10_000):
        name = f"{pool}-{rng.getrandbits(NAME_SUFFIX_BITS):06x}"
        if name not in taken:
            return name
    raise ProviderError(f"could not find an unused instance name for pool {pool!r}")


# --- on-disk state helpers ----------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive advisory lock (flock) on ``path`` — serialises launches across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_json_atomic(path: pathlib.Path, data: Any) -> None:
    """Write JSON so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: pathlib.Path, default: Any = None) -> Any:
    """Read a JSON file; ``default`` if it does not exist; :class:`ProviderError` if corrupt."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise ProviderError(f"cannot read state file {path}: {exc}") from exc


class NameLedger:
    """Append-only record of every instance name a pool has used (``names`` file, one a line).

    Names are recorded *before* anything is created, so a name is never handed out twice,
    even when a launch fails half-way or the instance was destroyed long ago.
    """

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory

    def path(self, pool: str) -> pathlib.Path:
        return self.directory / "pools" / validate_pool(pool) / "names"

    def used(self, pool: str) -> set[str]:
        try:
            text = self.path(pool).read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    def check_unused(self, pool: str, name: str, live: Collection[str] = ()) -> None:
        """Raise :class:`NameReusedError` when ``name`` was ever used in ``pool``."""
        validate_instance_name(name)
        if name in self.used(pool) or name in live:
            raise NameReusedError(
                f"instance name {name!r} was already used in pool {pool!r}; names are "
                "never reused (omit the name to get a new one)"
            )

    def record(self, pool: str, name: str) -> None:
        path = self.path(pool)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def reserve(
        self, pool: str, rng: random.Random, requested: str | None = None, live: Collection[str] = ()
    ) -> str:
        """Pick (or check) a name and record it. Call with the provider's lock held."""
        used = self.used(pool) | set(live)
        if requested is not None:
            self.check_unused(pool, requested, live)
            name = requested
        else:
            name = new_instance_name(pool, rng, used)
        self.record(pool, name)
        return name


# --- defaults -----------------------------------------------------------------------------------


def default_project_dir(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> pathlib.Path:
    """The hapool checkout a module or plugin works for, when no path is given.

    In order: ``$HAPOOL_PROJECT_DIR``; the directory of ``$ANSIBLE_CONFIG`` (the Makefile and
    the test runner export it; modules on the local connection inherit it); the nearest
    ancestor of the working directory holding an ``ansible.cfg``; the working directory.
    """
    env = os.environ if environ is None else environ
    if env.get("HAPOOL_PROJECT_DIR"):
        return pathlib.Path(env["HAPOOL_PROJECT_DIR"]).resolve()
    if env.get("ANSIBLE_CONFIG"):
        cfg = pathlib.Path(env["ANSIBLE_CONFIG"])
        return (cfg if cfg.is_dir() else cfg.parent).resolve()
    here = pathlib.Path(cwd if cwd is not None else os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "ansible.cfg").is_file():
            return candidate
    return here


def default_state_root(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> pathlib.Path:
    """``$HAPOOL_STATE_DIR``, else ``<project>/.state``. Providers use ``<root>/<provider>``."""
    env = os.environ if environ is None else environ
    if env.get("HAPOOL_STATE_DIR"):
        return pathlib.Path(env["HAPOOL_STATE_DIR"]).resolve()
    return default_project_dir(env, cwd) / ".state"


# --- the interface ------------------------------------------------------------------------------


class Provider(abc.ABC):
    """What every provider implements. Pool and instance names are validated by the caller-facing
    methods; every method raises :class:`ProviderError` subclasses only."""

    #: ``local`` / ``docker`` / ``vagrant``
    name: str = ""
    #: Every name each pool ever used (set by each provider's constructor).
    ledger: NameLedger

    def __init__(self, *, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng: random.Random = rng if rng is not None else random.SystemRandom()

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
        :func:`cpu_percent` and :func:`sample_cpu_percent`.

        This default knows nothing and returns ``None`` for every name; providers that can
        measure override it.
        """
        validate_pool(pool)
        return dict.fromkeys((instance_name(n) for n in names), None)

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release engine connections (docker client); safe to call twice."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def instance_name(instance: Instance | str) -> str:
    return validate_instance_name(instance.name if isinstance(instance, Instance) else instance)


def sort_instances(instances: list[Instance]) -> list[Instance]:
    return sorted(instances, key=lambda i: (i.pool, i.created, i.name))


# --- CPU usage ----------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def cpu_percent(
    before: Mapping[str, float | None], after: Mapping[str, float | None], seconds: float
) -> dict[str, float | None]:
    """CPU usage between two :meth:`Provider.cpu_seconds` samples taken ``seconds`` apart, in
    percent of ONE core (100.0 = one core fully busy; a host keeping two cores busy shows 200.0,
    like ``top``). Pure: the caller measures the elapsed time.

    Every name of either sample is in the result (``before``'s order, then new ones of
    ``after``); it is ``None`` where either sample is missing or ``None``, or where the counter
    went backwards (the host was restarted or replaced between the samples).
    """
    elapsed = _finite(seconds)
    if elapsed is None or elapsed <= 0:
        raise ProviderError(f"cpu_percent needs a positive, finite number of seconds, not {seconds!r}")
    result: dict[str, float | None] = {}
    for name in (*before, *(n for n in after if n not in before)):
        start, end = _finite(before.get(name)), _finite(after.get(name))
        if start is None or end is None or end < start:
            result[name] = None
        else:
            result[name] = (end - start) / elapsed * 100.0
    return result


def sample_cpu_percent(
    provider: Provider,
    pool: str,
    names: Sequence[str],
    interval: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, float | None]:
    """CPU usage of the instances ``names`` of ``pool`` over about ``interval`` seconds, in
    percent of one core (see :func:`cpu_percent`).

    Samples :meth:`Provider.cpu_seconds` twice with ``sleep(interval)`` in between. The elapsed
    time is measured with ``clock`` (monotonic), from the middle of the first sampling call to the
    middle of the second, so the time a sample itself takes (an engine's API) is not mistaken for
    CPU time. When no instance can be read in the first sample it returns at once (all ``None``)
    without sleeping.
    """
    span = _finite(interval)
    if span is None or span <= 0:
        raise ProviderError(f"the sampling interval must be a positive number of seconds, not {interval!r}")
    t0 = clock()
    before = provider.cpu_seconds(pool, names)
    t1 = clock()
    if all(v is None for v in before.values()):
        return dict.fromkeys(before, None)
    sleep(span)
    t2 = clock()
    after = provider.cpu_seconds(pool, names)
    t3 = clock()
    elapsed = ((t2 + t3) - (t0 + t1)) / 2
    if not elapsed > 0:
        raise ProviderError(f"the clock did not advance while sampling CPU usage ({elapsed!r} s)")
    return cpu_percent(before, after, elapsed)


def get_provider(name: str, *, state_root: str | os.PathLike[str] | None = None, **settings: Any) -> Provider:
    """Make a provider from its name and settings (``None`` values mean "the default").

    ``state_root`` (default :func:`default_state_root`) places each provider's state in
    ``<state_root>/<provider>`` unless ``state_dir`` / ``vagrant_dir`` is given explicitly.
    Unknown settings are an error, so a typo in a playbook does not pass silently.
    """
    if name not in PROVIDER_NAMES:
        raise ProviderError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDER_NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    cls: type[Provider] = module.PROVIDER_CLASS
    settings = {k: v for k, v in settings.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ProviderError(
            f"unknown setting(s) for the {name} provider: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(accepted))})"
        )
    dir_setting = "vagrant_dir" if name == "vagrant" else "state_dir"
    if dir_setting not in settings:
        root = pathlib.Path(state_root) if state_root is not None else default_state_root()
        settings[dir_setting] = str(root / name)
    return cls(**settings)


__all__ = [
    "BROKEN",
    "DEFAULT_IMAGE",
    "DEFAULT_NETWORK",
    "DESTROYED",
    "MISSING",
    "PROVIDER_NAMES",
    "RUNNING",
    "STOPPED",
    "ImageNotFoundError",
    "Instance",
    "InstanceNotFoundError",
    "InvalidNameError",
    "LaunchSpec",
    "NameLedger",
    "NameReusedError",
    "OrphanError",
    "Provider",
    "ProviderError",
    "ProviderUnavailableError",
    "cpu_percent",
    "default_project_dir",
    "default_state_root",
    "file_lock",
    "get_provider",
    "new_instance_name",
    "read_json",
    "sample_cpu_percent",
    "validate_instance_name",
    "validate_pool",
    "write_json_atomic",
]
