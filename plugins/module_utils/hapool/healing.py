"""The healer's decision: which hosts of a pool to replace, register, remove or leave alone.

Pure: the balancer's view (``show stat`` rows), the provider's list of instances, the event
history and the time are all passed in; :func:`plan_heal` reads nothing else.

Per host:

* **replace** - HAProxy holds the server DOWN (status class ``DOWN``: not MAINT, not DRAIN,
  not NOLB) and the instance is older than the pool's ``grace_period``; or the provider says
  the instance is not alive (its nginx / container is gone: no need to wait for checks); or an
  earlier, interrupted run already launched its replacement and that replacement is alive
  (``adopt``: the replacement is finished, whatever the old host's status - a host left in
  MAINT by a killed run, or one that came back UP, would otherwise stay beside its successor).
* **clean** - a dead instance that cannot be replaced without more than ``max`` live hosts:
  it is destroyed (and its server removed) without a replacement.
* **register** - a live instance the balancer does not know (launched, never registered).
* **remove_server** - a server the balancer has for which the provider has no instance
  (static servers of the pool's ``servers`` list are not the healer's).
* **wait** - DOWN but still in its grace period (booting).
* **keep** - everything else (UP, MAINT, DRAIN, NOLB, no check).

Guards:

* at most ``max_replace_per_run`` replacements of live hosts HAProxy holds DOWN (the hosts
  DOWN longest first), and at most ``max_replace_dead_per_run`` replacements of hosts the
  provider reports dead;
* the **circuit breaker** guards against a partition: it counts the servers whose host the
  provider reports alive (and the pool's static servers). When every one of them is DOWN, or
  their share of DOWN servers is above ``circuit_threshold``, no live host is replaced and the
  plan is ``circuit_open``: the fault is more likely between the balancer and the hosts than
  in the hosts. Hosts the provider reports dead are replaced whatever the breaker says (they
  are gone: no partition explains them), and so are adopted replacements;
* **the size invariant**: live hosts never exceed the pool's ``max``. A replacement is launched
  before the failed host is destroyed, unless that would make ``max`` + 1 live hosts: then the
  failed (DOWN) host is destroyed first (``destroy_first``); a dead host that cannot be
  replaced under ``max`` is cleaned;
* **backoff**: a crash-looping image is not relaunched in a loop. ``n`` counts the failures
  in a row of a host's line of replacements: each replacement in the line that failed within
  ``flap_window`` seconds of its launch (from the ``replace_launch`` / ``replace`` events that
  link a replacement to the host it replaced), plus each attempt to replace this host that
  failed (``replace_failed`` events: the launch itself failed, so the host was left in place).
  The host is not replaced again before ``backoff * 2**(n-1)`` seconds (capped by
  ``backoff_max``) after the later of the end of its grace period and the last failed attempt.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from .actions import (
    BACKOFF_SKIP,
    CIRCUIT_OPEN,
    CLEAN,
    REGISTER,
    REMOVE_SERVER,
    REPLACE,
    REPLACE_FAILED,
    REPLACE_LAUNCH,
)
from .errors import InvalidArgumentError
from .providers import new_instance_name
from .settings import number_setting, whole_setting
from .sizing import InstanceLike as Member
from .stats import FAILED_STATUSES

#: The events :func:`plan_heal` reads as history: a replacement about to be launched (its name,
#: picked by the plan, logged before the launch: the link survives a run that fails or is killed
#: later), a replacement done, and a failed attempt.
HISTORY_ACTIONS = (REPLACE, REPLACE_LAUNCH, REPLACE_FAILED)
#: Decisions of a plan that are no event: a host in its grace period, a host left alone, and a
#: replacement held back by a per-run cap. The other decisions (replace, register,
#: remove_server, clean, backoff_skip, circuit_open) are logged under the same name.
WAIT = "wait"
KEEP = "keep"
CAPPED = "over_limit"


class ServerLike(Protocol):
    """What the plan needs of a server row (``stats.StatRow`` fits)."""

    @property
    def server(self) -> str: ...

    @property
    def status_class(self) -> str: ...

    @property
    def lastchg(self) -> int | None: ...


class InstanceLike(Member, Protocol):
    """What the plan needs of an instance (``providers.Instance`` fits): a pool member's name
    and liveness, its creation time and the provider's word for its state."""

    @property
    def created(self) -> float: ...

    @property
    def state(self) -> str: ...


@dataclass(frozen=True)
class HealSettings:
    """A pool's healing settings (keys of its ``hapool_pools`` entry, or of its ``heal``)."""

    grace_period: float = 30.0
    max_replace_per_run: int = 1
    max_replace_dead_per_run: int = 10
    circuit_threshold: float = 0.5
    backoff: float = 60.0
    backoff_max: float = 3600.0
    flap_window: float = 300.0

    @classmethod
    def from_pool(cls, pool_cfg: Mapping[str, Any]) -> HealSettings:
        """Settings from a pool entry; keys under ``heal:`` win over top-level ones."""
        merged = {**pool_cfg, **(pool_cfg.get("heal") or {})}
        threshold = number_setting(merged, "circuit_threshold", cls.circuit_threshold)
        if threshold > 1:
            raise InvalidArgumentError(f"circuit_threshold must be a share from 0 to 1, got {threshold:g}")
        return cls(
            grace_period=number_setting(merged, "grace_period", cls.grace_period),
            max_replace_per_run=whole_setting(merged, "max_replace_per_run", cls.max_replace_per_run),
            max_replace_dead_per_run=whole_setting(
                merged, "max_replace_dead_per_run", cls.max_replace_dead_per_run
            ),
            circuit_threshold=threshold,
            backoff=number_setting(merged, "backoff", cls.backoff),
            backoff_max=number_setting(merged, "backoff_max", cls.backoff_max),
            flap_window=number_setting(merged, "flap_window", cls.flap_window),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What to do with one host (an instance, a server, or both)."""

    action: str
    name: str
    reason: str
    in_balancer: bool = False
    has_instance: bool = False
    status: str | None = None
    age: float | None = None
    not_before: float | None = None  # backoff: earliest time of the next replacement
    # replace: the name of the host that replaces this one - a new name (see
    # name_new_replacements), or, with ``adopt``, a live host an earlier, interrupted run
    # already launched for it (that replacement is finished instead of launching another)
    replacement: str | None = None
    adopt: bool = False
    # adopt: when the earlier run logged the replacement's launch (its replace_launch event) -
    # the start of the replacement, for the replace event's duration
    launched_at: float | None = None
    dead: bool = False  # the provider reports the host dead
    # replace: destroy the failed host before launching its replacement (launching first
    # would make more than ``max`` live hosts)
    destroy_first: bool = False
    # replace: the replacement is a warm host of the pool (``replacement``), taken into service
    # instead of launching one (hapool.warm)
    promote: bool = False
    # adopt: the earlier run (the watcher's fast path, or an interrupted heal run) took a warm
    # host into service as the replacement (its event says so); nothing is promoted again
    promoted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "name": self.name,
            "reason": self.reason,
            "in_balancer": self.in_balancer,
            "has_instance": self.has_instance,
            "status": self.status,
            "age": None if self.age is None else round(self.age, 3),
            "not_before": self.not_before,
            "replacement": self.replacement,
            "adopt": self.adopt,
            "launched_at": self.launched_at,
            "dead": self.dead,
            "destroy_first": self.destroy_first,
            "promote": self.promote,
            "promoted": self.promoted,
        }


@dataclass(frozen=True)
class HealPlan:
    pool: str
    settings: HealSettings
    decisions: tuple[Decision, ...]
    circuit_open: bool = False
    circuit_reason: str = ""
    servers_total: int = 0
    servers_down: int = 0
    notes: tuple[str, ...] = field(default=())

    def names(self, action: str) -> list[str]:
        return [d.name for d in self.decisions if d.action == action]

    @property
    def replace(self) -> list[str]:
        return self.names(REPLACE)

    @property
    def register(self) -> list[str]:
        return self.names(REGISTER)

    @property
    def remove_servers(self) -> list[str]:
        return self.names(REMOVE_SERVER)

    @property
    def clean(self) -> list[str]:
        return self.names(CLEAN)

    @property
    def changes(self) -> bool:
        return bool(self.replace or self.register or self.remove_servers or self.clean)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "settings": self.settings.as_dict(),
            "decisions": [d.as_dict() for d in self.decisions],
            "replace": self.replace,
            "register": self.register,
            "remove_servers": self.remove_servers,
            "clean": self.clean,
            "backoff": self.names(BACKOFF_SKIP),
            "circuit_open": self.circuit_open,
            "circuit_reason": self.circuit_reason,
            "servers_total": self.servers_total,
            "servers_down": self.servers_down,
            "changes": self.changes,
        }


def _predecessors(history: Sequence[Mapping[str, Any]], pool: str) -> dict[str, Mapping[str, Any]]:
    """replacement name -> the ``replace_launch`` or ``replace`` event that launched it."""
    found: dict[str, Mapping[str, Any]] = {}
    for event in history:
        if (
            event.get("pool") == pool
            and event.get("action") in (REPLACE, REPLACE_LAUNCH)
            and event.get("replacement")
        ):
            found[str(event["replacement"])] = event
    return found


def launched_replacement(
    name: str, by_instance: Mapping[str, InstanceLike], *, history: Sequence[Mapping[str, Any]], pool: str
) -> str | None:
    """The live host an earlier run launched to replace ``name`` (a ``replace_launch`` event)
    when that run ended before it destroyed ``name`` (killed, or destroying failed)."""
    for replacement, event in _predecessors(history, pool).items():
        if event.get("instance") == name and replacement in by_instance and by_instance[replacement].alive:
            return replacement
    return None


def superseded(
    instances: Sequence[InstanceLike],
    history: Sequence[Mapping[str, Any]],
    pool: str,
    *,
    leaving: Collection[str] = (),
) -> set[str]:
    """The live hosts whose replacement an earlier, interrupted run launched and that
    replacement is alive (and not leaving): the next heal run destroys them (``adopt``), so
    they do not count toward the pool's size."""
    by_instance = {i.name: i for i in instances}
    found = set()
    for inst in instances:
        successor = launched_replacement(inst.name, by_instance, history=history, pool=pool)
        if inst.alive and inst.name not in leaving and successor is not None and successor not in leaving:
            found.add(inst.name)
    return found


def name_new_replacements(plan: HealPlan, taken: Collection[str], rng: random.Random) -> HealPlan:
    """The plan with a new instance name for each replacement to launch (``taken``: every
    name the pool ever used). Named before the launch, the replacement can be logged
    (``replace_launch``) before it exists, so a run killed right after the launch leaves a
    host the next run recognises and adopts."""
    used = set(taken)
    decisions = []
    for decision in plan.decisions:
        if decision.action == REPLACE and decision.replacement is None:
            name = new_instance_name(plan.pool, rng, used)
            used.add(name)
            decisions.append(replace(decision, replacement=name))
        else:
            decisions.append(decision)
    return replace(plan, decisions=tuple(decisions))


def failed_attempts(
    name: str, *, history: Sequence[Mapping[str, Any]], pool: str
) -> tuple[int, float | None]:
    """How many attempts to replace ``name`` failed (``replace_failed`` events; a host whose
    replacement never launched is still there, so they are all in a row), and when the last one
    was logged (None when none failed)."""
    times = [
        float(event.get("time") or 0.0)
        for event in history
        if (event.get("pool"), event.get("action"), event.get("instance")) == (pool, REPLACE_FAILED, name)
    ]
    return len(times), (max(times) if times else None)


def early_failures(
    name: str,
    created: float,
    *,
    now: float,
    history: Sequence[Mapping[str, Any]],
    pool: str,
    flap_window: float,
) -> int:
    """How many replacements in a row, ending with ``name`` failing now, failed within
    ``flap_window`` seconds of their launch (0 when ``name`` is not such a replacement)."""
    launched_by = _predecessors(history, pool)
    if name not in launched_by or now - created > flap_window:
        return 0
    count = 1
    seen = {name}
    event = launched_by[name]
    while True:
        previous = str(event.get("instance") or "")
        age = event.get("age")
        if not previous or previous in seen or previous not in launched_by:
            break
        if age is None or float(age) > flap_window:
            break
        count += 1
        seen.add(previous)
        event = launched_by[previous]
    return count


def backoff_delay(failures: int, settings: HealSettings) -> float:
    if failures <= 0:
        return 0.0
    return float(min(settings.backoff * (2 ** (failures - 1)), settings.backoff_max))


def _judge_instance(
    inst: InstanceLike, row: ServerLike | None, settings: HealSettings, now: float
) -> tuple[Decision, float]:
    """The decision for one instance, and (for replacements) how long it has been failing."""
    age = now - float(inst.created)
    status = row.status_class if row is not None else None

    def decide(action: str, reason: str) -> Decision:
        return Decision(
            action, inst.name, reason, in_balancer=row is not None, has_instance=True, status=status, age=age,
            dead=not inst.alive,
        )

    if not inst.alive:
        return decide(REPLACE, f"the provider reports it {inst.state}"), float("inf")
    if row is None:
        return decide(REGISTER, "alive but not in the balancer"), 0.0
    if status in FAILED_STATUSES:
        down_for = float(row.lastchg) if row.lastchg is not None else 0.0
        if age <= settings.grace_period:
            reason = f"DOWN, in its grace period ({age:.0f} s of {settings.grace_period:g} s)"
            return decide(WAIT, reason), 0.0
        return decide(REPLACE, f"HAProxy holds it DOWN (for {down_for:.0f} s)"), down_for
    return decide(KEEP, f"status {status}"), 0.0


def circuit_state(rows: Sequence[ServerLike], pool: str, threshold: float) -> tuple[int, int, str]:
    """(servers, DOWN servers, why the circuit is open or ""), over the servers the breaker
    counts (those whose host the provider reports alive, and static servers)."""
    total = len(rows)
    down = sum(1 for row in rows if row.status_class in FAILED_STATUSES)
    if total and down == total:
        return total, down, f"all {total} live server(s) of pool {pool} are DOWN"
    if total and down / total > threshold:
        share = f"more than {threshold:.0%}"
        return total, down, f"{down} of {total} live servers of pool {pool} are DOWN ({share})"
    return total, down, ""


def pool_max(pool_cfg: Mapping[str, Any]) -> int | None:
    """The pool's ``max`` (None when the pool sets none)."""
    if pool_cfg.get("max") is None:
        return None
    return whole_setting(pool_cfg, "max", None)


def plan_heal(
    pool_cfg: Mapping[str, Any],
    servers: Sequence[ServerLike],
    instances: Sequence[InstanceLike],
    history: Sequence[Mapping[str, Any]],
    now: float,
    *,
    leaving: Collection[str] = (),
) -> HealPlan:
    """Decide what the healer does with a pool (see the module docstring). ``leaving`` names
    the hosts a scale-in is removing: the healer keeps its hands off them."""
    pool = str(pool_cfg.get("name") or "")
    if not pool:
        raise InvalidArgumentError("the pool has no name")
    settings = HealSettings.from_pool(pool_cfg)
    max_size = pool_max(pool_cfg)
    static = {str(s.get("name")) for s in pool_cfg.get("servers") or [] if isinstance(s, Mapping)}
    by_server = {s.server: s for s in servers if s.server not in ("BACKEND", "FRONTEND")}
    by_instance = {i.name: i for i in instances}

    decisions: list[Decision] = []
    candidates: list[tuple[float, Decision]] = []
    for name, inst in by_instance.items():
        if name in leaving:
            row = by_server.get(name)
            status = None if row is None else row.status_class
            reason = "leaving: a scale-in is removing it"
            decisions.append(
                Decision(KEEP, name, reason, in_balancer=row is not None, has_instance=True, status=status)
            )
            continue
        decision, failing_for = _judge_instance(inst, by_server.get(name), settings, now)
        successor = launched_replacement(name, by_instance, history=history, pool=pool)
        if successor is not None and successor not in leaving:
            # An earlier run launched this host's replacement and ended before it destroyed this
            # host: finish that replacement whatever this host's status is now.
            reason = f"{decision.reason}; its replacement {successor} was launched by an earlier run"
            launch = _predecessors(history, pool).get(successor) or {}
            launched_at = launch.get("time") if isinstance(launch.get("time"), (int, float)) else None
            decision = replace(
                decision,
                action=REPLACE,
                reason=reason,
                replacement=successor,
                adopt=True,
                launched_at=None if launched_at is None else float(launched_at),
                promoted=bool(launch.get("promote") or launch.get("promoted")),
            )
            failing_for = float("inf")
        if decision.action == REPLACE:
            candidates.append((failing_for, decision))
        else:
            decisions.append(decision)
    for name, row in by_server.items():
        if name not in by_instance:
            action, reason = (
                (KEEP, "a static server of the pool") if name in static
                else (REMOVE_SERVER, "in the balancer, no instance")
            )  # fmt: skip
            decisions.append(Decision(action, name, reason, in_balancer=True, status=row.status_class))

    # The breaker counts the servers of live hosts and the static servers: a dead host is no
    # sign of a partition.
    counted = [
        row for name, row in by_server.items()
        if (name in by_instance and by_instance[name].alive) or (name not in by_instance and name in static)
    ]  # fmt: skip
    total, down, circuit_reason = circuit_state(counted, pool, settings.circuit_threshold)
    alive = sum(1 for i in instances if i.alive)
    decisions += _guard(
        candidates, by_instance, settings, history, pool, now, circuit_reason, alive=alive, max_size=max_size
    )

    order = {n: i for i, n in enumerate([*by_instance, *by_server])}
    decisions.sort(key=lambda d: order.get(d.name, 0))
    return HealPlan(
        pool=pool,
        settings=settings,
        decisions=tuple(decisions),
        circuit_open=bool(circuit_reason),
        circuit_reason=circuit_reason,
        servers_total=total,
        servers_down=down,
    )


def _backoff(  # noqa: PLR0917 - internal
    decision: Decision,
    inst: InstanceLike,
    settings: HealSettings,
    history: Sequence[Mapping[str, Any]],
    pool: str,
    now: float,
) -> Decision | None:
    """The ``backoff_skip`` decision when replacing ``inst`` now would relaunch a crash loop."""
    created = float(inst.created)
    early = early_failures(
        decision.name, created, now=now, history=history, pool=pool, flap_window=settings.flap_window
    )
    attempts, last_attempt = failed_attempts(decision.name, history=history, pool=pool)
    failures = early + attempts
    not_before = max(created + settings.grace_period, last_attempt or 0.0) + backoff_delay(failures, settings)
    if not failures or now >= not_before:
        return None
    why = []
    if early:
        window = f"{settings.flap_window:g} s"
        why.append(f"{early} replacement(s) in a row failed within {window} of launch")
    if attempts:
        why.append(f"{attempts} attempt(s) to replace it failed")
    reason = f"{decision.reason}; {' and '.join(why)}: backed off for {not_before - now:.0f} s more"
    return replace(decision, action=BACKOFF_SKIP, reason=reason, not_before=not_before)


def _guard(  # noqa: PLR0917 - internal
    candidates: list[tuple[float, Decision]],
    by_instance: Mapping[str, InstanceLike],
    settings: HealSettings,
    history: Sequence[Mapping[str, Any]],
    pool: str,
    now: float,
    circuit_reason: str,
    *,
    alive: int,
    max_size: int | None,
) -> list[Decision]:
    """Apply the circuit breaker (live hosts only), the backoff, the per-run caps and ``max``
    to the candidates (adopted replacements and dead hosts first, then the longest DOWN).
    ``alive``: the pool's live hosts now; it never goes above ``max_size``."""
    out: list[Decision] = []
    replaced = {True: 0, False: 0}  # per kind: dead hosts, live hosts
    caps = {True: settings.max_replace_dead_per_run, False: settings.max_replace_per_run}
    # Adopted replacements first: the hosts they supersede leave the live count before a dead
    # host is judged against max.
    for _, candidate in sorted(candidates, key=lambda item: (not item[1].adopt, -item[0], item[1].name)):
        decision = candidate
        if circuit_reason and not decision.dead and not decision.adopt:
            out.append(replace(decision, action=CIRCUIT_OPEN, reason=f"not replaced: {circuit_reason}"))
            continue
        if not decision.adopt:
            backed_off = _backoff(decision, by_instance[decision.name], settings, history, pool, now)
            if backed_off is not None:
                out.append(backed_off)
                continue
        if replaced[decision.dead] >= caps[decision.dead]:
            key = "max_replace_dead_per_run" if decision.dead else "max_replace_per_run"
            reason = f"{decision.reason}; {key} ({caps[decision.dead]}) reached"
            out.append(replace(decision, action=CAPPED, reason=reason))
            continue
        if decision.adopt:
            # No launch: the earlier run's replacement is alive already (and counted).
            alive -= 0 if decision.dead else 1
        elif max_size is not None and alive + 1 > max_size:
            if decision.dead:
                reason = f"{decision.reason}; not replaced: the pool has {alive} live host(s), its max"
                out.append(replace(decision, action=CLEAN, reason=reason, replacement=None))
                continue
            decision = replace(decision, destroy_first=True)
        elif decision.dead:
            alive += 1
        replaced[decision.dead] += 1
        out.append(decision)
    return out


#: The lists of heal_plan's ``todo`` result and the decisions each one takes.
TODO_ACTIONS: dict[str, tuple[str, ...]] = {
    "replace": (REPLACE, CLEAN),
    "remove_servers": (REMOVE_SERVER,),
    "register": (REGISTER,),
}


def loop_items(plan: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A plan's decisions (:meth:`HealPlan.as_dict`) as lists ready to loop over (heal_plan's
    ``todo``, see :data:`TODO_ACTIONS`), each entry a copy of its decision with the plan's pool."""
    pool = plan["pool"]
    return {
        key: [{**decision, "pool": pool} for decision in plan["decisions"] if decision["action"] in actions]
        for key, actions in TODO_ACTIONS.items()
    }


__all__ = [
    "BACKOFF_SKIP",
    "CAPPED",
    "CIRCUIT_OPEN",
    "CLEAN",
    "HISTORY_ACTIONS",
    "KEEP",
    "REGISTER",
    "REMOVE_SERVER",
    "REPLACE",
    "REPLACE_FAILED",
    "REPLACE_LAUNCH",
    "TODO_ACTIONS",
    "WAIT",
    "Decision",
    "HealPlan",
    "HealSettings",
    "InstanceLike",
    "ServerLike",
    "backoff_delay",
    "circuit_state",
    "early_failures",
    "failed_attempts",
    "launched_replacement",
    "loop_items",
    "name_new_replacements",
    "plan_heal",
    "pool_max",
    "superseded",
]
