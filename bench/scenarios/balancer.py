"""The balancer killed -> the frontend answering again: the watcher, the 10 s timer, heal.yml.

One local deployment of 2 hosts (`site.yml`). HAProxy is killed hard, ``repeat`` times each:

* **worker**: `kill -9` of the current worker (HAProxy 2.6's master-worker then exits too:
  exit-on-failure);
* **master**: `kill -9` of the master and its worker;

and brought back by:

* **watch**: the heal watcher installed by `heal_timer.yml` (no timer; `show stat` every 0.5 s):
  it runs the haproxy role's supervise script as soon as the socket stops answering;
* **timer**: the cron timer installed by `heal_timer.yml` (10 s ticks, no watcher): each tick
  first runs the watcher's ``--once`` check (the supervise script when the socket is dead), then
  heal.yml; the kill falls anywhere between two ticks;
* **heal.yml**: `heal.yml` started right after the kill, alone (no timer, no watcher): its first
  play starts the balancer before anything else. A timer that only ran heal.yml would add the
  wait for its next tick (0 to 10 s): the report adds 5 s (average) and 10 s (worst).

The clock stops at the first 200 answer of the frontend (polled every 20 ms). A paced load of
200 requests per second (4 keep-alive clients, tests/helpers/load.py; each request is due at its
time whatever happened to the previous ones) runs through each kill: its failed requests are
those that fell in the outage (wrk is not used here: it reconnects in a tight loop while nothing
listens and counts every attempt). The `balancer_restart` event gives the start itself.

Alone: ``python bench/run.py --only balancer --merge``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.chaos import view
from helpers.heal import deployments, events
from helpers.load import Load
from helpers.procs import CRON_DIR, cron_daemon, unix_cli, wait_until
from helpers.site import BIN, ROOT, Deployment

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "balancer"
TITLE = "Balancer killed → frontend answering again: the watcher, the 10 s timer, heal.yml"
KILLS = ("worker", "master")
TIMER_PERIOD_S = 10
MODES: dict[str, dict[str, Any] | None] = {
    "watch": {"heal_timer_scheduler": "none", "heal_timer_watch": True},
    "timer": {"heal_timer_scheduler": "cron", "heal_timer_period": TIMER_PERIOD_S, "heal_timer_watch": False},
    "heal.yml": None,
}
LOAD = {"clients": 4, "rate": 200.0}
DESIRED = 2


def _answers(dep: Deployment) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{dep.frontend}/", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _victims(dep: Deployment, kill: str) -> list[int]:
    run = dep.root / "local" / "haproxy" / "run"
    master = int((run / "haproxy.pid").read_text().split()[0])
    section, workers = "", []
    for line in unix_cli(run / "master.sock", "show proc").splitlines():
        if line.startswith("#"):
            section = line
        elif section.startswith("# workers") and line.split()[1:2] == ["worker"]:
            workers.append(int(line.split()[0]))
    if not workers:
        raise BenchError("the balancer has no worker before the kill")
    return ([master] if kill == "master" else []) + workers


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def trigger(dep: Deployment, mode: str) -> Iterator[None]:
    """heal_timer.yml with the mode's settings (nothing for heal.yml); removed afterwards."""
    settings_of_mode = MODES[mode]
    if settings_of_mode is None:
        yield
        return
    name = f"hapool-bench-lb-{mode}-{secrets.token_hex(3)}"
    settings = {
        "heal_timer_name": name,
        "heal_timer_playbook_args": ["-e", json.dumps(dep.extra_vars)],
        **settings_of_mode,
    }
    pid_file = dep.root / "heal" / f"{name}-watch.pid"
    log = dep.root / "heal" / f"{name}.log"
    try:
        run = dep.play("heal_timer.yml", **settings, heal_timer_state="present")
        if run.returncode != 0:
            raise BenchError(f"heal_timer.yml ({mode}) failed:\n{run.stdout[-3000:]}")
        started = "keeps the balancer running" if mode == "watch" else "heal run (tick"  # cron's first minute
        wait_until(
            lambda: log.exists() and started in log.read_text(), 90, f"the {mode} trigger", interval=0.5
        )
        yield
    finally:
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        dep.play("heal_timer.yml", **settings, heal_timer_state="absent")
        (CRON_DIR / name).unlink(missing_ok=True)
        if pid.isdigit() and b"-watch.py" in _cmdline(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        wrapper = f"{name}-tick.sh".encode()
        with contextlib.suppress(TimeoutError):  # a tick that started ends its heal run
            wait_until(
                lambda: (
                    not any(
                        wrapper in _cmdline(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()
                    )
                ),
                120,
                f"the {mode} trigger's runs to end",
                interval=0.5,
            )


def _heal(dep: Deployment) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / "heal.yml"),
         "-e", json.dumps(dep.extra_vars)],
        cwd=ROOT, env=dep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def one_kill(dep: Deployment, kill: str, mode: str) -> dict[str, Any]:
    wait_until(lambda: view(dep).converged_to == DESIRED and _answers(dep), 120, "the pool", interval=0.5)
    load = Load("127.0.0.1", dep.frontend, max_requests=60_000, max_seconds=150, timeout=5, **LOAD).start()
    heal: subprocess.Popen[str] | None = None
    try:
        time.sleep(2)  # the load is up to speed
        before = len(events(dep))
        killed = time.monotonic()
        for pid in _victims(dep, kill):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if mode == "heal.yml":
            heal = _heal(dep)
        wait_until(lambda: _answers(dep), 90, f"the frontend after the {kill} kill ({mode})", interval=0.02)
        answering_s = time.monotonic() - killed
        heal_s = None
        if heal is not None:
            out, _ = heal.communicate(timeout=300)
            heal_s = time.monotonic() - killed
            if heal.returncode != 0:
                raise BenchError(f"heal.yml failed after the {kill} kill:\n{out[-3000:]}")
        time.sleep(1)
    finally:
        if heal is not None and heal.poll() is None:
            heal.kill()
            heal.communicate()
        outcomes = load.stop()
    restart: list[dict[str, Any]] = []

    def logged() -> bool:
        restart[:] = [e for e in events(dep)[before:] if e["action"] == "balancer_restart"]
        return bool(restart)

    wait_until(logged, 30, f"a balancer_restart event after the {kill} kill ({mode})", interval=0.2)
    failed = [o for o in outcomes if o.status != 200]
    return {
        "answering_s": answering_s,
        "start_s": float(restart[0]["duration"]),
        "heal_run_s": heal_s,
        "by": restart[0].get("by"),
        "requests": len(outcomes),
        "failed": len(failed),
        "errors": sorted({(o.error or str(o.status)).split(":")[0] for o in failed}),
    }


def run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"load": LOAD, "repeat": ctx.repeat, "period": TIMER_PERIOD_S, "rows": {}}
    with cron_daemon():
        made = deployments(ctx.dir("balancer-local"))
        make = next(made)
        try:
            t0 = time.monotonic()
            dep = make("local", desired=DESIRED, max=3)
            ctx.log(f"balancer: site.yml {time.monotonic() - t0:.0f} s")
            for mode in MODES:
                with trigger(dep, mode):
                    for kill in KILLS:
                        kills = []
                        for i in range(ctx.repeat):
                            k = one_kill(dep, kill, mode)
                            ctx.log(
                                f"balancer/{mode}/{kill} #{i + 1}: answering after {k['answering_s']:.2f} s "
                                f"(start {k['start_s']:.2f} s by {k['by']}), {k['failed']} of "
                                f"{k['requests']} requests failed {k['errors']}"
                            )
                            kills.append(k)
                        out["rows"][f"{mode}/{kill}"] = {
                            "mode": mode,
                            "kill": kill,
                            "kills": kills,
                            "answering_s": summary([k["answering_s"] for k in kills]),
                            "start_s": summary([k["start_s"] for k in kills]),
                            "heal_run_s": summary([k["heal_run_s"] for k in kills]),
                            "failed": sum(k["failed"] for k in kills),
                            "requests": sum(k["requests"] for k in kills),
                        }
        finally:
            for _ in made:  # teardown.yml, then destroy whatever it left
                pass
    return out


def markdown(r: dict[str, Any]) -> str:
    period = r["period"]
    lines = [
        "HAProxy of a local deployment (2 hosts) killed hard: **worker** = `kill -9` of the worker (the "
        "master exits with it: HAProxy 2.6's exit-on-failure), **master** = `kill -9` of the master and its "
        "worker. **watch**: the heal watcher (0.5 s polls) runs the supervise script at once; **timer**: "
        f"cron ticks every {period} s, each first runs the watcher's `--once` check (the kill falls anywhere "
        "between two ticks); **heal.yml**: started right after the kill, alone, its first play starts the "
        f"balancer (a {period} s timer that only ran heal.yml would add the wait for its next tick: the "
        "last column). The clock stops at the first 200 answer through the frontend. "
        f"Median (range) of {r['repeat']} kills per row, under a paced load of {r['load']['rate']:g} "
        f"requests per second ({r['load']['clients']} keep-alive clients).",
        "",
        "| trigger | kill | kill → frontend answers | the start itself | heal.yml run | heal.yml after "
        f"a {period} s tick (average / worst) | requests | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"].values():
        med = row["answering_s"]["median"]
        heal_only = row["mode"] == "heal.yml"
        timer = f"{med + period / 2:.1f} s / {med + period:.1f} s" if heal_only and med is not None else "-"
        heal = fmt_summary(row["heal_run_s"], "s") if heal_only else "-"
        lines.append(
            f"| {row['mode']} | {row['kill']} | **{fmt_summary(row['answering_s'], 's', 2)}** "
            f"| {fmt_summary(row['start_s'], 's', 2)} | {heal} | {timer} | {row['requests']:,} "
            f"| {row['failed']} |"
        )
    lines += [
        "",
        "Failed: the requests of the paced load that were refused or cut while the balancer was down "
        "(about the outage times the rate).",
    ]
    return "\n".join(lines)
