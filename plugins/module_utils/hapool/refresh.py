"""Instance refresh: the next batch of a rolling replacement of a pool's hosts by its current
template version (AWS instance refresh, Kubernetes' rolling update).

Pure: the hosts of the pool (their template version, the balancer's status, ages), the refresh
in progress (read from the event history by :func:`refresh_state`), the settings and the time
are passed in; :func:`plan_refresh` reads nothing else. The executor acts on a plan - drains
and destroys ``terminate``, then launches ``launch`` hosts from the target version - and asks
for the next plan once the new hosts are UP; a killed executor's next run plans again from what
it finds, so nothing it did is lost or done twice (hosts carry their version; the launches it
logged name their hosts).

Capacity, counted in hosts of the pool's ``desired`` size ``N``:

* **floor** = ``ceil(N * min_healthy_percentage / 100)`` (AWS rounds up): serving hosts are never
  taken below it by the refresh. *Serving*: UP in HAProxy (UP, NOLB, NO CHECK), not leaving,
  and - for a host of the target version - UP for ``warmup`` seconds;
* **ceiling** = ``floor(N * max_healthy_percentage / 100)``: live hosts (serving, booting or
  failed; warm hosts not counted) never exceed it because of the refresh. When it leaves no room
  above the floor (small pools: 2 hosts at 90 % / 110 % give 2 and 2), it is the floor + 1: one
  host is launched before one is terminated, so every pool makes progress (**surge first**).

A batch: the old hosts that do not serve (DOWN, MAINT, dead, not in the balancer) are terminated
at once - it takes nothing from the serving count -, then serving old hosts while the serving
count stays at or above the floor (the oldest first), then as many hosts of the target version
are launched as are still needed to reach ``N`` of them, without more than the ceiling of live
hosts once the terminations are done. New hosts that are not serving yet make the refresh wait.

*Old* hosts are those whose version is not the target; with ``skip_matching`` off, also hosts of
the target version launched before the refresh started (everything is replaced once).

**Checkpoints**: when the share of the ``N`` hosts that serve the target version reaches a
checkpoint percentage, the refresh launches nothing more until the operator resumes it (a
``refresh_resume`` event); the batch's old hosts beyond ``N`` are still terminated.

**Rollback**: a host of the target version that this refresh launched and that is not serving
``grace_period`` seconds after its launch, or that the provider reports dead, has *failed*: the
plan says ``rollback`` (with ``auto_rollback``; else ``failed``). The executor then makes the
previous version current again, marks the failed one, and the next plans roll the pool back to
the previous version with the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .errors import InvalidArgumentError
from .settings import number_setting, whole_setting
from .stats import SERVING_STATUSES

REFRESH_START = "refresh_start"
REFRESH_LAUNCH = "refresh_launch"
REFRESH_BATCH = "refresh_batch"
REFRESH_CHECKPOINT = "refresh_checkpoint"
REFRESH_RESUME = "refresh_resume"
REFRESH_ROLLBACK = "refresh_rollback"
REFRESH_DONE = "refresh_done"
#: The events :func:`refresh_state` reads.
HISTORY_ACTIONS = (
    REFRESH_START,
    REFRESH_LAUNCH,
    REFRESH_CHECKPOINT,
    REFRESH_RESUME,
    REFRESH_ROLLBACK,
    REFRESH_DONE,
)

# What a plan says.
DONE = "done"  # every host serves the target version: the refresh is over
WAIT = "wait"  # new hosts are not serving yet: nothing to do before they are
ACT = "act"  # terminate and/or launch (the batch)
PAUSED = "paused"  # a checkpoint was reached: launch nothing until resumed
ROLLBACK = "rollback"  # a new host failed: make the previous version current again
FAILED = "failed"  # a new host failed and auto_rollback is off: the refresh stops
STUCK = "stuck"  # nothing can be done within the floor and ceiling (a host does not serve)


@dataclass(frozen=True)
class RefreshSettings:
    """A pool's refresh settings (its ``refresh:`` entry; ``grace_period`` is the pool's)."""

    min_healthy_percentage: int = 90
    max_healthy_percentage: int = 110
    warmup: float = 0.0
    checkpoints: tuple[int, ...] = ()
    skip_matching: bool = True
    auto_rollback: bool = True
    grace_period: float = 30.0

    def __post_init__(self) -> None:
        low, high = self.min_healthy_percentage, self.max_healthy_percentage
        if not 0 <= low <= 100:
            raise InvalidArgumentError(f"refresh.min_healthy_percentage must be from 0 to 100, got {low}")
        if not 100 <= high <= 200:
            raise InvalidArgumentError(f"refresh.max_healthy_percentage must be from 100 to 200, got {high}")
        if high - low > 100:
            raise InvalidArgumentError(
                "refresh.max_healthy_percentage - min_healthy_percentage must be 100 at most, "
                f"got {high} - {low}"
            )
        previous = 0
        for point in self.checkpoints:
            if not previous < point <= 100:
                raise InvalidArgumentError(
                    "refresh.checkpoints must be increasing percentages above 0 and up to 100, "
                    f"got {list(self.checkpoints)}"
                )
            previous = point

    @classmethod
    def from_pool(cls, pool_cfg: Mapping[str, Any]) -> RefreshSettings:
        """Settings from a pool entry: its ``refresh`` mapping, and the pool's grace period."""
        raw = pool_cfg.get("refresh")
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise InvalidArgumentError(f"refresh must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {f.name for f in cls.__dataclass_fields__.values()} - {"grace_period"})
        if unknown:
            raise InvalidArgumentError(f"refresh: unknown settings {', '.join(map(str, unknown))}")
        checkpoints = raw.get("checkpoints") or []
        if not isinstance(checkpoints, Sequence) or isinstance(checkpoints, (str, bytes)):
            raise InvalidArgumentError(
                f"refresh.checkpoints must be a list of percentages, got {checkpoints!r}"
            )
        points = tuple(
            whole_setting({"checkpoint": p}, "checkpoint", None, minimum=1, maximum=100) for p in checkpoints
        )
        flags = {}
        for key in ("skip_matching", "auto_rollback"):
            value = raw.get(key, getattr(cls, key))
            if not isinstance(value, bool):
                raise InvalidArgumentError(f"refresh.{key} must be true or false, got {value!r}")
            flags[key] = value
        heal = {**pool_cfg, **(pool_cfg.get("heal") or {})}
        return cls(
            min_healthy_percentage=whole_setting(raw, "min_healthy_percentage", cls.min_healthy_percentage),
            max_healthy_percentage=whole_setting(raw, "max_healthy_percentage", cls.max_healthy_percentage),
            warmup=number_setting(raw, "warmup", cls.warmup),
            checkpoints=points,
            grace_period=number_setting(heal, "grace_period", cls.grace_period),
            **flags,
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoints"] = list(self.checkpoints)
        return out


def bounds(desired: int, settings: RefreshSettings) -> tuple[int, int]:
    """``(floor, ceiling)`` for a pool of ``desired`` hosts (see the module's docstring)."""
    low = math.ceil(desired * settings.min_healthy_percentage / 100 - 1e-9)
    high = math.floor(desired * settings.max_healthy_percentage / 100 + 1e-9)
    return low, max(high, low + 1)


class HostLike(Protocol):
    """What :func:`plan_refresh` reads of a host (``RefreshHost`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def created(self) -> float: ...
    @property
    def alive(self) -> bool: ...
    @property
    def status(self) -> str | None: ...
    @property
    def up_for(self) -> float | None: ...


@dataclass(frozen=True)
class RefreshHost:
    """One live-or-dead host of the pool as the refresh sees it: its template version (None:
    provisioned, or not known), its launch time, whether the provider reports it alive, its
    HAProxy status (normalized: UP, DOWN, MAINT, ...; None: not in the balancer) and for how long
    it has held a serving status (None: it does not serve)."""

    name: str
    version: str | None
    created: float
    alive: bool = True
    status: str | None = None
    up_for: float | None = None


@dataclass(frozen=True)
class RefreshState:
    """The refresh in progress of a pool, from its events (:func:`refresh_state`)."""

    refresh: str
    started: float
    target: str
    previous: str | None
    launched: tuple[str, ...] = ()
    checkpoints_passed: tuple[int, ...] = ()
    paused_at: int | None = None
    rolled_back: bool = False
    failed_versions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("launched", "checkpoints_passed", "failed_versions"):
            out[key] = list(out[key])
        return out


def failed_versions(history: Sequence[Mapping[str, Any]], pool: str) -> list[str]:
    """The versions a refresh of ``pool`` rolled back from, oldest first."""
    out: list[str] = []
    for event in history:
        if event.get("pool") == pool and event.get("action") == REFRESH_ROLLBACK:
            version = event.get("version")
            if isinstance(version, str) and version not in out:
                out.append(version)
    return out


def refresh_state(history: Sequence[Mapping[str, Any]], pool: str) -> RefreshState | None:
    """The refresh of ``pool`` in progress - its last ``refresh_start`` with no ``refresh_done``
    after it - or None. The history is in time order (the event log's)."""
    state: dict[str, Any] | None = None
    for event in history:
        if event.get("pool") != pool:
            continue
        action = event.get("action")
        if action == REFRESH_START:
            state = {
                "refresh": str(event.get("refresh") or ""),
                "started": float(event.get("time") or 0.0),
                "target": str(event.get("version") or ""),
                "previous": event.get("previous"),
                "launched": [],
                "checkpoints_passed": [],
                "paused_at": None,
                "rolled_back": False,
            }
            continue
        if state is None or event.get("refresh") != state["refresh"]:
            continue
        if action == REFRESH_DONE:
            state = None
        elif action == REFRESH_LAUNCH and event.get("replacement"):
            state["launched"].append(str(event["replacement"]))
        elif action == REFRESH_CHECKPOINT:
            point = int(event.get("percentage") or 0)
            state["checkpoints_passed"].append(point)
            state["paused_at"] = point
        elif action == REFRESH_RESUME:
            state["paused_at"] = None
        elif action == REFRESH_ROLLBACK:
            # from here on the refresh rolls the pool back to the previous version
            state["rolled_back"] = True
            back_to = str(event.get("to") or state["previous"] or "")
            state["target"], state["previous"] = back_to, state["target"]
    if state is None:
        return None
    return RefreshState(
        refresh=state["refresh"],
        started=state["started"],
        target=state["target"],
        previous=state["previous"],
        launched=tuple(state["launched"]),
        checkpoints_passed=tuple(state["checkpoints_passed"]),
        paused_at=state["paused_at"],
        rolled_back=state["rolled_back"],
        failed_versions=tuple(failed_versions(history, pool)),
    )


@dataclass(frozen=True)
class RefreshPlan:
    """The next step of a refresh (see the module's docstring)."""

    pool: str
    outcome: str
    target: str
    desired: int
    floor: int
    ceiling: int
    terminate: tuple[str, ...] = ()
    launch: int = 0
    waiting: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    checkpoint: int | None = None
    serving: int = 0
    live: int = 0
    replaced: int = 0  # hosts of the target version that serve
    old: tuple[str, ...] = ()
    versions: Mapping[str, int] = field(default_factory=dict)
    reason: str = ""

    @property
    def percentage(self) -> int:
        """The share of the pool's ``desired`` hosts that serve the target version."""
        return 100 if self.desired == 0 else min(100, self.replaced * 100 // self.desired)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("terminate", "waiting", "failed", "old"):
            out[key] = list(out[key])
        out["versions"] = dict(self.versions)
        out["percentage"] = self.percentage
        return out


def _serving(host: HostLike) -> bool:
    return host.alive and host.status in SERVING_STATUSES


def plan_refresh(  # noqa: PLR0917 - the observation, spelled out
    pool: str,
    hosts: Sequence[HostLike],
    desired: int,
    target: str,
    settings: RefreshSettings,
    state: RefreshState | None,
    now: float,
) -> RefreshPlan:
    """The next step of the refresh of ``pool`` to version ``target`` (see the module's
    docstring). ``hosts``: the pool's hosts, warm and leaving ones left out; ``state``: the refresh
    in progress (None: a refresh about to start - no host launched by it, nothing passed)."""
    if desired < 0:
        raise InvalidArgumentError(f"desired must be 0 or more, got {desired}")
    if not target:
        raise InvalidArgumentError(f"pool {pool}: no template version to refresh to")
    floor, ceiling = bounds(desired, settings)
    started = state.started if state is not None else now
    launched_here = set(state.launched) if state is not None else set()

    def matches(host: HostLike) -> bool:
        return host.version == target and (settings.skip_matching or host.created >= started
                                           or host.name in launched_here)

    def counts(host: HostLike) -> bool:
        """Serving in the refresh's sense: UP, and past its warmup when it is a new host."""
        if not _serving(host):
            return False
        return not matches(host) or (host.up_for or 0.0) >= settings.warmup

    new = [h for h in hosts if matches(h)]
    old = sorted((h for h in hosts if not matches(h)), key=lambda h: (h.created, h.name))
    versions: dict[str, int] = {}
    for host in hosts:
        key = host.version or "none"
        versions[key] = versions.get(key, 0) + 1
    failed = tuple(
        h.name
        for h in new
        if h.name in launched_here
        and (not h.alive or (not _serving(h) and now - h.created >= settings.grace_period))
    )
    waiting = tuple(h.name for h in new if h.name not in failed and not counts(h))
    replaced = sum(1 for h in new if counts(h))
    serving = sum(1 for h in hosts if counts(h))

    def make(outcome: str, reason: str, **decided: Any) -> RefreshPlan:
        return RefreshPlan(
            pool=pool, outcome=outcome, reason=reason, target=target, desired=desired, floor=floor,
            ceiling=ceiling, serving=serving, live=sum(1 for h in hosts if h.alive), replaced=replaced,
            old=tuple(h.name for h in old), versions=versions, waiting=waiting, **decided,
        )

    if failed:
        can_roll_back = settings.auto_rollback and state is not None and not state.rolled_back
        return make(
            ROLLBACK if can_roll_back else FAILED,
            f"host(s) of version {target} launched by the refresh did not serve within "
            f"grace_period {settings.grace_period:g} s, or died: {', '.join(failed)}",
            failed=failed, terminate=failed,
        )
    if not old and len(new) >= desired and not waiting:
        return make(DONE, f"every host serves version {target}")

    # Old hosts that do not serve go at once; serving ones while the floor holds.
    idle_old = [h.name for h in old if not counts(h)]
    busy_old = [h.name for h in old if counts(h)]
    spare = max(0, serving - floor)
    percentage = 100 if desired == 0 else replaced * 100 // desired
    passed = set(state.checkpoints_passed) if state is not None else set()
    reached = [p for p in settings.checkpoints if p <= percentage and p not in passed and p < 100]
    paused = state is not None and state.paused_at is not None
    if reached or paused:
        # finish the batch (old hosts beyond the desired size), launch nothing
        extra = max(0, len([h for h in hosts if h.alive]) - len(idle_old) - desired)
        terminate = tuple(idle_old + busy_old[: min(extra, spare)])
        point = reached[-1] if reached else state.paused_at if state is not None else None
        return make(PAUSED, f"checkpoint {point} % reached: the refresh waits to be resumed",
                    terminate=terminate, checkpoint=point)
    terminate = tuple(idle_old + busy_old[:spare])
    live_after = sum(1 for h in hosts if h.alive and h.name not in terminate)
    needed = max(0, desired - len([h for h in new if h.alive]))
    launch = max(0, min(needed, ceiling - live_after))
    if terminate or launch:
        return make(ACT, f"batch: {len(terminate)} terminated, {launch} launched",
                    terminate=terminate, launch=launch)
    if waiting:
        return make(WAIT, f"waiting for {', '.join(waiting)} to serve")
    return make(
        STUCK,
        f"{serving} serving host(s), floor {floor}, ceiling {ceiling}, {live_after} live: "
        "no host can be terminated or launched",
    )
