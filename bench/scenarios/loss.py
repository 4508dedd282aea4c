"""Total loss: every host of a 4-host pool killed at once -> all 4 serving again, timer vs watcher.

One local deployment of 4 hosts (`site.yml`, checks `inter 1s fastinter 500ms fall 2`). For
each way of triggering `heal.yml` (the heal scenario's: cron + 10 s ticks, or the watcher),
``repeat`` times: a bounded wrk load runs through the balancer, every host's nginx is killed
(`kill -9` of masters and workers), and the clock stops when 4 hosts that did not exist before
the kill answer through the balancer. The circuit breaker does not stop this (the provider
reports the hosts dead: no partition), and `max_replace_dead_per_run` (10) lets one run
replace all 4. Failed requests are those of the window in which no host was left.
"""

from __future__ import annotations

import time
from typing import Any

from helpers.chaos import view
from helpers.heal import deployments, instances, kill_hard
from helpers.procs import cron_daemon, wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, Wrk, fmt_summary, summary
from bench.scenarios.heal import MODES, WRK, _answer, heal_trigger

NAME = "loss"
TITLE = "Total loss: every host of a 4-host pool killed at once → all 4 serving again"
HOSTS = 4


def _converged(dep: Deployment, timeout: float = 240) -> set[str]:
    wait_until(lambda: view(dep).converged_to == HOSTS, timeout, f"{HOSTS} live hosts, all UP", interval=0.5)
    names = set(view(dep).provider)
    bodies = dep.hosts_answering(HOSTS, deadline_s=30)
    if {f"Hello {n}!" for n in names} - bodies:
        raise BenchError(f"not every host answers: {names} vs {bodies}")
    return names


def one_loss(dep: Deployment, budget_s: float) -> dict[str, Any]:
    before = _converged(dep)
    load = Wrk(f"http://127.0.0.1:{dep.frontend}/", seconds=budget_s + 20, **WRK)
    try:
        time.sleep(2)
        killed = time.monotonic()
        for inst in instances(dep, "local"):
            kill_hard(inst)
        seen: set[str] = set()
        first_s = all_s = None
        while time.monotonic() - killed < budget_s and all_s is None:
            body = _answer(dep)
            if body and body.startswith("Hello ") and body[6:-1] not in before:
                seen.add(body)
                first_s = first_s or time.monotonic() - killed
                if len(seen) >= HOSTS:
                    all_s = time.monotonic() - killed
            time.sleep(0.05)
        time.sleep(1)
    finally:
        result = load.stop()
    if all_s is None:
        raise BenchError(f"{len(seen)} of {HOSTS} new hosts served within {budget_s:.0f} s")
    return {
        "first_s": first_s,
        "all_s": all_s,
        "requests": result.requests,
        "failed": result.failed,
    }


def run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"modes": list(MODES), "wrk": WRK, "repeat": ctx.repeat, "hosts": HOSTS,
                           "per_mode": {}}
    with cron_daemon():
        made = deployments(ctx.dir("loss-local"))
        make = next(made)
        try:
            dep = make("local", desired=HOSTS, max=6, flap_window=0)
            for mode in MODES:
                losses = []
                with heal_trigger(dep, mode):
                    for i in range(ctx.repeat):
                        loss = one_loss(dep, budget_s=180)
                        ctx.log(f"loss/{mode} #{i + 1}: first new host {loss['first_s']:.1f} s, all {HOSTS} "
                                f"{loss['all_s']:.1f} s, {loss['failed']}/{loss['requests']} failed")
                        losses.append(loss)
                out["per_mode"][mode] = {
                    "losses": losses,
                    "first_s": summary([x["first_s"] for x in losses]),
                    "all_s": summary([x["all_s"] for x in losses]),
                    "failed": sum(x["failed"] for x in losses),
                    "requests": sum(x["requests"] for x in losses),
                }
        finally:
            for _ in made:
                pass
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"A local pool of {r['hosts']} hosts; every host's nginx is killed at once (`kill -9`) while wrk "
        f"(`-t{r['wrk']['threads']} -c{r['wrk']['connections']}`, {r['wrk']['delay_ms']} ms between a "
        "connection's requests) runs through the balancer; the clock stops when all "
        f"{r['hosts']} new hosts have answered. The circuit breaker lets dead hosts be replaced (they are "
        "no sign of a partition) and one heal run replaces all of them (`max_replace_dead_per_run` 10): "
        "launched one after the other, provisioned together. "
        f"Median (range) of {r['repeat']} losses per row.",
        "",
        f"| trigger | kill → first new host serving | kill → all {r['hosts']} serving | "
        "wrk requests | failed (no host left) |",
        "|---|---|---|---|---|",
    ]
    for mode, m in r["per_mode"].items():
        lines.append(
            f"| {mode} | {fmt_summary(m['first_s'], 's')} | **{fmt_summary(m['all_s'], 's')}** "
            f"| {m['requests']:,} | {m['failed']:,} |"
        )
    lines += [
        "",
        "Before this rule, the circuit breaker saw every server DOWN and refused to act on every run: "
        "the pool stayed at zero hosts until a person ran site.yml.",
    ]
    return "\n".join(lines)
