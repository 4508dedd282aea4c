"""Kill -> capacity restored with a warm pool, side by side with the same pool without one.

Per provider (local, docker), two pools of 2 hosts with a baked launch template (`site.yml`,
checks `inter 1s fastinter 500ms fall 2`, `flap_window 0`), one of them with `warm: {size: 1}`
(a heal run fills it: one more host from the template, in the balancer with weight 0). The heal
watcher runs (`heal_timer.yml`, fast path on). Each kill: wrk through the balancer, one serving
host killed hard; the clock stops at the first answer of a host that did not answer before - the
promoted warm host, or the replacement launched from the template. Then the heal run adopts the
new host, and refills the warm pool (the next kill waits for 2 members and 1 warm host, all UP).
"""

from __future__ import annotations

import json
from typing import Any

from helpers.heal import deployments, events, instances, server_status
from helpers.procs import wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, fmt_summary, summary
from bench.scenarios.heal import WRK, converged, heal_trigger, one_kill

NAME = "warm"
TITLE = "Kill → capacity restored: a warm host promoted vs a replacement launched from the template"
DESIRED = 2
KILLS = 5
POOLS = {
    "template": {"template": {"enabled": True}},
    "template + warm pool": {"template": {"enabled": True}, "warm": {"size": 1}},
}


def _warm(dep: Deployment) -> list[str]:
    path = dep.root / "warm" / "web.json"
    return sorted(json.loads(path.read_text())["hosts"]) if path.exists() else []


def warm_ready(dep: Deployment, provider: str, timeout: float = 240) -> set[str]:
    """2 members and 1 warm host, all UP in HAProxy; the members' names (the serving hosts)."""

    def whole() -> bool:
        warm = set(_warm(dep))
        live = [i.name for i in instances(dep, provider) if i.alive and i.name not in warm]
        status = server_status(dep, provider)
        return len(live) == DESIRED and len(warm) == 1 and all(status.get(n) == "UP" for n in [*live, *warm])

    wait_until(whole, timeout, f"{DESIRED} members and 1 warm host, all UP ({provider})", interval=0.5)
    warm = set(_warm(dep))
    return {i.name for i in instances(dep, provider) if i.alive and i.name not in warm}


def run(ctx: Context) -> dict[str, Any]:
    kills_wanted = max(ctx.repeat, KILLS)
    out: dict[str, Any] = {"providers": {}, "wrk": WRK, "kills": kills_wanted}
    for provider in ctx.providers:
        for label, settings in POOLS.items():
            made = deployments(ctx.dir(f"warm-{provider}-{len(label)}"))
            make = next(made)
            try:
                dep = make(provider, desired=DESIRED, max=3, flap_window=0, **settings)
                warm = "warm" in settings
                if warm:
                    ok = dep.play("heal.yml")  # fills the warm pool
                    if ok.returncode != 0:
                        raise BenchError(f"heal.yml failed:\n{ok.stdout[-3000:]}")
                ready = warm_ready if warm else converged
                kills = []
                with heal_trigger(dep, "watch"):
                    for i in range(kills_wanted):
                        k = one_kill(dep, provider, budget_s=120, ready=ready)
                        promoted = [e for e in events(dep) if e["action"] == "warm_promote"
                                    and e["instance"] == k["replacement"]]
                        k["promote_s"] = float(promoted[0]["duration"]) if promoted else None
                        ctx.log(f"warm/{provider}/{label} #{i + 1}: serving after {k['serving_s']:.2f} s "
                                f"(trigger {k['trigger_s']:.2f} s), {k['failed']}/{k['requests']} failed")
                        kills.append(k)
                        if warm:
                            warm_ready(dep, provider)  # refilled before the next kill
                out["providers"].setdefault(provider, {})[label] = {
                    "kills": kills,
                    "serving_s": summary([k["serving_s"] for k in kills]),
                    "trigger_s": summary([k["trigger_s"] for k in kills]),
                    "promote_s": summary([k["promote_s"] for k in kills]),
                    "failed": sum(k["failed"] for k in kills),
                    "requests": sum(k["requests"] for k in kills),
                }
            finally:
                for _ in made:
                    pass
    return out


def markdown(r: dict[str, Any]) -> str:
    intro = " ".join([
        f"Per provider, a pool of {DESIRED} hosts launched from its baked template, without and with a",
        "warm pool of 1 (a host from the template in the balancer with weight 0: checked, no traffic);",
        "the heal watcher with its fast path; a serving host is killed hard (`kill -9` of nginx,",
        f"`docker kill`) while wrk (`-t{r['wrk']['threads']} -c{r['wrk']['connections']}`,",
        f"{r['wrk']['delay_ms']} ms between a connection's requests) runs through the balancer; the clock",
        "stops at the first answer of a host that did not answer before, to a probe (open loop: a request",
        "every 100 ms, each on its own connection, so one held on the killed host - a dead container's",
        "address does not refuse: until `timeout connect`, 3 s, then a retry elsewhere - does not hold up",
        "the next). Without a warm pool the watcher",
        "launches a replacement from the template and adds it at runtime (it serves after its first good",
        "checks); with one, it promotes the warm host (a runtime weight change; the promotion column is",
        "the `warm_promote` event's duration). Trigger = kill → the watcher logged the replacement.",
        f"Median (range) and 90th percentile of {r['kills']} kills per row.",
    ])
    lines = [
        intro,
        "",
        "| provider | pool | kill → capacity restored | p90 | trigger | promotion | wrk requests | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for provider, rows in r["providers"].items():
        for label, m in rows.items():
            p90 = m["serving_s"].get("p90")
            lines.append(
                f"| {provider} | {label} | **{fmt_summary(m['serving_s'], 's', 2)}** "
                f"| {'n/a' if p90 is None else f'{p90:.2f} s'} "
                f"| {fmt_summary(m['trigger_s'], 's', 2)} "
                f"| {fmt_summary(m['promote_s'], 's', 3)} | {m['requests']:,} | {m['failed']} |"
            )
    ratios = []
    for provider, rows in r["providers"].items():
        base = rows.get("template", {}).get("serving_s", {}).get("median")
        warm = rows.get("template + warm pool", {}).get("serving_s", {}).get("median")
        if base and warm:
            word = "less" if warm <= base else "more"
            ratios.append(f"{provider}: {warm / base:.2f} x ({abs(base - warm):.2f} s {word})")
    if ratios:
        lines += ["", "With a warm pool, against the same pool without one: " + "; ".join(ratios) + "."]
    return "\n".join(lines)

