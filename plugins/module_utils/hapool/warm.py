"""Warm pools (AWS Auto Scaling warm pools): hosts launched ahead of need from a pool's current
launch template, registered in the balancer and health-checked, taking no traffic.

A pool entry's ``warm: {size: N}`` (it needs ``template.enabled``) keeps N such hosts. A warm host
is an instance of the pool whose name is in the pool's warm file,
``<state root>/warm/<pool>.json``; in HAProxy it is a server of the pool's backend with weight
0 (UP, checked, no new session). It is not a member of the pool: it counts neither toward
``desired`` nor toward ``max``, heal.yml does not replace it, scale.yml does not remove it
(``sizing``'s rule, applied by :func:`split_warm` before the plans).

* **promotion** (:func:`promote`): heal.yml (or the watcher's fast path) replaces a failed host
  and scale.yml adds capacity by taking a warm host that HAProxy reports UP: its name leaves the
  warm file first, then its weight is set to the pool's (a runtime change: milliseconds). The
  heal plan names the warm host as the replacement (:func:`assign_warm`), so the
  ``replace_launch`` link and adoption work as for a launched host.
* **refill** (:func:`plan_refill`, :func:`refill`): after a run acted, warm hosts that are dead,
  DOWN past the pool's grace period or behind the pool's current template version are taken out
  and destroyed, and new ones are launched from the current version up to ``size``: each name is
  written to the warm file before its launch (a run killed after the launch leaves a warm host,
  never an extra member), then it is added at runtime with weight 0, health-gated.

Writers hold the pool lock (heal.yml, scale.yml, site.yml, the fast path); the file is replaced
atomically. Stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

from .errors import HapoolError, InvalidArgumentError
from .events import make_event
from .files import atomic_write
from .launching import add_at_runtime, launch_from_template
from .providers import validate_pool
from .providers.names import new_instance_name
from .server_change import WantedServer, execute_plan, plan_server_change

WARM_FILE_VERSION = 1


class WarmError(HapoolError):
    """A warm file that cannot be read or written."""


class Named(Protocol):
    @property
    def name(self) -> str: ...


class WarmInstance(Named, Protocol):
    @property
    def alive(self) -> bool: ...

    @property
    def created(self) -> float: ...

    @property
    def extra(self) -> Mapping[str, Any]: ...


class WarmRow(Protocol):
    @property
    def server(self) -> str: ...

    @property
    def status_class(self) -> str: ...


N = TypeVar("N", bound=Named)
R = TypeVar("R")


def warm_size(entry: Mapping[str, Any]) -> int:
    """The pool entry's warm pool size (0 without ``warm``); a bad value is an error."""
    warm = entry.get("warm")
    if warm is None:
        return 0
    if not isinstance(warm, Mapping):
        what = f"pool {entry.get('name')}: warm"
        raise InvalidArgumentError(f"{what} must be a dict like {{size: 1}}, not {warm!r}")
    size = warm.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        what = f"pool {entry.get('name')}: warm.size"
        raise InvalidArgumentError(f"{what} must be a whole number >= 0, not {size!r}")
    return size


def warm_path(state_root: str | os.PathLike[str], pool: str) -> str:
    return os.path.join(os.fspath(state_root), "warm", f"{validate_pool(pool)}.json")


def read_warm(state_root: str | os.PathLike[str], pool: str) -> dict[str, dict[str, Any]]:
    """name -> {since, template} of the pool's warm hosts ({} without a file). A file that is not
    the format this code writes is a :class:`WarmError` naming it: nothing acts on it."""
    path = warm_path(state_root, pool)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise WarmError(f"cannot read the warm file {path}: {exc}") from exc
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("version") != WARM_FILE_VERSION
        or not isinstance(hosts, dict)
        or not all(isinstance(k, str) and isinstance(v, dict) for k, v in hosts.items())
    ):
        what = f"the warm file {path}"
        raise WarmError(f"{what} is not a version {WARM_FILE_VERSION} warm file: {str(data)[:200]}")
    return {str(k): dict(v) for k, v in hosts.items()}


def write_warm(state_root: str | os.PathLike[str], pool: str, hosts: Mapping[str, Mapping[str, Any]]) -> None:
    path = warm_path(state_root, pool)
    data = {"version": WARM_FILE_VERSION, "pool": pool, "hosts": dict(hosts)}
    text = json.dumps(data, indent=2, sort_keys=True)
    try:
        atomic_write(path, text + "\n", mode=0o644)
    except OSError as exc:
        raise WarmError(f"cannot write the warm file {path}: {exc}") from exc


def split_warm(items: Sequence[N], warm: Collection[str]) -> tuple[list[N], list[N]]:
    """(members, warm ones) of instances or anything with a ``name``."""
    return [i for i in items if i.name not in warm], [i for i in items if i.name in warm]


def split_rows(rows: Sequence[R], warm: Collection[str], key: Callable[[R], str]) -> tuple[list[R], list[R]]:
    """(member rows, warm rows) of ``show stat`` server rows."""
    return [r for r in rows if key(r) not in warm], [r for r in rows if key(r) in warm]


def ready_warm(
    warm_instances: Sequence[WarmInstance], rows: Sequence[WarmRow], *, version: str | None = None
) -> list[str]:
    """The warm hosts a promotion may take, oldest first: alive, UP in HAProxy and (given a
    ``version``) launched from it."""
    status = {r.server: r.status_class for r in rows}
    ready = [
        i
        for i in warm_instances
        if i.alive and status.get(i.name) == "UP" and (version is None or i.extra.get("template") == version)
    ]
    return [i.name for i in sorted(ready, key=lambda i: (i.created, i.name))]


def assign_warm(decisions: Sequence[Any], ready: Sequence[str]) -> list[Any]:
    """The heal plan's decisions with the ready warm hosts named as the replacements of the
    hosts to replace (not adopted, not cleaned), in order, ``promote`` set. ``decisions`` are
    :class:`~.healing.Decision` (``dataclasses.replace`` works on them)."""
    left = list(ready)
    out = []
    for decision in decisions:
        if left and decision.action == "replace" and not decision.adopt:
            out.append(replace(decision, replacement=left.pop(0), promote=True))
        else:
            out.append(decision)
    return out


@dataclass(frozen=True)
class RefillPlan:
    """What a refill does: ``remove`` (name -> why: dead, DOWN past the grace period, behind the
    current version, or in the file without a live server to trust), ``prune`` (names in the
    warm file without an instance: a launch that never happened) and ``launch`` (how many)."""

    pool: str
    size: int
    version: str | None
    warm: tuple[str, ...]
    remove: dict[str, str] = field(default_factory=dict)
    prune: tuple[str, ...] = ()
    launch: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_refill(
    pool: str,
    size: int,
    warm_file: Mapping[str, Mapping[str, Any]],
    instances: Sequence[WarmInstance],
    rows: Sequence[WarmRow],
    *,
    version: str | None,
    now: float,
    grace_period: float,
) -> RefillPlan:
    """Which warm hosts to remove and how many to launch (pure; module docstring). Without a
    current ``version`` (no baked template), nothing is launched: warm hosts need a template."""
    by_name = {i.name: i for i in instances}
    status = {r.server: r.status_class for r in rows}
    prune = tuple(sorted(n for n in warm_file if n not in by_name))
    remove: dict[str, str] = {}
    for name in sorted(n for n in warm_file if n in by_name):
        inst = by_name[name]
        if not inst.alive:
            remove[name] = "dead"
        elif status.get(name) == "DOWN" and now - inst.created > grace_period:
            remove[name] = f"DOWN past its grace period ({grace_period:g} s)"
        elif version is not None and inst.extra.get("template") != version:
            remove[name] = f"behind the current version {version} (runs {inst.extra.get('template')})"
    kept = [n for n in warm_file if n in by_name and n not in remove]
    launch = max(0, size - len(kept)) if version is not None else 0
    extra = len(kept) - size
    if extra > 0:  # the size went down: the newest go first
        for name in sorted(kept, key=lambda n: (-by_name[n].created, n))[:extra]:
            remove[name] = f"over the warm pool's size ({size})"
    return RefillPlan(pool, size, version, tuple(sorted(warm_file)), remove, prune, launch)


def promote(client: Any, state_root: str, pool: str, name: str, weight: int) -> bool:
    """Take warm host ``name`` into service: out of the warm file first, then its weight at
    runtime. False when it is not (or no longer) a warm host: nothing done."""
    hosts = read_warm(state_root, pool)
    if name not in hosts:
        return False
    del hosts[name]
    write_warm(state_root, pool, hosts)
    client.set_weight(pool, name, weight)
    return True


def promote_logged(
    client: Any,
    state_root: str,
    pool: str,
    name: str,
    weight: int,
    *,
    started: float,
    reason: str,
    clock: Callable[[], float],
    **extra: Any,
) -> dict[str, Any] | None:
    """:func:`promote`, and its ``warm_promote`` event (``duration`` from ``started``; ``extra``
    fields such as ``run`` and ``by``) for the caller to log; None when ``name`` is not (or no
    longer) a warm host. Errors of the runtime API raise."""
    if not promote(client, state_root, pool, name, weight):
        return None
    at = clock()
    return make_event(
        time=at, pool=pool, action="warm_promote", instance=name, reason=reason, duration=at - started,
        weight=weight, **extra,
    )


@dataclass
class RefillResult:
    """What :func:`refill` did (or, in check mode, would do: ``plan`` only)."""

    plan: RefillPlan
    removed: list[str] = field(default_factory=list)
    launched: list[dict[str, Any]] = field(default_factory=list)  # name, address, port, template, seconds
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why a launch failed (the refill ended there)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.launched or self.plan.prune or self.error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.as_dict(),
            "removed": self.removed,
            "launched": self.launched,
            "events": self.events,
            "changed": self.changed,
            "error": self.error,
        }


def refill(
    entry: Mapping[str, Any],
    provider: Any,
    client: Any,
    *,
    state_root: str,
    check_defaults: Mapping[str, Any],
    template: Any,
    grace_period: float,
    now: float,
    clock: Callable[[], float],
    check_mode: bool = False,
) -> RefillResult:
    """Plan the pool's refill (:func:`plan_refill`) and do it (module docstring): take out and
    destroy the warm hosts to remove, drop pruned names, launch the missing ones from
    ``template`` (a :class:`~.providers.LaunchTemplate`; None: nothing is launched) and add them
    at runtime with weight 0. Returns the events to log (``warm_remove``, ``warm_launch``,
    ``warm_launch_failed``: a launch that failed ends the refill)."""
    pool = validate_pool(str(entry.get("name") or ""))
    size = warm_size(entry)
    hosts = read_warm(state_root, pool)
    instances = provider.list(pool)
    rows = [r for r in client.show_stat(pool) if r.is_server]
    version = None if template is None else template.version
    plan = plan_refill(
        pool, size, hosts, instances, rows, version=version, now=now, grace_period=grace_period
    )
    result = RefillResult(plan)
    if check_mode:
        return result
    by_name = {i.name: i for i in instances}
    in_balancer = {r.server for r in rows}
    for name, why in plan.remove.items():
        if name in in_balancer:
            gone = WantedServer.from_params(
                {"backend": pool, "name": name, "state": "absent", "force": True, "drain_timeout": 0}
            )
            execute_plan(client, plan_server_change(client.get_server(pool, name), gone))
        provider.destroy(pool, by_name[name])
        hosts.pop(name, None)
        write_warm(state_root, pool, hosts)
        result.removed.append(name)
        result.events.append(
            make_event(time=clock(), pool=pool, action="warm_remove", instance=name, reason=why)
        )
    if plan.prune:
        for name in plan.prune:
            hosts.pop(name, None)
        write_warm(state_root, pool, hosts)
    taken = set(provider.ledger.used(pool)) | set(by_name)
    for _ in range(plan.launch):
        started = clock()
        name = new_instance_name(pool, provider.rng, taken)
        taken.add(name)
        hosts[name] = {"since": round(started, 3), "template": version}
        write_warm(state_root, pool, hosts)  # before the launch: a killed run leaves a warm host
        try:
            inst = launch_from_template(provider, entry, state_root, name, template)
            add_at_runtime(client, entry, check_defaults, inst, weight=0)
        except HapoolError as exc:
            # logged; the refill ends here and the next run tries again (the name is pruned when
            # no instance came of it)
            result.error = str(exc)
            event = make_event(
                time=clock(), pool=pool, action="warm_launch_failed", instance=name, reason=str(exc)
            )
            result.events.append(event)
            break
        seconds = round(clock() - started, 3)
        result.launched.append(
            {
                "name": inst.name,
                "address": inst.address,
                "port": inst.port,
                "template": version,
                "seconds": seconds,
            }
        )
        result.events.append(
            make_event(
                time=clock(),
                pool=pool,
                action="warm_launch",
                instance=inst.name,
                reason=f"warm pool of {size}",
                duration=seconds,
                template=version,
            )
        )
    return result


__all__ = [
    "WARM_FILE_VERSION",
    "RefillPlan",
    "RefillResult",
    "WarmError",
    "assign_warm",
    "plan_refill",
    "promote",
    "promote_logged",
    "read_warm",
    "ready_warm",
    "refill",
    "split_rows",
    "split_warm",
    "warm_path",
    "warm_size",
    "write_warm",
]
