"""Load step -> new capacity serving, failed requests during scale-in, and the plot.

One pool on the local provider (min 1, max 4), target tracking on the request rate (TARGET
requests per second per host), cooldowns 0, scale-in stabilization STABILIZATION s. A paced
load of RATE_LOW req/s runs all along; ``repeat`` times:

1. the load steps up to RATE_HIGH req/s (a second paced load on top); ``scale.yml`` starts
   TRIGGER_S s after the step (HAProxy's request rate is over the last second; a watcher or a
   short timer would start it then); the clock stops when HAProxy has every new host UP and
   each one has answered a request of the load;
2. the load steps down; after the stabilization window ``scale.yml`` shrinks the pool back to
   one host, draining the others; every request of the load during that run is counted.

A sampler reads `show stat` every 0.5 s: the frontend's request rate and the backend's
servers in service (UP) and draining (DRAIN, or MAINT on their way out). The plot is
docs/img/bench-scale.png.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ansible.module_utils.hapool.stats import parse_show_stat
from helpers.heal import deployments, events, instances
from helpers.load import Load, Outcome
from helpers.procs import wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, Sampler, fmt_summary, summary

NAME = "scale"
TITLE = "Load step → new capacity serving, scale-in with draining, over time"
RATE_LOW = 15.0
RATE_HIGH = 110.0
TARGET = 40.0
STABILIZATION = 10.0
TRIGGER_S = 3.0
PLOT = "bench-scale.png"
SHADES = {"scale.yml (out)": "tab:green", "scale.yml (in)": "tab:orange"}


def settings(dep: Deployment) -> dict[str, Any]:
    return {
        "policies": [{"type": "target", "metric": "request_rate", "target": TARGET}],
        "tolerance": 0.1,
        "scale_out_cooldown": 0,
        "scale_in_cooldown": 0,
        "scale_in_stabilization": STABILIZATION,
        "max_step_out": 4,
        "max_step_in": 4,
        "warmup": 0,
        "drain_timeout": 10,
    }


def probe(dep: Deployment) -> dict[str, int]:
    rows = parse_show_stat(Deployment.runtime(dep.admin_socket("local"), "show stat"))
    frontend = next((r for r in rows if r.is_frontend and r.proxy == "main"), None)
    servers = [r for r in rows if r.is_server and r.proxy == "web"]
    return {
        "req_rate": frontend.req_rate if frontend else 0,
        "in_service": sum(1 for r in servers if r.status_class == "UP"),
        "draining": sum(1 for r in servers if r.status_class in ("DRAIN", "MAINT")),
    }


LAST_RUN: list[str] = [""]  # the output of the last scale.yml run, for error messages


def scale(dep: Deployment) -> float:
    t0 = time.monotonic()
    run = dep.play("scale.yml")
    LAST_RUN[0] = run.stdout[-4000:]
    if run.returncode != 0:
        raise BenchError(f"scale.yml failed:\n{run.stdout[-4000:]}{run.stderr[-1000:]}")
    return time.monotonic() - t0


def alive(dep: Deployment) -> set[str]:
    return {i.name for i in instances(dep, "local") if i.alive}


def failed(outcomes: list[Outcome]) -> int:
    return sum(1 for o in outcomes if o.status != 200)


def cycle(dep: Deployment, sampler: Sampler, low: Load, marks: list[dict[str, Any]]) -> dict[str, Any]:
    first = alive(dep)
    if len(first) != 1:
        raise BenchError(f"a cycle starts from 1 host, found {sorted(first)}")
    expected = math.ceil(RATE_HIGH / TARGET)
    time.sleep(8)
    high = Load("127.0.0.1", dep.frontend, clients=6, rate=RATE_HIGH - RATE_LOW,
                max_requests=100_000, max_seconds=600).start()
    try:
        step = time.monotonic()
        marks.append({"t": sampler.now(), "what": "load step up"})
        time.sleep(TRIGGER_S)
        out_start = sampler.now()
        out_s = scale(dep)
        marks.append({"t": out_start, "until": sampler.now(), "what": "scale.yml (out)"})
        grown = alive(dep)
        if len(grown) != expected:
            raise BenchError(f"{RATE_HIGH:g} req/s with a target of {TARGET:g}: expected {expected} hosts, "
                             f"got {sorted(grown)}:\n{LAST_RUN[0]}")
        for name in sorted(grown - first):
            high.wait_for(f"Hello {name}!", timeout=60)
        wait_until(lambda: (probe(dep)["in_service"]) == expected, 30, f"{expected} servers UP", interval=0.2)
        capacity_s = time.monotonic() - step
        time.sleep(5)
    finally:
        step_outcomes = high.stop()
    marks.append({"t": sampler.now(), "what": "load step down"})
    # The first run after the drop records the low recommendation and is held by the window
    # (the high one is still in effect); the pool shrinks on the first run after the window.
    time.sleep(TRIGGER_S)
    held_start = sampler.now()
    scale(dep)
    marks.append({"t": held_start, "until": sampler.now(), "what": "scale.yml (held by the window)"})
    if alive(dep) != grown:
        raise BenchError(f"the run right after the drop should be held by the window: {sorted(alive(dep))}")
    time.sleep(STABILIZATION + 1)
    before = low.mark()
    in_start = sampler.now()
    in_s = scale(dep)
    marks.append({"t": in_start, "until": sampler.now(), "what": "scale.yml (in)"})
    after = low.mark()
    shrunk = alive(dep)
    if len(shrunk) != 1:
        raise BenchError(f"after the load dropped, expected 1 host, got {sorted(shrunk)}:\n{LAST_RUN[0]}")
    during_in = [o for o in list(low.outcomes) if before < o.seq < after]
    if not during_in:
        raise BenchError("no request of the load was answered during the scale-in run (did the load stop?)")
    launches = [e for e in events(dep) if e["action"] == "scale_launch" and e["instance"] in grown - first]
    removes = [e for e in events(dep) if e["action"] == "scale_remove" and e["instance"] in grown - shrunk]
    time.sleep(3)
    return {
        "hosts": [len(first), len(grown), len(shrunk)],
        "capacity_s": capacity_s,
        "scale_out_run_s": out_s,
        "launch_s": [float(e["duration"]) for e in launches],
        "step_requests": len(step_outcomes),
        "step_failed": failed(step_outcomes),
        "scale_in_run_s": in_s,
        "scale_in_requests": len(during_in),
        "scale_in_failed": failed(during_in),
        "forced_sessions": sum(int(e.get("forced_sessions") or 0) for e in removes),
    }


def run(ctx: Context) -> dict[str, Any]:
    made = deployments(ctx.dir("scale"))
    make = next(made)
    cycles: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    try:
        dep = make("local", desired=1, min=1, max=4)
        dep.extra_vars["hapool_pools"][0]["scale"] = settings(dep)
        bound = 600 * ctx.repeat + 120  # seconds: every load and the sampler stop by then at the latest
        low = Load("127.0.0.1", dep.frontend, clients=2, rate=RATE_LOW, max_requests=100_000,
                   max_seconds=bound).start()
        sampler = Sampler(lambda: probe(dep), interval=0.5, max_seconds=bound).start()
        try:
            for i in range(ctx.repeat):
                c = cycle(dep, sampler, low, marks)
                ctx.log(f"scale #{i + 1}: {c['hosts']} hosts, capacity serving after "
                        f"{c['capacity_s']:.1f} s, "
                        f"scale-in {c['scale_in_failed']}/{c['scale_in_requests']} failed")
                cycles.append(c)
            time.sleep(3)
        finally:
            samples = sampler.stop()
            low_outcomes = low.stop()
    finally:
        for _ in made:
            pass
    timeline = [{"t": t, **v} for t, v in samples if v is not None]
    plot(ctx, timeline, marks)
    return {
        "rates": {"low": RATE_LOW, "high": RATE_HIGH, "target_per_host": TARGET},
        "stabilization_s": STABILIZATION,
        "trigger_s": TRIGGER_S,
        "cycles": cycles,
        "capacity_s": summary([c["capacity_s"] for c in cycles]),
        "scale_out_run_s": summary([c["scale_out_run_s"] for c in cycles]),
        "launch_s": summary([s for c in cycles for s in c["launch_s"]]),
        "scale_in_run_s": summary([c["scale_in_run_s"] for c in cycles]),
        "scale_in_failed": sum(c["scale_in_failed"] for c in cycles),
        "scale_in_requests": sum(c["scale_in_requests"] for c in cycles),
        "step_failed": sum(c["step_failed"] for c in cycles),
        "step_requests": sum(c["step_requests"] for c in cycles),
        "all_requests": len(low_outcomes) + sum(c["step_requests"] for c in cycles),
        "all_failed": failed(low_outcomes) + sum(c["step_failed"] for c in cycles),
        "marks": marks,
        "timeline": timeline,
        "plot": f"img/{PLOT}",
    }


def plot(ctx: Context, timeline: list[dict[str, Any]], marks: list[dict[str, Any]]) -> None:
    import matplotlib  # noqa: PLC0415  (only the plot needs it; Agg: no display)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t = [s["t"] for s in timeline]
    fig, rate_ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    rate_ax.plot(t, [s["req_rate"] for s in timeline], color="tab:blue", lw=1.2, label="request rate (req/s)")
    rate_ax.set_xlabel("seconds")
    rate_ax.set_ylabel("requests per second (HAProxy frontend)")
    hosts_ax = rate_ax.twinx()
    hosts_ax.step(t, [s["in_service"] for s in timeline], where="post", color="tab:green", lw=2,
                  label="in service (UP)")
    hosts_ax.step(t, [s["draining"] for s in timeline], where="post", color="tab:red", lw=2,
                  label="draining (DRAIN/MAINT)")
    hosts_ax.set_ylabel("hosts")
    hosts_ax.set_ylim(-0.2, 5)
    for m in marks:
        if "until" in m:
            color = SHADES.get(m["what"], "tab:gray")
            rate_ax.axvspan(m["t"], m["until"], color=color, alpha=0.12, lw=0)
    handles = rate_ax.get_legend_handles_labels()[0] + hosts_ax.get_legend_handles_labels()[0]
    rate_ax.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize=8)
    rate_ax.set_title("scale.yml under a load step (shaded: scale.yml runs: green out, grey held, orange in)")
    fig.tight_layout()
    fig.savefig(ctx.img_dir / PLOT)
    plt.close(fig)


def markdown(r: dict[str, Any]) -> str:
    rates = r["rates"]
    hosts = r["cycles"][0]["hosts"] if r["cycles"] else ["?"] * 3
    return "\n".join([
        f"Local provider, target tracking at {rates['target_per_host']:g} req/s per host, a paced load of "
        f"{rates['low']:g} req/s stepping to {rates['high']:g} req/s ({hosts[0]} → {hosts[1]} hosts) "
        f"and back ({hosts[1]} → {hosts[2]}), {len(r['cycles'])} cycles. `scale.yml` starts "
        f"{r['trigger_s']:g} s after "
        "the step; capacity is serving when HAProxy has every new host UP and each one answered the load. "
        "After the drop, the first run is held by the scale-in stabilization window "
        f"({r['stabilization_s']:g} s; the high recommendation is still in effect); the next run, after "
        "the window, drains and removes the extra hosts.",
        "",
        "| figure | median (range) |",
        "|---|---|",
        f"| load step → new capacity serving | **{fmt_summary(r['capacity_s'], 's')}** |",
        f"| `scale.yml` run that scales out | {fmt_summary(r['scale_out_run_s'], 's')} |",
        f"| per new host: launch → UP (`scale_launch` event) | {fmt_summary(r['launch_s'], 's')} |",
        f"| `scale.yml` run that scales in (drain, remove) | {fmt_summary(r['scale_in_run_s'], 's')} |",
        "",
        f"Failed requests during the scale-in runs: **{r['scale_in_failed']} of "
        f"{r['scale_in_requests']:,}**; "
        f"during the load steps: {r['step_failed']} of {r['step_requests']:,}; over the whole scenario: "
        f"{r['all_failed']} of {r['all_requests']:,}.",
        "",
        f"![request rate, hosts in service and draining over time]({r['plot']})",
        "",
        "The request rate is HAProxy's (`req_rate` of the frontend, over the last second): the short "
        "dips at the moments hosts join or leave are reloads, where the new worker's counters start "
        "from zero; the load itself is paced and its failed requests are counted above.",
    ])
