"""Load step -> new capacity serving, with the real triggers: provisioned vs template vs warm pool.

Per provider (local, docker) and row, one deployment of 1 host (`site.yml`, checks `inter 1s
fastinter 500ms fall 2`), target tracking on the request rate (TARGET req/s per host), cooldowns
0, scale-in stabilization STABILIZATION s, drain timeout 10 s. The schedule is installed for real
by `playbooks/heal_timer.yml` with `heal_timer_playbook: reconcile.yml` (heal, then scale):

* **timer**: cron runs the wrapper every minute, which starts a tick every 10 s; each tick runs the
  watcher's `--once` first (for a template pool: the scale-out fast path, `hapool.fastscale`),
  then `reconcile.yml`; no watcher;
* **timer + watcher**: the same, and the watcher, which plans the template pools every 2 s
  (the scale-out fast path) and starts a tick when it took hosts in.

Rows: **provisioned** (a new host is launched bare and provisioned by `nginx_web`, then the
re-render registers it), **template** (launched from the pool's baked version, registered at
runtime at once), **template + warm pool** (`warm: {size: 2}`: the scale-out promotes warm
hosts, a runtime weight change each; the pool is refilled afterwards).

Each cycle: a paced load of RATE_LOW req/s runs all along; after a random 0-10 s (where in the
timer's period the step falls), a second load brings it to RATE_HIGH req/s (1 -> 3 hosts). The
clock stops when HAProxy has every new host UP and each one has answered a request of the load.
Then the load steps down and the timer's scale.yml drains the pool back to 1 host after the
stabilization window; every request is counted.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterator
from typing import Any

from helpers.heal import deployments, events, instances, server_status
from helpers.load import Load, Outcome
from helpers.procs import cron_daemon, wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, fmt_summary, summary
from bench.scenarios.heal import heal_trigger
from bench.scenarios.scale import RATE_HIGH, RATE_LOW, STABILIZATION, TARGET
from bench.scenarios.scale import settings as scale_settings

NAME = "step"
TITLE = "Load step → new capacity serving, with the real trigger: provisioned, template, warm pool"
# The rates, the target and the scale settings are the hand-run `scale` scenario's.
TIMER_PERIOD = 10.0
WARM = 2
ROWS = {
    # label: (pool settings, schedule settings)
    "provisioned, timer": ({}, "timer"),
    "template, timer": ({"template": {"enabled": True}}, "timer"),
    "template, timer + watcher": ({"template": {"enabled": True}}, "both"),
    "template + warm pool, timer + watcher": (
        {"template": {"enabled": True}, "warm": {"size": WARM}}, "both"),
}
SCHEDULES = {
    "timer": {"heal_timer_scheduler": "cron", "heal_timer_period": 10, "heal_timer_watch": False,
              "heal_timer_playbook": "reconcile.yml"},
    "both": {"heal_timer_scheduler": "cron", "heal_timer_period": 10, "heal_timer_watch": True,
             "heal_timer_playbook": "reconcile.yml"},
}


def warm_names(dep: Deployment) -> set[str]:
    path = dep.root / "warm" / "web.json"
    return set(json.loads(path.read_text())["hosts"]) if path.exists() else set()


def members(dep: Deployment, provider: str) -> set[str]:
    """The pool's live hosts, warm hosts left out."""
    warm = warm_names(dep)
    return {i.name for i in instances(dep, provider) if i.alive and i.name not in warm}


def statuses(dep: Deployment, provider: str) -> dict[str, str]:
    return server_status(dep, provider)


def failed(outcomes: list[Outcome]) -> int:
    return sum(1 for o in outcomes if o.status != 200)


def settled(dep: Deployment, provider: str, warm: int, timeout: float = 300) -> set[str]:
    """1 member and ``warm`` warm hosts, all UP, and no other live host; the member."""

    def ok() -> bool:
        live = {i.name for i in instances(dep, provider) if i.alive}
        status = statuses(dep, provider)
        m, w = members(dep, provider), warm_names(dep) & live
        return len(m) == 1 and len(w) == warm and live == m | w and all(status.get(n) == "UP" for n in live)

    wait_until(ok, timeout, f"1 host and {warm} warm host(s), all UP ({provider})", interval=0.5)
    return members(dep, provider)


def cycle(dep: Deployment, provider: str, low: Load, warm: int) -> dict[str, Any]:
    first = settled(dep, provider, warm)
    expected = math.ceil(RATE_HIGH / TARGET)
    mark = time.time()
    time.sleep(random.uniform(0, TIMER_PERIOD))  # noqa: S311 - where in the timer's period the step falls
    high = Load("127.0.0.1", dep.frontend, clients=6, rate=RATE_HIGH - RATE_LOW,
                max_requests=100_000, max_seconds=400).start()
    try:
        step = time.monotonic()
        wait_until(lambda: len(members(dep, provider)) >= expected, 240,
                   f"{expected} hosts after the load step ({provider})", interval=0.1)
        grown = members(dep, provider)
        for name in sorted(grown - first):
            high.wait_for(f"Hello {name}!", timeout=120)
        wait_until(lambda: sum(1 for n in grown if statuses(dep, provider).get(n) == "UP") == len(grown), 60,
                   f"{len(grown)} servers UP", interval=0.1)
        capacity_s = time.monotonic() - step
        # the tick that adopts (or provisions) the new hosts ends before the load drops
        wait_until(lambda: len([e for e in events(dep) if e["action"] == "scale_launch"
                                and e["instance"] in grown - first]) == len(grown - first),
                   240, "the scale_launch events", interval=0.5)
    finally:
        step_outcomes = high.stop()
    before = low.mark()
    down = time.monotonic()
    wait_until(lambda: len(members(dep, provider)) == 1, 300, f"the pool back to 1 host ({provider})",
               interval=0.5)
    back_s = time.monotonic() - down
    after = low.mark()
    during_in = [o for o in list(low.outcomes) if before < o.seq < after]
    launches = [e for e in events(dep) if e["action"] == "scale_launch" and e["instance"] in grown - first
                and float(e["time"]) >= mark]
    return {
        "hosts": [len(first), len(grown)],
        "new": sorted(grown - first),
        "capacity_s": capacity_s,
        "serving_s": [e.get("serving_seconds") for e in launches],
        "launch_s": [e.get("launch_seconds") for e in launches],
        "promoted": sum(1 for e in launches if e.get("promoted") in (True, "True", "true")),
        "scale_in_s": back_s,
        "step_requests": len(step_outcomes),
        "step_failed": failed(step_outcomes),
        "scale_in_requests": len(during_in),
        "scale_in_failed": failed(during_in),
    }


@contextlib.contextmanager
def schedule(dep: Deployment, kind: str) -> Iterator[str]:
    """The schedule of the row, installed by heal_timer.yml (cron must run: cron_daemon())."""
    with heal_trigger(dep, "timer", settings=SCHEDULES[kind]) as name:
        yield name


def run(ctx: Context) -> dict[str, Any]:
    rates = {"low": RATE_LOW, "high": RATE_HIGH, "target_per_host": TARGET}
    out: dict[str, Any] = {"rows": {}, "rates": rates, "stabilization_s": STABILIZATION, "warm": WARM,
                           "cycles": ctx.repeat}
    with cron_daemon():
        for provider in ctx.providers:
            for label in ROWS:
                _row(ctx, out, provider, label)
    return out


def _row(ctx: Context, out: dict[str, Any], provider: str, label: str) -> None:
    """One row: a deployment, its schedule, ``ctx.repeat`` cycles; the figures into ``out``."""
    pool, kind = ROWS[label]
    made = deployments(ctx.dir(f"step-{provider}-{len(out['rows'])}"))
    make = next(made)
    try:
        warm = int((pool.get("warm") or {}).get("size", 0))
        dep = make(provider, desired=1, min=1, max=4, **pool)
        dep.extra_vars["hapool_pools"][0]["scale"] = scale_settings(dep)
        # the fast-path file with the scale settings; the warm pool filled
        ready = dep.play("heal.yml")
        if ready.returncode != 0:
            raise BenchError(f"heal.yml failed:\n{ready.stdout[-3000:]}")
        low = Load("127.0.0.1", dep.frontend, clients=2, rate=RATE_LOW, max_requests=200_000,
                   max_seconds=900 * ctx.repeat + 300).start()
        cycles = []
        try:
            with schedule(dep, kind):
                for i in range(ctx.repeat):
                    c = cycle(dep, provider, low, warm)
                    ctx.log(f"step/{provider}/{label} #{i + 1}: {c['hosts']} hosts, capacity "
                            f"serving after {c['capacity_s']:.1f} s (promoted {c['promoted']}), "
                            f"back to 1 after {c['scale_in_s']:.0f} s, "
                            f"{c['step_failed'] + c['scale_in_failed']} failed")
                    cycles.append(c)
        finally:
            low_outcomes = low.stop()
    finally:
        for _ in made:
            pass
    out["rows"][f"{provider}|{label}"] = {
        "provider": provider,
        "row": label,
        "cycles": cycles,
        "capacity_s": summary([c["capacity_s"] for c in cycles]),
        "serving_s": summary([s for c in cycles for s in c["serving_s"] if s is not None]),
        "launch_s": summary([s for c in cycles for s in c["launch_s"] if s is not None]),
        "scale_in_s": summary([c["scale_in_s"] for c in cycles]),
        "promoted": sum(c["promoted"] for c in cycles),
        "requests": len(low_outcomes) + sum(c["step_requests"] for c in cycles),
        "failed": failed(low_outcomes) + sum(c["step_failed"] for c in cycles),
        "scale_in_failed": sum(c["scale_in_failed"] for c in cycles),
        "scale_in_requests": sum(c["scale_in_requests"] for c in cycles),
    }


def markdown(r: dict[str, Any]) -> str:
    rates = r["rates"]
    lines = [
        f"Per provider and row, a pool of 1 host with target tracking at {rates['target_per_host']:g} "
        f"req/s per host; a paced load of {rates['low']:g} req/s steps to {rates['high']:g} req/s "
        "(1 → 3 hosts) at a random point of the timer's 10 s period, and back. The schedule is "
        "installed by `heal_timer.yml` with `reconcile.yml` ticks: **timer** (cron, a tick every 10 s; "
        "each tick runs the scale-out fast path first for a template pool), **timer + watcher** (and "
        "the watcher, which plans the template pools every 2 s and launches or promotes the new hosts "
        "itself; the next tick's scale.yml adopts them). **provisioned**: new hosts are launched bare "
        "and provisioned by `nginx_web`; **template**: launched from the baked version and added at "
        f"runtime; **warm pool**: {r['warm']} warm hosts promoted (a weight change), refilled "
        "afterwards. Capacity is serving when HAProxy has every new host UP and each one answered "
        "the load; decision → UP is the `scale_launch` event's `serving_seconds` (0 for a promoted "
        "warm host: it was UP). Back to 1 host: the step down → the pool drained to 1 by the timer's "
        f"scale.yml (stabilization {r['stabilization_s']:g} s). Median (range) of {r['cycles']} cycles "
        "per row.",
        "",
        "| provider | row | load step → new capacity serving | decision → UP per host | back to 1 host "
        "| failed requests |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"].values():
        lines.append(
            f"| {row['provider']} | {row['row']} | **{fmt_summary(row['capacity_s'], 's')}** | "
            f"{fmt_summary(row['serving_s'], 's')} | {fmt_summary(row['scale_in_s'], 's', 0)} | "
            f"{row['failed']} of {row['requests']:,} |"
        )
    return "\n".join(lines)
