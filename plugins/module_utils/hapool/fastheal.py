"""The heal watcher's fast path: the first half of heal.yml's replacement, run at once.

When the watcher (``roles/heal_timer/files/heal_watch.py``) sees a server fail, it calls
:func:`fast_heal` before it starts a heal run. For each pool whose launch template has a baked,
current version, the fast path decides exactly as heal.yml does - the same observation
(:func:`observe_heal`: ``show stat``, the provider's instances, the event history) and the same
pure plan (:func:`~.healing.plan_heal`: grace period, circuit breaker, per-run caps, backoff,
the pool's max) - and for each host to replace it:

1. logs the replacement about to be launched (``replace_launch``: the link from the new host to
   the failed one that the backoff and the next run read),
2. launches the new host from the pool's current template (the provider, as ``pool_instance``
   does: no provisioning), and
3. adds it to the balancer through the runtime API, health-gated and checked like the
   configuration's servers (the haproxy role's ``check_defaults`` combined with the pool's
   ``check``, DOWN checks at ``fastinter``), as ``tasks/register_runtime.yml`` does.

It stops there, under the pool lock (a run that holds it wins: the fast path does nothing).
The heal run the watcher starts next finds the new host through the ``replace_launch`` event and
*adopts* it, as it adopts the replacement of a run that was killed after its launch: it takes the
failed host out, destroys it, re-renders the balancers with the hitless reload, waits for UP and
logs the ``replace`` event. So the pool is whole again as soon as the new host passes its first
checks, and everything after that is the ordinary heal run.

Left to heal.yml: pools without a baked template (their hosts are provisioned by Ansible),
``destroy_first`` replacements (the pool is at its max: the failed host must go first, which is a
drain and a re-render) and cleans, servers without a host, unregistered hosts. A launch that
fails is logged as ``replace_failed`` (the backoff counts it) and left to heal.yml.

The watcher reads the pools from the fast-path file heal.yml (every acting playbook) writes
after it validated them (:class:`FastConfig`, ``<state root>/heal/fastpath.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .actions import REPLACE, REPLACE_FAILED, REPLACE_LAUNCH, SCALE_DRAIN
from .baking import current_template
from .errors import HapoolError, InvalidArgumentError
from .events import (
    EVENT_LOG_CORRUPT,
    append_event,
    corrupt_log_event,
    make_event,
    read_events_checked,
)
from .haproxy import RuntimeClient
from .healing import HISTORY_ACTIONS, HealPlan, name_new_replacements, plan_heal
from .launching import add_at_runtime, entry_params, launch_from_template, provider_for, runtime_server_params
from .lock import acquire, release
from .providers import Instance, Provider, validate_pool
from .sizing import leaving_hosts
from .stats import StatRow
from .warm import assign_warm, promote_logged, read_warm, ready_warm, split_rows, split_warm

#: The format of the fast-path file (:class:`FastConfig`).
FAST_CONFIG_VERSION = 1
#: Seconds the fast path's lease lasts (it names its process, so a killed watcher's lease is
#: stale at once).
FAST_LOCK_TTL = 120.0


@dataclass(frozen=True)
class FastConfig:
    """What the fast path needs, as heal.yml wrote it: the balancer's stats socket, the state
    root, the event log, the pool lock, the check options of servers added at runtime and the
    validated entries of the pools with a launch template."""

    socket: str
    state_root: str
    event_log: str
    lock_file: str
    check_defaults: Mapping[str, Any]
    pools: tuple[Mapping[str, Any], ...]
    timeout: float = 5.0

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "the fast-path file") -> FastConfig:
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"{source}: not a JSON object")
        if data.get("version") != FAST_CONFIG_VERSION:
            raise InvalidArgumentError(
                f"{source}: version {data.get('version')!r}, this code reads {FAST_CONFIG_VERSION}"
            )
        for key in ("socket", "state_root", "event_log", "lock_file"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise InvalidArgumentError(f"{source}: {key} must be a non-empty string")
        checks = data.get("check_defaults")
        checks = {} if checks is None else checks
        pools = data.get("pools")
        if not isinstance(checks, Mapping):
            raise InvalidArgumentError(f"{source}: check_defaults must be an object")
        if not isinstance(pools, list) or not all(isinstance(p, Mapping) and p.get("name") for p in pools):
            raise InvalidArgumentError(f"{source}: pools must be a list of pool entries with a name")
        timeout = data.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidArgumentError(f"{source}: timeout must be a positive number")
        return cls(
            socket=data["socket"],
            state_root=data["state_root"],
            event_log=data["event_log"],
            lock_file=data["lock_file"],
            check_defaults=dict(checks),
            pools=tuple(dict(p) for p in pools),
            timeout=float(timeout),
        )

    @classmethod
    def load(cls, path: str) -> FastConfig:
        """Read the fast-path file; a missing, unreadable or malformed file is an
        :class:`InvalidArgumentError` naming it."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(f"cannot read the fast-path file {path}: {exc}") from exc
        return cls.from_dict(data, source=path)


@dataclass
class Observed:
    """What :func:`observe_heal` saw of a pool and decided."""

    plan: HealPlan
    instances: list[Instance]
    log_events: list[dict[str, Any]]  # event_log_corrupt, once per set of bad lines
    warning: str | None = None
    warm: list[str] = field(default_factory=list)  # the pool's warm hosts (not in the plan)


def observe_heal(
    entry: Mapping[str, Any],
    client: RuntimeClient,
    provider: Provider,
    event_log: str | None,
    now: float,
    *,
    state_root: str | None = None,
) -> Observed:
    """heal.yml's observation and decision for one pool (module ``heal_plan`` and the fast path):
    the servers of ``show stat``, the provider's instances and the event history, then
    :func:`plan_heal` with the replacements named."""
    pool = validate_pool(str(entry.get("name") or ""))
    rows: list[StatRow] = [row for row in client.show_stat(pool) if row.is_server]
    history: list[dict[str, Any]] = []
    log_events: list[dict[str, Any]] = []
    warning = None
    if event_log:
        checked = read_events_checked(
            event_log, pool=pool, actions=(*HISTORY_ACTIONS, SCALE_DRAIN, EVENT_LOG_CORRUPT)
        )
        history = checked.events
        if checked.skipped:
            warning = checked.warning(event_log)
            corrupt = corrupt_log_event(checked, pool=pool, now=now, history=history)
            log_events += [corrupt] if corrupt is not None else []
    leaving = leaving_hosts(history)
    replaced = [e for e in history if e.get("action") in HISTORY_ACTIONS]
    everything = provider.list(pool)
    # Warm hosts (hapool.warm) are no members: the plan never sees them; the ready ones are
    # named as the replacements, promoted instead of a launch.
    warm_names = read_warm(state_root, pool) if state_root else {}
    instances, warm_instances = split_warm(everything, warm_names)
    member_rows, warm_rows = split_rows(rows, warm_names, key=lambda r: r.server)
    plan = plan_heal(entry, member_rows, instances, replaced, now, leaving=leaving)
    ready = ready_warm(warm_instances, warm_rows)
    if ready:
        plan = dataclasses.replace(plan, decisions=tuple(assign_warm(plan.decisions, ready)))
    taken = provider.ledger.used(pool) | {i.name for i in everything}
    plan = name_new_replacements(plan, taken, provider.rng)
    return Observed(plan, everything, log_events, warning, sorted(warm_names))


@dataclass
class FastReplacement:
    """One host the fast path replaced (or tried to)."""

    pool: str
    name: str  # the failed host
    replacement: str
    reason: str
    started: float
    launched: float | None = None  # the launch returned
    registered: float | None = None  # added to the balancer
    template: str | None = None
    error: str | None = None
    promoted: bool = False  # a warm host taken into service, not a launch


@dataclass
class FastResult:
    """What :func:`fast_heal` did: ``locked`` names the holder when another run held the pool
    lock (nothing done); ``skipped`` says why a pool was left to heal.yml."""

    run: str
    locked: str | None = None
    replaced: list[FastReplacement] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fast_heal(
    config: FastConfig,
    *,
    now: float | None = None,
    by: str = "watcher",
    clock: Any = time.time,
) -> FastResult:
    """Launch and register the replacements heal.yml would make for the pools with a baked
    template, under the pool lock; the heal run that follows adopts them (module docstring)."""
    run = f"fast-{secrets.token_hex(4)}"
    result = FastResult(run=run)
    owner = f"{by}-{run}"
    lease = acquire(config.lock_file, owner, FAST_LOCK_TTL, clock(), holder_pid=os.getpid())
    if not lease.acquired:
        result.locked = lease.holder
        return result
    try:
        client = RuntimeClient(config.socket, timeout=config.timeout)
        for entry in config.pools:
            pool = str(entry.get("name"))
            try:
                _fast_pool(entry, config, client, result, by=by, now=now, clock=clock)
            except HapoolError as exc:
                result.errors[pool] = str(exc)
    finally:
        release(config.lock_file, owner)
    return result


def _fast_pool(
    entry: Mapping[str, Any],
    config: FastConfig,
    client: RuntimeClient,
    result: FastResult,
    *,
    by: str,
    now: float | None,
    clock: Any,
) -> None:
    pool = str(entry.get("name"))
    template = current_template(entry, config.state_root)
    if template is None:
        result.skipped[pool] = "no baked template version (heal.yml launches and provisions)"
        return
    with provider_for(entry, config.state_root) as provider:
        observed = observe_heal(
            entry,
            client,
            provider,
            config.event_log,
            clock() if now is None else now,
            state_root=config.state_root,
        )
        todo = [
            d
            for d in observed.plan.decisions
            if d.action == REPLACE and not d.adopt and not d.destroy_first and d.replacement
        ]
        left = [d.name for d in observed.plan.decisions if d.action == REPLACE and d not in todo]
        if left:
            result.skipped[pool] = f"left to heal.yml: {', '.join(sorted(left))} (adopt or destroy first)"
        for decision in todo:
            assert decision.replacement is not None
            started = clock()
            item = FastReplacement(pool, decision.name, decision.replacement, decision.reason, started)
            result.replaced.append(item)
            append_event(
                config.event_log,
                make_event(
                    time=started,
                    pool=pool,
                    action=REPLACE_LAUNCH,
                    instance=decision.name,
                    reason=decision.reason,
                    replacement=decision.replacement,
                    age=None if decision.age is None else round(decision.age, 3),
                    run=result.run,
                    by=by,
                    promote=decision.promote or None,
                ),
            )
            if decision.promote:
                # a warm host: out of the warm file, then its weight (a runtime change)
                item.error = promote_warm(
                    client, config, entry, decision.replacement, item, reason=f"replaces {decision.name}",
                    run=result.run, by=by, clock=clock,
                )
                continue
            try:
                instance = launch_from_template(
                    provider, entry, config.state_root, decision.replacement, template
                )
            except HapoolError as exc:
                item.error = f"launch failed: {exc}"
                append_event(
                    config.event_log,
                    make_event(
                        time=clock(),
                        pool=pool,
                        action=REPLACE_FAILED,
                        instance=decision.name,
                        reason=str(exc),
                        started=round(started, 3),
                        run=result.run,
                        by=by,
                    ),
                )
                continue
            item.launched = clock()
            item.template = template.version
            item.error = register_launched(client, entry, config.check_defaults, instance)
            if item.error is None:
                item.registered = clock()


def promote_warm(
    client: RuntimeClient,
    config: FastConfig,
    entry: Mapping[str, Any],
    name: str,
    item: Any,
    *,
    reason: str,
    run: str,
    by: str,
    clock: Any,
) -> str | None:
    """Promote warm host ``name`` for a fast path (heal or scale-out: ``item`` is its
    FastReplacement or FastLaunch, given its times and ``promoted``) and log ``warm_promote``;
    the error when it could not be promoted (None: done)."""
    pool = str(entry.get("name"))
    try:
        event = promote_logged(
            client, config.state_root, pool, name, int(entry.get("weight") or 1), started=item.started,
            reason=reason, clock=clock, run=run, by=by,
        )
    except HapoolError as exc:
        return f"promotion failed: {exc}"
    if event is None:
        return f"{name} is no longer a warm host"
    item.launched = item.registered = float(event["time"])
    item.promoted = True
    append_event(config.event_log, event)
    return None


def register_launched(
    client: RuntimeClient, entry: Mapping[str, Any], check_defaults: Mapping[str, Any], instance: Instance
) -> str | None:
    """Add a host launched from the template at runtime; the error when the balancer refused (the
    run that adopts the host registers it all the same, with its re-render)."""
    try:
        add_at_runtime(client, entry, check_defaults, instance)
    except HapoolError as exc:
        return f"launched, not registered at runtime: {exc}"
    return None


__all__ = [
    "FAST_CONFIG_VERSION",
    "FastConfig",
    "FastReplacement",
    "FastResult",
    "Observed",
    "entry_params",
    "fast_heal",
    "observe_heal",
    "promote_warm",
    "provider_for",
    "register_launched",
    "runtime_server_params",
]
