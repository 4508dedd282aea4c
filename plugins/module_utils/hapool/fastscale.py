"""The scaler's observation, shared by ``scale_plan`` and the watcher's scale-out fast path.

:func:`observe_scale` is what module ``scale_plan`` sees and decides for one pool: HAProxy's
``show stat`` rows, the provider's instances (the warm ones set apart), the CPU samples a
``cpu`` policy needs, the metric files of the ``file`` policies, the protected hosts and the
scaling history of the event log, then the pure :func:`~.scaling.plan_scale`. It also finds the
hosts to *adopt*: hosts the fast path launched (or promoted) and registered at runtime, that
scale.yml has not re-rendered and logged yet (a ``scale_register`` event without a later
``scale_launch``).

:func:`fast_scale` is the scale-out half of ``scale.yml``, run by the heal watcher (every
``--scale-interval`` seconds, and by each tick of the timer) when the timer runs
``reconcile.yml``: for each pool of the fast-path file (pools with a launch template) whose
current version is baked and whose policies need no CPU sample, it plans as ``scale_plan`` does
and, when the plan scales out, under the pool lock and on a plan made again under it:

1. logs the recommendation (when it changed) and the ``scale_out`` decision - its cooldown
   holds from there, for the fast path and scale.yml alike;
2. takes ready warm hosts into service first (a runtime weight change each, ``warm_promote``);
3. launches the other new hosts from the pool's current template, each named before its launch,
   and adds each to the balancer at runtime, health-gated (it serves after its first good
   checks); each one is a ``scale_register`` event (``scale_launch_failed`` when its launch
   failed).

It stops there; the tick the watcher starts next runs ``reconcile.yml``, whose ``scale.yml``
adopts the registered hosts: it re-renders the balancers (the hitless reload), waits for UP and
logs their ``scale_launch`` events, the time from the decision to serving included. Scale-ins
stay with scale.yml (draining takes as long as the sessions do).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .actions import (
    SCALE_LAUNCH,
    SCALE_LAUNCH_FAILED,
    SCALE_OUT,
    SCALE_RECOMMENDATION,
    SCALE_REGISTER,
)
from .baking import current_template
from .errors import HapoolError, MetricFileError
from .events import EventTail, append_event, make_event, read_events
from .fastheal import FAST_LOCK_TTL, promote_warm, register_launched
from .haproxy import RuntimeClient
from .healing import HISTORY_ACTIONS, superseded
from .launching import launch_from_template, provider_for
from .lock import acquire, release
from .providers import Instance, Provider, new_instance_name, sample_cpu_percent, validate_pool
from .scaling import (
    SCALE_EVENTS,
    ScalePlan,
    ScaleSettings,
    loop_items,
    observe,
    parse_desired_file,
    plan_scale,
)
from .sizing import leaving_hosts
from .warm import read_warm, ready_warm, split_rows, split_warm

#: The events the scaler reads: its own and the healer's (superseded hosts).
SCALE_HISTORY = (*SCALE_EVENTS, SCALE_REGISTER, *HISTORY_ACTIONS)


def read_text(path: str, what: str) -> str | None:
    """A file's text, None when it does not exist; any other failure is a MetricFileError."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(65536)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricFileError(f"cannot read the {what} {path}: {exc}") from exc


def read_protected(path: str | None) -> list[str]:
    """The host names of a protect file, one per line (``#`` comments); none when it is missing."""
    if not path:
        return []
    text = read_text(path, "protect file") or ""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def file_values(settings: ScaleSettings) -> dict[str, int | None]:
    """The count of each ``file`` policy's metric file (None: missing or empty, no
    recommendation - an empty file may be caught in the middle of a non-atomic write)."""
    values: dict[str, int | None] = {}
    for policy in settings.policies:
        if policy.kind == "file" and policy.path:
            text = read_text(os.path.expanduser(policy.path), "metric file")
            blank = text is None or not text.strip()
            values[policy.name] = None if blank else parse_desired_file(str(text), policy.path)
    return values


def to_adopt(
    history: Sequence[Mapping[str, Any]], instances: Sequence[Instance], pool: str
) -> list[dict[str, Any]]:
    """The hosts the fast path registered at runtime (``scale_register``) that are alive and
    have no ``scale_launch`` event after their registration: scale.yml re-renders, waits for
    them and logs them. Each: pool, name, started (the scale-out decision), launched,
    promoted, adopted (true)."""
    alive = {i.name for i in instances if i.alive}
    logged: dict[str, float] = {}
    for event in history:
        if event.get("pool") == pool and event.get("action") == SCALE_LAUNCH:
            name = str(event.get("instance"))
            logged[name] = max(logged.get(name, 0.0), float(event.get("time") or 0.0))
    out: dict[str, dict[str, Any]] = {}
    for event in history:
        if event.get("pool") != pool or event.get("action") != SCALE_REGISTER:
            continue
        name = str(event.get("instance"))
        at = float(event.get("time") or 0.0)
        if name not in alive or logged.get(name, -1.0) >= at:
            continue
        out[name] = {
            "pool": pool,
            "name": name,
            "started": float(event.get("started") or at),
            "launched": float(event.get("launched") or at),
            "promoted": bool(event.get("promoted")),
            "adopted": True,
        }
    return list(out.values())


@dataclass
class ScaleObserved:
    """What :func:`observe_scale` saw of a pool and decided (module ``scale_plan``'s return)."""

    plan: ScalePlan
    todo: dict[str, list[dict[str, Any]]]
    instances: list[Instance]
    warm: list[str]
    protected: list[str]
    ready: list[str]  # warm hosts HAProxy reports UP, oldest first (a scale-out takes them first)
    adopt: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)


def observe_scale(
    entry: Mapping[str, Any],
    client: RuntimeClient,
    provider: Provider,
    event_log: str | None,
    now: float,
    *,
    state_root: str,
    protect_file: str | None = None,
    cpu_interval: float = 1.0,
    tail: EventTail | None = None,
) -> ScaleObserved:
    """scale.yml's observation and plan of one pool (module docstring). ``tail`` reads the event
    log incrementally (a long-running caller: the watcher), else the whole log is read."""
    pool = validate_pool(str(entry.get("name") or ""))
    protect = protect_file or (entry.get("scale") or {}).get("protect_file")
    protected = read_protected(os.path.expanduser(protect) if protect else None)
    settings = ScaleSettings.from_pool(entry, protected=protected)
    files = file_values(settings)
    rows = [row for row in client.show_stat(pool) if row.is_server]
    # warm hosts (hapool.warm) are no members: neither counted nor removed
    warm = read_warm(state_root, pool)
    rows, warm_rows = split_rows(rows, warm, key=lambda r: r.server)
    instances, warm_instances = split_warm(provider.list(pool), warm)
    cpu = None
    if "cpu" in settings.metrics:
        alive = [i.name for i in instances if i.alive]
        cpu = sample_cpu_percent(provider, pool, alive, cpu_interval) if alive else {}
    history = []
    if tail is not None:
        history = tail.read(pool=pool, actions=SCALE_HISTORY)
    elif event_log:
        history = read_events(event_log, pool=pool, actions=SCALE_HISTORY)
    plan = plan_scale(
        pool,
        settings,
        observe(instances, rows, cpu),
        history,
        now=now,
        file_values=files,
        superseded=superseded(instances, history, pool, leaving=leaving_hosts(history)),
    )
    todo = loop_items(plan.as_dict(), entry)
    # A scale-out takes the warm hosts HAProxy reports UP first (a runtime change), then launches.
    ready = ready_warm(warm_instances, warm_rows)
    promoted = ready[: len(todo["launch"])]
    todo["promote"] = [{"pool": pool, "name": name} for name in promoted]
    todo["launch"] = todo["launch"][len(promoted) :]
    adopt = to_adopt(history, instances, pool)
    todo["adopt"] = adopt
    return ScaleObserved(
        plan, todo, instances, sorted(warm), sorted(settings.protected), ready, adopt, history
    )


@dataclass
class FastLaunch:
    """One host the scale-out fast path launched (or promoted), or tried to."""

    pool: str
    name: str
    started: float  # the scale-out decision
    launched: float | None = None
    registered: float | None = None
    template: str | None = None
    promoted: bool = False
    error: str | None = None


@dataclass
class FastScaleResult:
    """What :func:`fast_scale` did. ``locked`` names the holder when another run held the pool
    lock (nothing done); ``skipped`` says why a pool was left to scale.yml; ``plans`` has each
    acted-on pool's ``current -> desired``."""

    run: str
    locked: str | None = None
    launched: list[FastLaunch] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def acted(self) -> bool:
        return bool(self.launched)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _eligible(entry: Mapping[str, Any], state_root: str) -> tuple[Any, str | None]:
    """The pool's current template, or why the fast path leaves the pool to scale.yml."""
    try:
        settings = ScaleSettings.from_pool(entry)
    except HapoolError as exc:
        return None, f"invalid scale settings: {exc}"
    if not settings.policies:
        return None, "no scaling policy"
    if "cpu" in settings.metrics:
        return None, "a cpu policy (its samples take cpu_interval seconds: scale.yml)"
    template = current_template(entry, state_root)
    if template is None:
        return None, "no baked template version (scale.yml launches and provisions)"
    return template, None


def fast_scale(
    config: Any,
    *,
    now: float | None = None,
    by: str = "watcher",
    clock: Callable[[], float] = time.time,
    tail: EventTail | None = None,
) -> FastScaleResult:
    """Scale out the pools of ``config`` (a :class:`~.fastheal.FastConfig`) whose plan says so,
    as scale.yml would, launching from their templates (module docstring). Plans first without
    the lock (read only); takes the lock only for a pool that scales out, and plans it again
    under it. ``tail``: the caller's incremental reader of the event log (the watcher keeps one
    across checks; ignored when it reads another log than ``config.event_log``)."""
    if tail is not None and tail.path != config.event_log:
        tail = None
    run = f"fast-{secrets.token_hex(4)}"
    result = FastScaleResult(run=run)
    client = RuntimeClient(config.socket, timeout=config.timeout)
    wanted = []
    for entry in config.pools:
        pool = str(entry.get("name"))
        template, why = _eligible(entry, config.state_root)
        if why is not None:
            result.skipped[pool] = why
            continue
        try:
            with provider_for(entry, config.state_root) as provider:
                seen = observe_scale(
                    entry,
                    client,
                    provider,
                    config.event_log,
                    clock() if now is None else now,
                    state_root=config.state_root,
                    tail=tail,
                )
        except HapoolError as exc:
            result.errors[pool] = str(exc)
            continue
        if seen.plan.action == SCALE_OUT and seen.plan.launch > 0:
            wanted.append((entry, template))
    if not wanted:
        return result
    owner = f"{by}-{run}"
    lease = acquire(config.lock_file, owner, FAST_LOCK_TTL, clock(), holder_pid=os.getpid())
    if not lease.acquired:
        result.locked = lease.holder
        return result
    try:
        for entry, template in wanted:
            try:
                _scale_out(entry, template, config, client, result, by=by, now=now, clock=clock, tail=tail)
            except HapoolError as exc:
                result.errors[str(entry.get("name"))] = str(exc)
    finally:
        release(config.lock_file, owner)
    return result


def _scale_out(
    entry: Mapping[str, Any],
    template: Any,
    config: Any,
    client: RuntimeClient,
    result: FastScaleResult,
    *,
    by: str,
    now: float | None,
    clock: Callable[[], float],
    tail: EventTail | None,
) -> None:
    pool = str(entry.get("name"))
    log = config.event_log
    with provider_for(entry, config.state_root) as provider:
        seen = observe_scale(
            entry, client, provider, log, clock() if now is None else now,
            state_root=config.state_root, tail=tail,
        )
        plan = seen.plan
        if plan.action != SCALE_OUT or plan.launch <= 0:
            return  # another run changed the pool meanwhile
        decided = clock()
        result.plans[pool] = f"{plan.current} -> {plan.desired}"
        if plan.record_recommendation and log:
            append_event(
                log,
                make_event(
                    time=decided,
                    pool=pool,
                    action=SCALE_RECOMMENDATION,
                    instance="",
                    reason="; ".join(r.reason for r in plan.recommendations),
                    recommendation=plan.recommendation,
                    current=plan.current,
                    run=result.run,
                    by=by,
                ),
            )
        # the new hosts' names, before anything is launched: the scale_out event lists them
        taken = set(provider.ledger.used(pool)) | {i.name for i in seen.instances} | set(seen.warm)
        promoting = [item["name"] for item in seen.todo["promote"]]
        names = []
        for _ in seen.todo["launch"]:
            name = new_instance_name(pool, provider.rng, taken)
            taken.add(name)
            names.append(name)
        append_event(
            log,
            make_event(
                time=decided,
                pool=pool,
                action=SCALE_OUT,
                instance="",
                reason="; ".join(plan.reasons),
                **{"from": plan.current},
                to=plan.desired,
                capped_by=list(plan.capped_by),
                hosts=[*promoting, *names],
                run=result.run,
                by=by,
            ),
        )
        for name in promoting:
            item = FastLaunch(pool, name, decided, promoted=True)
            result.launched.append(item)
            item.error = promote_warm(
                client, config, entry, name, item, reason="scale-out", run=result.run, by=by, clock=clock
            )
            if item.error is None:
                _registered(log, item, result.run, by)
        for name in names:
            item = FastLaunch(pool, name, decided, template=template.version)
            result.launched.append(item)
            try:
                instance = launch_from_template(provider, entry, config.state_root, name, template)
            except HapoolError as exc:
                item.error = f"launch failed: {exc}"
                append_event(
                    log,
                    make_event(
                        time=clock(),
                        pool=pool,
                        action=SCALE_LAUNCH_FAILED,
                        instance=name,
                        reason=str(exc),
                        started=round(decided, 3),
                        run=result.run,
                        by=by,
                    ),
                )
                continue
            item.launched = clock()
            # on an error, scale.yml adopts the host all the same: its re-render registers it
            item.error = register_launched(client, entry, config.check_defaults, instance)
            if item.error is None:
                item.registered = clock()
            _registered(log, item, result.run, by)


def _registered(log: str, item: FastLaunch, run: str, by: str) -> None:
    """The ``scale_register`` event of a host the fast path took into the pool: scale.yml adopts
    it (re-render, wait for UP, ``scale_launch``)."""
    at = item.registered or item.launched or item.started
    append_event(
        log,
        make_event(
            time=at,
            pool=item.pool,
            action=SCALE_REGISTER,
            instance=item.name,
            reason="warm host promoted" if item.promoted else "launched from the template, added at runtime",
            duration=at - item.started,
            started=round(item.started, 3),
            launched=None if item.launched is None else round(item.launched, 3),
            registered=item.registered is not None,
            template=item.template,
            promoted=item.promoted or None,
            error=item.error,
            run=run,
            by=by,
        ),
    )


__all__ = [
    "SCALE_HISTORY",
    "FastLaunch",
    "FastScaleResult",
    "ScaleObserved",
    "fast_scale",
    "file_values",
    "observe_scale",
    "read_protected",
    "read_text",
    "to_adopt",
]
