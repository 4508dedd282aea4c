"""The scaler's decision: how many hosts a pool should have, which to launch and which to drain.

Pure: the hosts as the balancer and the provider see them (:class:`HostObservation`), the
values of the metric files, the event history and the time are passed in; :func:`plan_scale`
reads nothing else, so the same inputs always give the same plan.

Policies (``scale.policies`` of a pool; the one that asks for the most capacity wins, as in
nomad-autoscaler):

* ``file`` - the desired count written in a file (the original design's metric file), re-read
  on every evaluation; a missing file gives no recommendation, a malformed one is an error;
* ``target`` - target tracking of a per-host metric (``sessions``: current sessions,
  ``request_rate``: sessions per second, ``cpu``: percent of one core): the pool gets
  ``ceil(serving * average / target)`` hosts, unless the average is within ``tolerance`` of the
  target;
* ``step`` - step scaling: the first step whose ``[lower, upper)`` holds the average adds
  ``change`` hosts (negative: removes).

Averages are taken over the *warm* hosts only: in the balancer, serving (``stats.SERVING_STATUSES``:
UP, NOLB or no check), older than ``warmup`` and with a value for the metric.

Then, in this order: no policy at all keeps the configured ``desired``; a scale-in is held to
the highest recommendation of the last ``scale_in_stabilization`` seconds (and to the current
size while that window is not yet covered by recorded recommendations); ``min``/``max`` bound
the result; a scale-out inside ``scale_out_cooldown`` of the last scale-out, or a scale-in
inside ``scale_in_cooldown`` of the last scaling, does nothing (except to get back inside the
bounds); ``max_step_out`` / ``max_step_in`` cap one evaluation's change. Scale-in drains the
DOWN or dead hosts first, then the oldest (``termination_order: oldest_first``) or the newest
(``newest_first``); protected hosts, hosts an operator put in DRAIN or MAINT, and hosts already
leaving are never picked.

Every plan carries the reasons of each policy, what capped the result, and whether the raw
recommendation must be recorded (a ``scale_recommendation`` event, only when it changed) so
that the next evaluations can apply the stabilization window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .actions import SCALE_DRAIN, SCALE_IN, SCALE_LAUNCH, SCALE_OUT, SCALE_RECOMMENDATION, SCALE_REMOVE
from .errors import InvalidArgumentError, MetricFileError
from .settings import number_setting as _number
from .settings import pool_sizes
from .settings import whole_setting as _whole
from .sizing import leaving_hosts
from .stats import FAILED_STATUSES, SERVING_STATUSES, STANDBY_STATUSES

#: The events the scaler reads back (cooldowns, stabilization, hosts leaving).
SCALE_EVENTS = (SCALE_OUT, SCALE_IN, SCALE_RECOMMENDATION, SCALE_LAUNCH, SCALE_DRAIN, SCALE_REMOVE)

POLICY_KINDS = ("file", "target", "step")
METRICS = ("sessions", "request_rate", "cpu")
TERMINATION_ORDERS = ("oldest_first", "newest_first")

#: A plan's ``action``: ``SCALE_OUT``, ``SCALE_IN`` (the names of their events), or none.
NONE = "none"



_COUNT = re.compile(r"\A\s*(\d{1,6})\s*\Z")


def parse_desired_file(text: str, path: str = "metric file") -> int:
    """The desired count in a metric file: one whole number, blanks around it allowed."""
    match = _COUNT.match(text)
    if match is None:
        shown = text.strip()[:40]
        raise MetricFileError(f"{path}: expected a whole number of hosts, found {shown!r}")
    return int(match.group(1))


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a step policy: when ``lower <= average < upper``, add ``change`` hosts."""

    change: int
    lower: float | None = None
    upper: float | None = None

    def holds(self, value: float) -> bool:
        return (self.lower is None or value >= self.lower) and (self.upper is None or value < self.upper)

    def describe(self) -> str:
        low = "-inf" if self.lower is None else f"{self.lower:g}"
        high = "+inf" if self.upper is None else f"{self.upper:g}"
        return f"[{low}, {high}) {self.change:+d}"

    def as_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "change": self.change}


def _steps(steps: Any, index: int) -> tuple[Step, ...]:
    if not isinstance(steps, Sequence) or isinstance(steps, str) or not steps:
        raise InvalidArgumentError(f"policy {index} (step): steps must be a non-empty list")
    parsed: list[Step] = []
    for n, step in enumerate(steps):
        where = f"policy {index} step {n}"
        if not isinstance(step, Mapping):
            raise InvalidArgumentError(f"{where}: expected a mapping, got {step!r}")
        lower = None if step.get("lower") is None else _number(step, "lower", None, minimum=None)
        upper = None if step.get("upper") is None else _number(step, "upper", None, minimum=None)
        if lower is None and upper is None:
            raise InvalidArgumentError(f"{where}: give lower, upper or both")
        if lower is not None and upper is not None and lower >= upper:
            raise InvalidArgumentError(f"{where}: lower {lower:g} must be below upper {upper:g}")
        parsed.append(Step(change=_whole(step, "change", None, minimum=None), lower=lower, upper=upper))
    return tuple(parsed)


@dataclass(frozen=True)
class Policy:
    """One scaling policy of a pool."""

    name: str
    kind: str
    metric: str | None = None
    target: float | None = None
    path: str | None = None
    steps: tuple[Step, ...] = ()

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], index: int) -> Policy:
        if not isinstance(cfg, Mapping):
            raise InvalidArgumentError(f"policy {index}: expected a mapping, got {cfg!r}")
        kind = cfg.get("type")
        if kind not in POLICY_KINDS:
            raise InvalidArgumentError(
                f"policy {index}: type must be one of {', '.join(POLICY_KINDS)}, got {kind!r}"
            )
        known = {"name", "type", "metric", "target", "path", "steps"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise InvalidArgumentError(f"policy {index}: unknown key(s) {', '.join(unknown)}")
        if kind == "file":
            path = cfg.get("path")
            if not isinstance(path, str) or not path:
                raise InvalidArgumentError(f"policy {index} (file): path is required")
            return cls(name=str(cfg.get("name") or f"file:{path}"), kind=kind, path=path)
        metric = cfg.get("metric")
        if metric not in METRICS:
            raise InvalidArgumentError(
                f"policy {index} ({kind}): metric must be one of {', '.join(METRICS)}, got {metric!r}"
            )
        name = str(cfg.get("name") or f"{kind}:{metric}")
        if kind == "target":
            target = _number(cfg, "target", None, minimum=None)
            if target <= 0:
                raise InvalidArgumentError(f"policy {index} (target): target must be > 0, got {target:g}")
            return cls(name=name, kind=kind, metric=metric, target=target)
        return cls(name=name, kind=kind, metric=metric, steps=_steps(cfg.get("steps"), index))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind}
        if self.kind == "file":
            out["path"] = self.path
        else:
            out["metric"] = self.metric
        if self.kind == "target":
            out["target"] = self.target
        if self.kind == "step":
            out["steps"] = [s.as_dict() for s in self.steps]
        return out


@dataclass(frozen=True)
class ScaleSettings:
    """A pool's size bounds and scaling behaviour (``min``/``max``/``desired`` and ``scale:``)."""

    min_size: int
    max_size: int
    desired: int
    policies: tuple[Policy, ...] = ()
    tolerance: float = 0.1
    scale_out_cooldown: float = 60.0
    scale_in_cooldown: float = 120.0
    scale_in_stabilization: float = 300.0
    max_step_out: int = 4
    max_step_in: int = 2
    warmup: float = 30.0
    termination_order: str = "oldest_first"
    protected: frozenset[str] = frozenset()
    drain_timeout: float = 60.0

    @classmethod
    def from_pool(cls, pool_cfg: Mapping[str, Any], *, protected: Iterable[str] = ()) -> ScaleSettings:
        """Settings from a ``hapool_pools`` entry; ``protected`` adds names (e.g. from a file)."""
        scale = pool_cfg.get("scale") or {}
        if not isinstance(scale, Mapping):
            raise InvalidArgumentError(f"scale must be a mapping, got {scale!r}")
        known = {
            "policies", "tolerance", "scale_out_cooldown", "scale_in_cooldown", "scale_in_stabilization",
            "max_step_out", "max_step_in", "warmup", "termination_order", "protected", "protect_file",
            "drain_timeout",
        }  # fmt: skip
        unknown = sorted(set(scale) - known)
        if unknown:
            raise InvalidArgumentError(
                f"scale: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        low, desired, high = pool_sizes(pool_cfg)
        policies_cfg = scale.get("policies") or []
        if not isinstance(policies_cfg, Sequence) or isinstance(policies_cfg, str):
            raise InvalidArgumentError("scale.policies must be a list")
        policies = tuple(Policy.from_dict(p, i) for i, p in enumerate(policies_cfg))
        names = [p.name for p in policies]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"scale.policies: names must be unique, got {names}")
        tolerance = _number(scale, "tolerance", cls.tolerance)
        if tolerance >= 1:
            raise InvalidArgumentError(f"tolerance is a share below 1, got {tolerance:g}")
        order = scale.get("termination_order", cls.termination_order)
        if order not in TERMINATION_ORDERS:
            raise InvalidArgumentError(
                f"termination_order must be one of {', '.join(TERMINATION_ORDERS)}, got {order!r}"
            )
        listed = scale.get("protected") or []
        if not isinstance(listed, Sequence) or isinstance(listed, str):
            raise InvalidArgumentError("scale.protected must be a list of host names")
        return cls(
            min_size=low,
            max_size=high,
            desired=desired,
            policies=policies,
            tolerance=tolerance,
            scale_out_cooldown=_number(scale, "scale_out_cooldown", cls.scale_out_cooldown),
            scale_in_cooldown=_number(scale, "scale_in_cooldown", cls.scale_in_cooldown),
            scale_in_stabilization=_number(scale, "scale_in_stabilization", cls.scale_in_stabilization),
            max_step_out=_whole(scale, "max_step_out", cls.max_step_out, minimum=1),
            max_step_in=_whole(scale, "max_step_in", cls.max_step_in, minimum=1),
            warmup=_number(scale, "warmup", cls.warmup),
            termination_order=order,
            protected=frozenset(str(n) for n in [*listed, *protected]),
            drain_timeout=_number(scale, "drain_timeout", cls.drain_timeout),
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        """The host metrics the policies need (so the caller samples CPU only when asked)."""
        return tuple(sorted({p.metric for p in self.policies if p.metric}))

    def as_dict(self) -> dict[str, Any]:
        return {
            "min": self.min_size,
            "max": self.max_size,
            "desired": self.desired,
            "policies": [p.as_dict() for p in self.policies],
            "tolerance": self.tolerance,
            "scale_out_cooldown": self.scale_out_cooldown,
            "scale_in_cooldown": self.scale_in_cooldown,
            "scale_in_stabilization": self.scale_in_stabilization,
            "max_step_out": self.max_step_out,
            "max_step_in": self.max_step_in,
            "warmup": self.warmup,
            "termination_order": self.termination_order,
            "protected": sorted(self.protected),
            "drain_timeout": self.drain_timeout,
        }


# --- observations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostObservation:
    """One host of the pool: its instance (provider) joined with its server (balancer)."""

    name: str
    created: float
    alive: bool = True
    status: str | None = None  # status class of its server, None when not in the balancer
    sessions: float | None = None
    request_rate: float | None = None
    cpu: float | None = None

    @property
    def in_balancer(self) -> bool:
        return self.status is not None

    @property
    def serving(self) -> bool:
        return self.alive and self.status in SERVING_STATUSES

    @property
    def standby(self) -> bool:
        return self.status in STANDBY_STATUSES

    @property
    def failed(self) -> bool:
        return not self.alive or self.status in FAILED_STATUSES

    def metric(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "alive": self.alive,
            "status": self.status,
            "sessions": self.sessions,
            "request_rate": self.request_rate,
            "cpu": self.cpu,
        }


def observe(
    instances: Iterable[Any],
    rows: Iterable[Any],
    cpu: Mapping[str, float | None] | None = None,
) -> list[HostObservation]:
    """Join the provider's instances (``name``, ``created``, ``alive``) with the server rows of
    the pool's backend (``server``, ``status_class``, ``scur``, ``rate``); servers without an
    instance are the healer's business and left out."""
    by_name = {row.server: row for row in rows}
    cpu = cpu or {}
    hosts = []
    for inst in instances:
        row = by_name.get(inst.name)
        hosts.append(
            HostObservation(
                name=inst.name,
                created=float(inst.created),
                alive=bool(inst.alive),
                status=None if row is None else row.status_class,
                sessions=None if row is None else float(row.scur),
                request_rate=None if row is None else float(row.rate),
                cpu=cpu.get(inst.name),
            )
        )
    return sorted(hosts, key=lambda h: (h.created, h.name))


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    policy: str
    desired: int | None  # None: this policy has nothing to say now
    reason: str
    value: float | None = None  # the metric average (or the file's count)

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "desired": self.desired,
            "reason": self.reason,
            "value": None if self.value is None else round(self.value, 3),
        }


@dataclass(frozen=True)
class ScalePlan:
    pool: str
    settings: ScaleSettings
    current: int  # hosts counted as capacity (every instance not leaving)
    desired: int
    action: str  # scale_out / scale_in / none
    launch: int
    drain: tuple[str, ...]  # in-service hosts to drain now
    leaving: tuple[str, ...]  # hosts a previous scale-in began to remove and that still exist
    recommendation: int | None  # raw: the highest policy recommendation, before any guard
    recommendations: tuple[Recommendation, ...]
    reasons: tuple[str, ...]
    capped_by: tuple[str, ...]
    record_recommendation: bool
    serving: int
    warm: int
    hosts: tuple[HostObservation, ...] = field(default=())

    @property
    def remove(self) -> list[str]:
        """Every host to take out of the balancer and destroy: the new drains and the leftovers."""
        return [*self.leaving, *self.drain]

    @property
    def changes(self) -> bool:
        return bool(self.launch or self.drain or self.leaving)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "settings": self.settings.as_dict(),
            "current": self.current,
            "desired": self.desired,
            "action": self.action,
            "launch": self.launch,
            "drain": list(self.drain),
            "leaving": list(self.leaving),
            "remove": self.remove,
            "recommendation": self.recommendation,
            "recommendations": [r.as_dict() for r in self.recommendations],
            "reasons": list(self.reasons),
            "capped_by": list(self.capped_by),
            "record_recommendation": self.record_recommendation,
            "serving": self.serving,
            "warm": self.warm,
            "hosts": [h.as_dict() for h in self.hosts],
            "changes": self.changes,
        }


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-9)


def _recommend(  # noqa: PLR0911 - one return per outcome
    policy: Policy,
    settings: ScaleSettings,
    *,
    warm: Sequence[HostObservation],
    serving: int,
    current: int,
    file_values: Mapping[str, int | None],
) -> Recommendation:
    if policy.kind == "file":
        count = file_values.get(policy.name)
        if count is None:
            return Recommendation(
                policy.name, None, f"metric file {policy.path} is missing: no recommendation"
            )
        return Recommendation(policy.name, count, f"metric file {policy.path} asks for {count}", float(count))
    assert policy.metric is not None
    values = [v for v in (h.metric(policy.metric) for h in warm) if v is not None]
    if not values:
        return Recommendation(policy.name, None, f"no warm host reports {policy.metric}: no recommendation")
    average = sum(values) / len(values)
    shown = f"average {policy.metric} {average:.4g} over {len(values)} warmed-up host(s)"
    if policy.kind == "target":
        assert policy.target is not None
        ratio = average / policy.target
        if abs(ratio - 1) <= settings.tolerance:
            return Recommendation(
                policy.name,
                current,
                f"{shown} is within {settings.tolerance:.0%} of the target {policy.target:g}: keep {current}",
                average,
            )
        wanted = _ceil(max(serving, 1) * ratio)
        return Recommendation(
            policy.name,
            wanted,
            f"{shown}, target {policy.target:g}: {max(serving, 1)} serving x {ratio:.3g} -> {wanted}",
            average,
        )
    for step in policy.steps:
        if step.holds(average):
            wanted = max(current + step.change, 0)
            return Recommendation(
                policy.name, wanted, f"{shown} is in step {step.describe()}: {current} -> {wanted}", average
            )
    return Recommendation(policy.name, current, f"{shown} is in no step: keep {current}", average)


def _last_time(history: Sequence[Mapping[str, Any]], actions: tuple[str, ...]) -> float | None:
    times = [float(e.get("time") or 0) for e in history if e.get("action") in actions]
    return max(times) if times else None


def _recorded_value(event: Mapping[str, Any]) -> int | None:
    """The count of a ``scale_recommendation`` event (a number, or its text), None if unusable."""
    value = event.get("recommendation")
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _recommendations(history: Sequence[Mapping[str, Any]]) -> list[tuple[float, int]]:
    """The recorded recommendations as (time, value), oldest first; at the same time the
    highest value counts as the later one, so that the order of the history does not matter."""
    return sorted(
        (float(e.get("time") or 0), value)
        for e in history
        if e.get("action") == SCALE_RECOMMENDATION and (value := _recorded_value(e)) is not None
    )


def _last_recommendation(history: Sequence[Mapping[str, Any]]) -> int | None:
    recorded = _recommendations(history)
    return recorded[-1][1] if recorded else None


def _stabilized(
    raw: int, current: int, history: Sequence[Mapping[str, Any]], now: float, window: float
) -> tuple[int, str]:
    """The highest recommendation in effect during the last ``window`` seconds (HPA's rule)."""
    recorded = _recommendations(history)
    start = now - window
    before = [value for when, value in recorded if when <= start]
    inside = [value for when, value in recorded if start < when <= now]
    if before:
        candidates = [before[-1], *inside, raw]
        why = f"the highest recommendation of the last {window:g} s"
    else:
        candidates = [current, *inside, raw]
        why = f"recommendations cover less than the {window:g} s window, so the current size counts"
    highest = max(candidates)
    return min(highest, current), why


def plan_scale(  # noqa: PLR0912, PLR0915 - one readable pass over the rules, in order
    pool: str,
    settings: ScaleSettings,
    hosts: Sequence[HostObservation],
    history: Sequence[Mapping[str, Any]],
    *,
    now: float,
    file_values: Mapping[str, int | None] | None = None,
    superseded: Collection[str] = (),
) -> ScalePlan:
    """Decide the pool's size and the hosts to launch and drain. ``history`` is the pool's
    events (any order); ``file_values`` the count read from each file policy's file (by policy
    name; None: the file is missing); ``superseded`` the hosts a live replacement supersedes
    (heal.yml destroys them: not counted, never drained; see sizing.py)."""
    file_values = file_values or {}
    hosts = sorted(hosts, key=lambda h: (h.created, h.name))
    drained_before = leaving_hosts(history)
    leaving = [h for h in hosts if h.name in drained_before]
    staying = [h for h in hosts if h.name not in drained_before and h.name not in superseded]
    current = len(staying)
    serving_hosts = [h for h in staying if h.serving]
    warm = [h for h in serving_hosts if now - h.created >= settings.warmup]
    reasons: list[str] = []
    capped: list[str] = []
    if leaving:
        reasons.append(f"finish removing {', '.join(h.name for h in leaving)} (drained by an earlier run)")

    recommendations = tuple(
        _recommend(
            p, settings, warm=warm, serving=len(serving_hosts), current=current, file_values=file_values
        )
        for p in settings.policies
    )
    said = [r for r in recommendations if r.desired is not None]
    raw: int | None
    if not settings.policies:
        raw = settings.desired
        reasons.append(f"no scaling policy: keep the configured desired count {raw}")
    elif said:
        winner = max(said, key=lambda r: r.desired or 0)
        raw = winner.desired
        reasons.append(f"policy {winner.policy} asks for the most: {raw}")
    else:
        raw = None
        reasons.append(f"no policy has a recommendation: keep {current}")
    last = _last_recommendation(history)
    record = bool(settings.policies) and raw is not None and last != raw

    target = current if raw is None else raw
    if target < current and settings.policies and settings.scale_in_stabilization > 0:
        held, why = _stabilized(target, current, history, now, settings.scale_in_stabilization)
        if held > target:
            reasons.append(f"scale-in stabilization: {why} is {held}")
            capped.append("scale_in_stabilization")
            target = held
    if target > settings.max_size:
        reasons.append(f"capped by max {settings.max_size}")
        capped.append("max")
        target = settings.max_size
    if target < settings.min_size:
        reasons.append(f"raised to min {settings.min_size}")
        capped.append("min")
        target = settings.min_size

    if target > current:
        if current >= settings.min_size:
            last_out = _last_time(history, (SCALE_OUT,))
            if last_out is not None and now - last_out < settings.scale_out_cooldown:
                wait = settings.scale_out_cooldown - (now - last_out)
                reasons.append(
                    f"scale-out cooldown: last scale-out {now - last_out:.0f} s ago, {wait:.0f} s left"
                )
                capped.append("scale_out_cooldown")
                target = current
            elif target - current > settings.max_step_out:
                reasons.append(f"at most {settings.max_step_out} host(s) per scale-out")
                capped.append("max_step_out")
                target = current + settings.max_step_out
    elif target < current <= settings.max_size:
        last_any = _last_time(history, (SCALE_OUT, SCALE_IN))
        if last_any is not None and now - last_any < settings.scale_in_cooldown:
            wait = settings.scale_in_cooldown - (now - last_any)
            reasons.append(f"scale-in cooldown: last scaling {now - last_any:.0f} s ago, {wait:.0f} s left")
            capped.append("scale_in_cooldown")
            target = current
        elif current - target > settings.max_step_in:
            reasons.append(f"at most {settings.max_step_in} host(s) per scale-in")
            capped.append("max_step_in")
            target = current - settings.max_step_in

    drain: list[HostObservation] = []
    if target < current:
        candidates = [h for h in staying if h.name not in settings.protected and not h.standby]
        newest = settings.termination_order == "newest_first"
        candidates.sort(key=lambda h: (not h.failed, -h.created if newest else h.created, h.name))
        drain = candidates[: current - target]
        if len(drain) < current - target:
            kept = current - target - len(drain)
            reasons.append(f"{kept} host(s) kept: the others are protected or standing by")
            capped.append("protection")
            target = current - len(drain)
        order = "newest" if newest else "oldest"
        reasons.append(f"drain {', '.join(h.name for h in drain)} (failed first, then {order} first)")
    launch = max(target - current, 0)
    # Superseded hosts still live until heal.yml destroys them: they hold a place under max
    # (leaving ones are destroyed by this run before it launches).
    live = sum(1 for h in staying if h.alive) + sum(1 for h in hosts if h.name in superseded and h.alive)
    room = settings.max_size - live
    if room < launch > 0:
        reasons.append(f"at most {max(room, 0)} launch(es): live hosts never exceed max {settings.max_size}")
        capped.append("max_live")
        launch = max(room, 0)
        target = current + launch
    if launch:
        reasons.append(f"launch {launch} host(s): {current} -> {target}")
    action = SCALE_OUT if target > current else SCALE_IN if target < current else NONE
    if action == NONE and not leaving:
        reasons.append(f"keep {current} host(s)")
    return ScalePlan(
        pool=pool,
        settings=settings,
        current=current,
        desired=target,
        action=action,
        launch=launch,
        drain=tuple(h.name for h in drain),
        leaving=tuple(h.name for h in leaving),
        recommendation=raw,
        recommendations=recommendations,
        reasons=tuple(reasons),
        capped_by=tuple(capped),
        record_recommendation=record,
        serving=len(serving_hosts),
        warm=len(warm),
        hosts=tuple(hosts),
    )


def loop_items(plan: Mapping[str, Any], pool_cfg: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A plan (:meth:`ScalePlan.as_dict`) as lists ready to loop over (scale_plan's ``todo``):
    ``remove`` (one entry per host to take out, with its pool), ``launch`` (the pool entry
    ``pool_cfg`` once per host to launch), ``scale_out`` / ``scale_in`` (the plan, when it is one)."""
    status = {host["name"]: host.get("status", "") for host in plan["hosts"]}
    remove = [
        {
            "pool": plan["pool"],
            "name": name,
            "new": name in plan["drain"],
            # A host the plan does not list is taken as in the balancer: deleting a server that
            # is not there is a no-op, skipping one that is would leave an orphan.
            "in_balancer": status.get(name, "") is not None,
            "drain_timeout": plan["settings"]["drain_timeout"],
        }
        for name in plan["remove"]
    ]
    return {
        "remove": remove,
        "launch": [dict(pool_cfg) for _ in range(plan["launch"])],
        "scale_out": [dict(plan)] if plan["action"] == SCALE_OUT else [],
        "scale_in": [dict(plan)] if plan["action"] == SCALE_IN else [],
    }


__all__ = [
    "METRICS",
    "NONE",
    "POLICY_KINDS",
    "SCALE_EVENTS",
    "HostObservation",
    "Policy",
    "Recommendation",
    "ScalePlan",
    "ScaleSettings",
    "Step",
    "loop_items",
    "observe",
    "parse_desired_file",
    "plan_scale",
]
