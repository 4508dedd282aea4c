"""Kill -> replacement serving, timer-driven vs watch-driven, per provider and way of launching, under wrk.

Per provider (local: nginx processes; docker: containers) and way of launching a host
(**provisioned**: launched bare, then a full `nginx_web` run, then the re-render;
**template**: `template.enabled`, launched from the pool's baked version and registered in the
balancer's runtime at once), one deployment of 2 hosts (`site.yml`, checks `inter 1s fastinter
500ms fall 2`, `grace_period 5`). Then, for each way of triggering `heal.yml`, installed for
real by `playbooks/heal_timer.yml`:

* **timer**: cron runs the wrapper every minute, which starts a tick every 10 s
  (`heal_timer_period: 10`); no watcher;
* **watch**: no schedule; the watcher polls `show stat` every 0.5 s and starts a tick on the
  first failed check or a transition to DOWN;

``repeat`` times: a bounded wrk load runs through the balancer, one host is killed hard
(`kill -9` of its nginx master and workers, or `docker kill`), and the clock stops when a
request through the balancer is answered by a host that did not exist before the kill. The
wrk figures of that window give the failed requests during a backend kill. The `replace`
event of the run gives its split: trigger delay (kill -> the run started the replacement) and
the replacement itself (start -> new host UP).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helpers.chaos import view
from helpers.heal import balancer_dir, deployments, events, instances, kill_hard, server_status
from helpers.procs import CRON_DIR, cron_daemon, wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, Wrk, fmt_summary, summary

NAME = "heal"
TITLE = "Kill → replacement serving: timer-driven vs watch-driven, local and docker providers"
MODES = {
    "timer": {"heal_timer_scheduler": "cron", "heal_timer_period": 10, "heal_timer_watch": False},
    "watch": {"heal_timer_scheduler": "none", "heal_timer_watch": True},
}
# The original design's loop, for the provisioned pools: its script read `show stat` every 10 s
# (a pass, then `sleep 10`) and ran `vagrant destroy -f` + `vagrant up` (an Ansible-provisioned
# VM) for each DOWN server. Here the same loop runs site.yml instead: it destroys the dead host,
# launches a bare one, provisions it with nginx_web and re-renders the balancer.
NAIVE = "naive"
NAIVE_SLEEP = 10.0
# A steady load of about 150 req/s (4 connections, 20 ms between requests on each): bounded in
# rate, so that it leaves a core to Ansible, as a production balancer is not run at 100 % CPU.
WRK = {"connections": 4, "threads": 1, "delay_ms": 20}
DESIRED = 2
# How a new host is made: launched bare and provisioned, or launched from the baked template.
LAUNCHES = {"provisioned": {}, "template": {"template": {"enabled": True}}}
# Kills per row of a template pool, at least (the provisioned rows make ``--repeat`` kills): the
# timer's rows depend on where in its 10 s period the kill falls, so each kill waits a random
# 0-10 s first, and the rows give the 90th percentile too.
TEMPLATE_KILLS = 10
TIMER_PERIOD = 10.0


@contextlib.contextmanager
def heal_trigger(dep: Deployment, mode: str, settings: dict[str, Any] | None = None) -> Iterator[str]:
    """heal_timer.yml applied with the mode's settings (``settings`` instead, when given: the
    mode then only says what to wait for - the first cron tick, or the watcher); removed (cron
    entry, watcher) after."""
    name = f"hapool-bench-{mode}-{secrets.token_hex(3)}"
    settings = {"heal_timer_name": name, "heal_timer_playbook_args": ["-e", json.dumps(dep.extra_vars)],
                **(MODES[mode] if settings is None else settings)}
    pid_file = dep.root / "heal" / f"{name}-watch.pid"
    try:
        run = dep.play("heal_timer.yml", **settings, heal_timer_state="present")
        if run.returncode != 0:
            raise BenchError(f"heal_timer.yml ({mode}) failed:\n{run.stdout[-3000:]}")
        log = dep.root / "heal" / f"{name}.log"
        started = "heal run (tick" if mode == "timer" else "polling"  # cron's first minute, the watcher
        wait_until(lambda: log.exists() and started in log.read_text(errors="replace"), 90,
                   f"the {mode} trigger to run", interval=0.5)
        yield name
    finally:
        watcher = pid_file.read_text().strip() if pid_file.exists() else ""
        dep.play("heal_timer.yml", **settings, heal_timer_state="absent")
        (CRON_DIR / name).unlink(missing_ok=True)
        if watcher.isdigit() and "-watch.py" in _cmdline(int(watcher)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(watcher), signal.SIGTERM)


@contextlib.contextmanager
def naive_loop(dep: Deployment, provider: str) -> Iterator[list[str]]:
    """The original design's loop in a thread (NAIVE): every pass reads `show stat`, runs site.yml
    when a server of the pool is DOWN, then sleeps until the clock's next multiple of 10 s (where
    the timer's ticks fall, so that a kill can fall at the same point of both periods). Yields the
    log of its passes."""
    stop = threading.Event()
    passes: list[str] = []

    def loop() -> None:
        while not stop.is_set():
            down: list[str] = []
            try:
                down = sorted(n for n, st in server_status(dep, provider).items() if st == "DOWN")
            except OSError as exc:
                passes.append(f"show stat failed: {exc}")
            if down:
                run = dep.play("site.yml")
                passes.append(f"{time.time():.3f} DOWN {down}: site.yml exited {run.returncode}")
            stop.wait(NAIVE_SLEEP - time.time() % NAIVE_SLEEP)  # the next multiple of 10 s on the clock

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield passes
    finally:
        stop.set()
        thread.join(timeout=300)


NAIVE_SCRIPT = Path(__file__).resolve().parents[1] / "naive_heal.sh"


def _recreate_script(inst: Any) -> str:
    """The commands that bring ``inst`` back under the same name and address, as the original
    design's loop does: docker - `docker start` of the killed container (its name, image, labels
    and network address: `docker rm -f` + `docker run` cannot keep the address on the project's
    network, whose subnet Docker chose, and `--ip` needs a user-configured subnet); local - the
    same nginx started again (its prefix, its configuration, its address)."""
    if inst.provider == "docker":
        return f"exec docker start {shlex.quote(inst.extra['container'])}\n"
    prefix = inst.extra["prefix"]
    nginx = '"$(command -v nginx || echo /usr/sbin/nginx)"'
    return f"exec {nginx} -p {shlex.quote(prefix + '/')} -c {shlex.quote(prefix + '/conf/nginx.conf')}\n"


@contextlib.contextmanager
def naive_restart(dep: Deployment, provider: str, root: Path) -> Iterator[list[str]]:
    """The original design's loop as a bash script (bench/naive_heal.sh): `show stat` every 10 s,
    each DOWN server's host destroyed and recreated under the same name and address. Yields
    its output lines (read after it stopped)."""
    scripts = root / "naive"
    scripts.mkdir(parents=True, exist_ok=True)
    for inst in instances(dep, provider):
        path = scripts / f"{inst.name}.sh"
        path.write_text("#!/usr/bin/env bash\nset -e\n" + _recreate_script(inst))
        path.chmod(0o755)
    out = scripts / "loop.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            ["bash", str(NAIVE_SCRIPT), str(dep.admin_socket(balancer_dir(provider))), "web", str(scripts),
             str(int(NAIVE_SLEEP)), "3600"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    lines: list[str] = []
    try:
        yield lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        lines += out.read_text(errors="replace").splitlines()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _answer(dep: Deployment, timeout: float = 2) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{dep.frontend}/", timeout=timeout) as resp:
            return resp.read().decode(errors="replace").strip()
    except (urllib.error.URLError, OSError):
        return None


def converged(dep: Deployment, provider: str, timeout: float = 240) -> set[str]:
    """Wait for DESIRED hosts alive and UP, each one answering; their names."""
    wait_until(lambda: view(dep, provider).converged_to == DESIRED, timeout,
               f"{DESIRED} live hosts, all UP ({provider})", interval=0.5)
    names = set(view(dep, provider).provider)
    bodies = dep.hosts_answering(DESIRED, deadline_s=30)
    if {f"Hello {n}!" for n in names} - bodies:
        raise BenchError(f"not every host answers: {names} vs {bodies}")
    return names


PROBE_EVERY = 0.1


def _probe(dep: Deployment, start: float, budget_s: float, back: Callable[[str], bool]) -> float | None:
    """Seconds from ``start`` to the first answer through the balancer that ``back`` accepts.
    Open loop: a request every PROBE_EVERY seconds, each on its own connection and thread, so a
    request held up on the dead host (until HAProxy's connect timeout and a retry elsewhere) does
    not hold up the next ones; the earliest accepted answer counts."""
    found: list[float] = []
    done = threading.Event()

    def one() -> None:
        body = _answer(dep, timeout=5)
        if body and body.startswith("Hello ") and back(body):
            found.append(time.monotonic() - start)
            done.set()

    while not done.is_set() and time.monotonic() - start < budget_s:
        threading.Thread(target=one, daemon=True).start()
        done.wait(PROBE_EVERY)
    return min(found) if found else None  # answer times: the first one appended


def one_kill(
    dep: Deployment,
    provider: str,
    budget_s: float,
    *,
    logged: bool = True,
    ready: Callable[[Deployment, str], set[str]] = converged,
    same_host: bool = False,
    phase: float | None = None,
) -> dict[str, Any]:
    """Kill the first serving host under wrk; the clock stops at the first answer of a host that
    did not answer before (``same_host``: of the killed host itself, recreated under its name).
    ``ready`` waits for the pool to be whole and names the serving hosts. ``phase``: the kill
    falls that many seconds after a multiple of TIMER_PERIOD on the clock (the timer's ticks and
    the naive loops' passes fall on those multiples)."""
    before = ready(dep, provider)
    old_bodies = {f"Hello {n}!" for n in before}
    victim = sorted((i for i in instances(dep, provider) if i.name in before), key=lambda i: i.name)[0]
    load = Wrk(f"http://127.0.0.1:{dep.frontend}/", seconds=budget_s + 20, **WRK)
    try:
        time.sleep(2)  # wrk is up to speed
        if phase is not None:
            time.sleep((phase - time.time()) % TIMER_PERIOD)
        killed_wall, killed = time.time(), time.monotonic()
        kill_hard(victim)
        mine = f"Hello {victim.name}!"
        serving_s = _probe(dep, killed, budget_s,
                           lambda body: body == mine if same_host else body not in old_bodies)
        time.sleep(1)
    finally:
        result = load.stop()
    if serving_s is None:
        raise BenchError(f"no replacement of {victim.name} served within {budget_s:.0f} s")
    if not logged:  # the naive loop logs no event
        return {"victim": victim.name, "replacement": None, "serving_s": serving_s, "trigger_s": None,
                "replace_s": None, "registered_s": None, "requests": result.requests,
                "failed": result.failed, "rps": result.rps, "phase_s": phase}
    event = _replace_event(dep, victim.name)
    started_at = float(event["time"]) - float(event["duration"])
    return {
        "victim": victim.name,
        "replacement": event.get("replacement"),
        "serving_s": serving_s,
        "trigger_s": started_at - killed_wall,  # kill -> the heal run started the replacement
        "replace_s": float(event["duration"]),  # start -> replacement UP (the event's duration)
        # start -> HAProxy reported it UP, for a replacement registered at runtime (template)
        "registered_s": event.get("serving_seconds"),
        "requests": result.requests,
        "failed": result.failed,
        "rps": result.rps,
        "phase_s": phase,
    }


def _replace_event(dep: Deployment, victim: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        found[:] = [e for e in events(dep) if e["action"] == "replace" and e["instance"] == victim]
        return bool(found)

    wait_until(logged, 240, f"the replace event of {victim}", interval=0.5)
    return found[0]


def run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"modes": list(MODES), "providers": {}, "wrk": WRK, "repeat": ctx.repeat,
                           "template_kills": max(ctx.repeat, TEMPLATE_KILLS), "paired": True}
    rng = random.Random()  # noqa: S311 - random points of the period, not a secret
    with cron_daemon():
        for provider, launch in [(p, la) for p in ctx.providers for la in LAUNCHES]:
            label = provider if launch == "provisioned" else f"{provider} ({launch})"
            made = deployments(ctx.dir(f"heal-{provider}-{launch}"))
            make = next(made)
            try:
                t0 = time.monotonic()
                settings = {"desired": DESIRED, "max": 3, "max_replace_per_run": 1, "flap_window": 0}
                dep = make(provider, **settings, **LAUNCHES[launch])
                ctx.log(f"heal/{label}: site.yml {time.monotonic() - t0:.0f} s")
                per_mode: dict[str, Any] = {}
                kills_wanted = max(ctx.repeat, TEMPLATE_KILLS) if launch == "template" else ctx.repeat
                # The same random points of the 10 s period for the timer's kills and the naive
                # loop's: the two rows compare kill by kill.
                phases = [rng.uniform(0, TIMER_PERIOD) for _ in range(kills_wanted)]
                for mode in [*MODES, NAIVE]:
                    kills = []
                    if mode != NAIVE:
                        trigger: Any = heal_trigger(dep, mode)
                    elif launch == "provisioned":
                        trigger = naive_loop(dep, provider)
                    else:
                        trigger = naive_restart(dep, provider, ctx.dir(f"naive-{provider}"))
                    with trigger:
                        for i in range(kills_wanted):
                            restart = mode == NAIVE and launch == "template"
                            k = one_kill(dep, provider, budget_s=120 if mode == "watch" else 150,
                                         logged=mode != NAIVE, same_host=restart,
                                         phase=phases[i] if mode in ("timer", NAIVE) else None)
                            split = (f" (trigger {k['trigger_s']:.1f} s, replace {k['replace_s']:.1f} s)"
                                     if k["trigger_s"] is not None else "")
                            ctx.log(f"heal/{label}/{mode} #{i + 1}: serving after {k['serving_s']:.1f} s"
                                    f"{split}, {k['failed']}/{k['requests']} failed")
                            kills.append(k)
                    per_mode[mode] = {
                        "kills": kills,
                        "serving_s": summary([k["serving_s"] for k in kills]),
                        "trigger_s": summary([k["trigger_s"] for k in kills]),
                        "replace_s": summary([k["replace_s"] for k in kills]),
                        "registered_s": summary([k["registered_s"] for k in kills]),
                        "failed": sum(k["failed"] for k in kills),
                        "requests": sum(k["requests"] for k in kills),
                        "rps": summary([k["rps"] for k in kills]),
                    }
                out["providers"][label] = per_mode
            finally:
                for _ in made:  # teardown.yml, then destroy whatever it left
                    pass
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"One pool of {DESIRED} hosts per provider and way of launching (no suffix: launched bare and "
        "provisioned by `nginx_web`, then registered by the re-render; **(template)**: launched from "
        "the pool's baked template version and registered in HAProxy's runtime at once); "
        "a host is killed hard (`kill -9` of nginx, "
        "`docker kill`) while wrk "
        f"(`-t{r['wrk']['threads']} -c{r['wrk']['connections']}`, {r['wrk']['delay_ms']} ms between a "
        "connection's requests) runs through the balancer; the clock stops "
        "at the first answer from the new host to a probe (open loop: a request through the balancer "
        "every 100 ms, each on its own connection, so one held on the dead host - a killed container's "
        "address does not refuse: until `timeout connect`, 3 s, then a retry on another server - does "
        "not hold up the next). "
        "**timer**: cron + the wrapper's 10 s ticks; "
        "**watch**: the watcher (0.5 s `show stat` polls). Trigger = kill → the heal run starts the "
        "replacement (from the `replace` event); replace = start → the run has seen the new host UP in "
        "HAProxy and logged the event (the event's duration: it ends shortly after the first answer "
        "of the new host, which is why trigger + replace can exceed the serving time). "
        + (
            "For a template pool, the watcher and each tick of the timer run the **fast path** first "
            "(`hapool.fastheal`: the watcher process itself launches the replacement from the template "
            "and adds it at runtime; the heal run that follows adopts it), so its trigger delay ends "
            "at that launch; "
            + ("the timer's ticks fall on the clock's multiples of 10 s, and so do the naive loop's "
               "passes (below): each timer kill falls at a random point of that period, and the naive "
               "row's kill of the same rank at the same point, so the two rows compare kill by kill. "
               if r.get("paired") else
               "before each timer kill the bench waits a random 0-10 s (the tick's phase). ")
            + f"Median (range) of {r['repeat']} kills per row, {r['template_kills']} per template row, "
            "with the 90th percentile of the kill → serving times. **naive**: the original design's "
            "loop, run by the bench ("
            + ("" if r.get("paired") else "a random 0-10 s before each kill; ")
            + "it logs no event, so no split): "
            "for a provisioned pool `show stat`, site.yml when a server is DOWN, "
            + ("then the next multiple of 10 s on the clock (the original: `sleep 10`)"
               if r.get("paired") else "`sleep 10`")
            + " (a fresh, provisioned host, as its `vagrant destroy -f` + `vagrant up`)"
            + ("; for a template pool the bash loop `bench/naive_heal.sh`: `show stat` every 10 s"
               + (" (on the clock's multiples of 10 s)" if r.get("paired") else "") + ", and "
               "each DOWN server's host brought back under the same name and address - the same nginx "
               "started again (local), `docker start` of the killed container (docker) - and taken back "
               "by HAProxy's checks; the clock stops at the first answer of the killed host itself."
               if any(NAIVE in modes for p, modes in r["providers"].items() if "(template)" in p)
               else ".")
            if "template_kills" in r
            else f"Median (range) of {r['repeat']} kills per row."
        ),
        "",
        "| provider | trigger | kills | kill → new host serving | p90 | trigger delay "
        "| replace (launch, provision, register, UP, logged) | of which start → UP (template) "
        "| wrk requests | failed | wrk req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for provider, modes in r["providers"].items():
        for mode, m in modes.items():
            p90 = m["serving_s"].get("p90")
            lines.append(
                f"| {provider} | {mode} | {len(m.get('kills') or [])} "
                f"| **{fmt_summary(m['serving_s'], 's')}** "
                f"| {'n/a' if p90 is None else f'{p90:.1f} s'} "
                f"| {fmt_summary(m['trigger_s'], 's')} | {fmt_summary(m['replace_s'], 's')} "
                f"| {fmt_summary(m.get('registered_s') or {'median': None}, 's')} "
                f"| {m['requests']:,} | {m['failed']} | "
                f"{fmt_summary(m['rps'], '', 0)} |"
            )
    ratios = []
    for provider, modes in r["providers"].items():
        timer, watch = modes["timer"]["serving_s"]["median"], modes["watch"]["serving_s"]["median"]
        if timer and watch:
            word = "sooner" if watch <= timer else "later"
            ratios.append(f"{provider}: the watcher serves a replacement {abs(timer - watch):.1f} s {word} "
                          f"({watch / timer:.2f} x the timer's time)")
    if ratios:
        lines += ["", "; ".join(ratios) + "."]
    launches = []
    for provider, modes in r["providers"].items():
        if provider.endswith(" (template)"):
            continue
        templ = r["providers"].get(f"{provider} (template)")
        if not templ:
            continue
        for mode in ("timer", "watch"):
            bare = (modes.get(mode) or {}).get("serving_s", {}).get("median")
            fast = (templ.get(mode) or {}).get("serving_s", {}).get("median")
            if bare and fast:
                launches.append(f"{provider} {mode}: {fast / bare:.2f} x ({bare - fast:.1f} s less)")
    if launches:
        lines += ["", "Kill → serving from a template, against a host provisioned by Ansible in the same "
                  "run: " + "; ".join(launches) + "."]
    lines += _against_naive(r)
    lines += [
        "",
        "Failed requests are wrk's non-2xx answers plus its socket errors (connect, read, write, timeout) "
        "over the whole window of each kill, from before the kill until the replacement serves. "
        "The original design polled every 10 s and ran `vagrant destroy -f` + `vagrant up`, and said that "
        "requests to a dying server may time out.",
    ]
    return "\n".join(lines)


def _against_naive(r: dict[str, Any]) -> list[str]:
    naive = []
    for provider, modes in r["providers"].items():
        # the same pool's loop; an earlier run had it only on the provisioned pools
        base = modes.get(NAIVE) or (r["providers"].get(provider.replace(" (template)", "")) or {}).get(NAIVE)
        if not base or base["serving_s"].get("median") is None:
            continue
        for mode, m in modes.items():
            if mode != NAIVE and m["serving_s"].get("median"):
                ratio = m["serving_s"]["median"] / base["serving_s"]["median"]
                naive.append(f"{provider} {mode} {ratio:.2f} x")
    if not naive:
        return []
    lines = ["", "Against the original design's loop on the same provider and way of launching, same "
                 "run (**naive**, above): " + "; ".join(naive) + " of its kill → serving time."]
    paired = _paired(r)
    if paired:
        lines += ["", "Kill by kill, each timer kill against the naive loop's kill at the same point of the "
                      "10 s period (timer - naive; negative: the timer's replacement served sooner): "
                      + "; ".join(paired) + "."]
    return lines


def _paired(r: dict[str, Any]) -> list[str]:
    """The timer row against the naive row of the same pool, kill by kill (the same phases)."""
    out = []
    for provider, modes in r["providers"].items():
        timer, base = (modes.get("timer") or {}).get("kills"), (modes.get(NAIVE) or {}).get("kills")
        if not timer or not base or len(timer) != len(base):
            continue
        pairs = list(zip(timer, base, strict=True))
        if any(t.get("phase_s") is None or t.get("phase_s") != b.get("phase_s") for t, b in pairs):
            continue
        diffs = [t["serving_s"] - b["serving_s"] for t, b in pairs]
        d = summary(diffs)
        ahead = sum(1 for x in diffs if x < 0)
        out.append(f"{provider}: median {d['median']:+.1f} s ({d['min']:+.1f} to {d['max']:+.1f}), "
                   f"sooner in {ahead} of {len(diffs)} kills")
    return out
