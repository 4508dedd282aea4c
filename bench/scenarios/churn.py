"""Failed requests during 20 membership changes (each with a config re-render and a reload)
under a bounded wrk load.

A local deployment (``site.yml``, 4 local provider hosts). A membership change is what heal.yml
and scale.yml do to a balancer, step for step, but driven from Python (as the chaos suite's
``reload_with`` drives reloads) so that 20 of them fit in the time budget; one Ansible run of the
haproxy role per change costs tens of seconds on a loaded 2-core machine:

1. the runtime change with the commands of the ``haproxy_server`` module (the project's
   ``RuntimeClient``): a removal is ``state=absent`` (maint, wait until the server's sessions
   end - at most 10 s -, ``del server``), an addition ``state=present`` (``add server`` with the
   pool's check settings, ``enable health``, ``set server ready`` with ``set health down`` on the
   same line: no traffic before its first good check); then ``show servers state`` into the
   server-state file, as the module's ``state_file`` does;
2. the haproxy.cfg of the new server set, rendered beforehand by the haproxy role's own
   template (``tasks_from: model`` with the pool's hosts as its ``servers`` list, then
   ``haproxy.cfg.j2``: one ansible-playbook run before the load), validated with ``haproxy -c``
   and put in place as the role's ``template ... validate:`` task does;
3. the role handler's reload: ``show servers state`` (lines of servers not in the new set left
   out) into the state file, ``reload`` on the master CLI, wait until the master's reload
   counter grows and the new worker answers on the admin socket.

The 20 changes alternate: remove one host, add it back, the next host, and so on, one second
apart. Each change (1+2+3) is timed. wrk (``-t1 -c4``, keep-alive, bounded, at nice 19 so that
it takes the CPU the rest leaves) runs through the frontend during the 20 changes; failed =
non-2xx answers + socket errors. Repetitions: up to ``ctx.repeat``, as long as the scenario
stays within BUDGET_S (the report says how many ran).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ansible.module_utils.hapool.errors import DrainTimeoutError
from ansible.module_utils.hapool.haproxy import (
    RuntimeClient,
    ServerOptions,
    cmd_add_server,
    cmd_enable_health,
    cmd_set_health,
    cmd_set_server_state,
    write_state_file,
)
from ansible.module_utils.hapool.providers import get_provider
from helpers.heal import pool, server_status
from helpers.procs import HAPROXY, unix_cli, wait_until
from helpers.site import BIN, ROOT, Deployment

from bench.lib import BenchError, Context, Wrk, fmt, fmt_summary, median, summary

NAME = "churn"
TITLE = "Failed requests during 20 membership changes and reloads under load"
HOSTS = 4
CHANGES = 20
QUICK_CHANGES = 6
PAUSE_S = 1.0  # between two changes
DRAIN_TIMEOUT_S = 10.0
WRK_BOUND_S = 180  # wrk's -d: the 20 changes take well under it
# Another repetition of the changes is only started when the run so far plus one more (as long
# as the last one) and the teardown stay within this budget (the report says how many ran).
BUDGET_S = 240
TEARDOWN_S = 20
PLAYBOOK_BOUND_S = 600

RENDER = """\
# Written by bench/scenarios/churn.py: haproxy.cfg of each server set, rendered by the haproxy
# role's own model and template (nothing is applied).
- name: Render the configurations of the membership changes
  hosts: balancers
  gather_facts: false
  tasks:
    - name: Gather the facts the haproxy role needs
      ansible.builtin.setup:
        gather_subset: [min]

    - name: Render each server set
      ansible.builtin.include_tasks: churn_render.yml
      loop: "{{ churn_variants }}"
      loop_control:
        loop_var: churn
        label: "{{ churn.dest }}"
"""

RENDER_ONE = """\
- name: Build the backends of this server set with the role's model
  ansible.builtin.include_role:
    name: haproxy
    tasks_from: model
    public: true
  vars:
    haproxy_pools: "{{ [hapool_pools[0] | combine({'group': 'churn_none', 'servers': churn.servers})] }}"

- name: Render haproxy.cfg with the role's template
  ansible.builtin.template:
    src: "{{ churn_template }}"
    dest: "{{ churn.dest }}"
    mode: "0644"
"""


def _servers(cfg: Path) -> list[dict[str, Any]]:
    """The servers of backend web in the rendered haproxy.cfg, in order."""
    out, inside = [], False
    for line in cfg.read_text().splitlines():
        if line.startswith("backend "):
            inside = line.split()[1] == "web"
            continue
        match = re.match(r"\s+server (\S+) ([\d.]+):(\d+)", line) if inside else None
        if match:
            out.append({"name": match.group(1), "address": match.group(2), "port": int(match.group(3))})
    return out


def _changes(servers: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    changes = []
    for i in range(count):
        srv = servers[(i // 2) % len(servers)]
        changes.append({**srv, "state": "absent" if i % 2 == 0 else "present",
                        "without": srv["name"] if i % 2 == 0 else None})
    return changes


class _Churn:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tmp = ctx.workdir / "churn"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.check = {"path": "/health", "expect_status": "200", "inter": "1s", "fastinter": "500ms",
                      "downinter": "1s", "rise": 1, "fall": 2}
        self.dep = Deployment(self.tmp, "local", [pool("local", min=1, desired=HOSTS, max=HOSTS,
                                                        check=self.check)])
        self.haproxy = self.dep.root / "local" / "haproxy"
        self.client = RuntimeClient(str(self.haproxy / "run" / "admin.sock"), timeout=10)
        self.configs: dict[str | None, Path] = {}

    def playbook(self, path: Path, extra: dict[str, Any], tag: str) -> None:
        log, vars_file = self.tmp / f"{tag}.log", self.tmp / f"{tag}.json"
        vars_file.write_text(json.dumps(extra))
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [str(BIN / "ansible-playbook"), "-i", str(self.dep.inventory), str(path),
                 "-e", json.dumps(self.dep.extra_vars), "-e", f"@{vars_file}"],
                cwd=ROOT, env=self.dep.env, stdout=fh, stderr=subprocess.STDOUT, text=True,
                start_new_session=True,
            )
            try:
                code = proc.wait(PLAYBOOK_BOUND_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                code = None
        if code != 0:
            what = "did not end within its bound" if code is None else "failed"
            raise BenchError(f"{path.name} {what}:\n{log.read_text()[-5000:]}")

    def render(self, servers: list[dict[str, Any]]) -> None:
        """haproxy.cfg of the full set and of each set without one host, by the role's template."""
        (self.tmp / "churn_render.yml").write_text(RENDER_ONE)
        (self.tmp / "render.yml").write_text(RENDER)
        variants = []
        for without in [None, *(s["name"] for s in servers)]:
            dest = self.tmp / f"haproxy-{without or 'all'}.cfg"
            self.configs[without] = dest
            variants.append({"dest": str(dest), "servers": [s for s in servers if s["name"] != without]})
        self.playbook(self.tmp / "render.yml", {
            "churn_variants": variants,
            "churn_template": str(ROOT / "roles" / "haproxy" / "templates" / "haproxy.cfg.j2"),
        }, "render")
        for without, path in self.configs.items():
            names = {s["name"] for s in _servers(path)}
            if names != {s["name"] for s in servers} - {without}:
                raise BenchError(f"{path.name} has the servers {sorted(names)}")

    def install(self, without: str | None) -> None:
        """The role's ``template ... validate: haproxy -c -f <users> -f %s``, then its handler."""
        cfg = self.haproxy / "haproxy.cfg"
        new = self.haproxy / ".haproxy.cfg.new"
        shutil.copyfile(self.configs[without], new)
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.haproxy / "hapool-stats-users.cfg"), "-f",
                                str(new)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise BenchError(f"haproxy -c refused the configuration:\n{check.stdout}{check.stderr}")
        new.replace(cfg)
        self.reload({s["name"] for s in _servers(cfg)})

    def reload(self, names: set[str]) -> None:
        state = self.client.servers_state_text()
        kept = [line for line in state.splitlines()
                if line.startswith("#") or len(line.split()) < 19 or line.split()[3] in names]
        write_state_file(str(self.haproxy / "server-state"), "\n".join(kept) + "\n")
        before = self.reloads()
        unix_cli(self.haproxy / "run" / "master.sock", "reload")

        def reloaded() -> bool:
            try:
                return self.reloads() > before and "admin" in self.client.raw("show cli level")
            except OSError:
                return False

        wait_until(reloaded, 30, "the new worker after a reload", interval=0.05)

    def change(self, change: dict[str, Any]) -> None:
        backend, name = "web", change["name"]
        state_file = str(self.haproxy / "server-state")
        if change["state"] == "absent":
            try:
                self.client.remove_server(backend, name, DRAIN_TIMEOUT_S)
            except DrainTimeoutError:  # the module's force=true: the deregistration delay is over
                self.client.shutdown_sessions(backend, name)
                self.client.remove_server(backend, name, DRAIN_TIMEOUT_S)
        else:
            options = ServerOptions(inter=self.check["inter"], fastinter=self.check["fastinter"],
                                    downinter=self.check["downinter"], rise=self.check["rise"],
                                    fall=self.check["fall"])
            self.client.execute(cmd_add_server(backend, name, change["address"], change["port"], options))
            self.client.execute(cmd_enable_health(backend, name))
            self.client.execute(cmd_set_server_state(backend, name, "ready"),
                                cmd_set_health(backend, name, "down"))
        self.client.dump_servers_state(state_file)
        self.install(change["without"])

    def reloads(self) -> int:
        text = unix_cli(self.haproxy / "run" / "master.sock", "show proc")
        match = re.search(r"master\s+(\d+)", text)  # the reload counter (as the role's handler reads it)
        if not match:
            raise OSError(f"no reload counter in {text!r}")
        return int(match.group(1))

    def all_up(self, names: set[str]) -> bool:
        view = server_status(self.dep, "local")
        return set(view) == names and all(v.startswith("UP") for v in view.values())


def _repetition(c: _Churn, url: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
    reloads_before = c.reloads()
    times: list[dict[str, Any]] = []
    with Wrk(url, WRK_BOUND_S, connections=4, threads=1) as load:
        # At the lowest priority: the load takes the CPU the changes leave (2 cores for wrk,
        # HAProxy, 4 nginx and the driver), so the changes are not starved by it.
        os.setpriority(os.PRIO_PROCESS, load.proc.pid, 19)
        time.sleep(1)
        started = time.monotonic()
        for change in changes:
            t = time.monotonic()
            c.change(change)
            times.append({"state": change["state"], "seconds": time.monotonic() - t})
            time.sleep(PAUSE_S)
        churn_s = time.monotonic() - started
        res = load.stop()
    reloads = c.reloads() - reloads_before
    seconds = [t["seconds"] for t in times]
    c.ctx.log(f"    {churn_s:.1f} s, {reloads} reloads, {res.requests} requests, "
              f"{res.failed} failed, {res.rps:.0f} rps, change median {median(seconds):.2f} s")
    if reloads != len(changes):
        raise BenchError(f"{len(changes)} changes but {reloads} reloads")
    return {
        "changes": len(changes), "reloads": reloads, "churn_s": round(churn_s, 3),
        "change_s": summary(seconds),
        "remove_s": median(t["seconds"] for t in times if t["state"] == "absent"),
        "add_s": median(t["seconds"] for t in times if t["state"] == "present"),
        "wrk": res.as_dict(),
    }


def run(ctx: Context) -> dict[str, Any]:
    count = QUICK_CHANGES if ctx.quick else CHANGES
    c = _Churn(ctx)
    reps: list[dict[str, Any]] = []
    begun = time.monotonic()
    try:
        t0 = time.monotonic()
        site = c.dep.play("site.yml")
        if site.returncode != 0:
            raise BenchError(f"site.yml failed:\n{site.stdout[-4000:]}{site.stderr[-2000:]}")
        ctx.log(f"  site.yml: {time.monotonic() - t0:.1f} s")
        servers = _servers(c.haproxy / "haproxy.cfg")
        names = {s["name"] for s in servers}
        if len(servers) != HOSTS:
            raise BenchError(f"expected {HOSTS} servers in haproxy.cfg, found {servers}")
        t0 = time.monotonic()
        c.render(servers)
        ctx.log(f"  rendered {len(c.configs)} configurations with the role: {time.monotonic() - t0:.1f} s")
        c.install(None)  # the role's rendering of the full set, before any load
        url = f"http://127.0.0.1:{c.dep.frontend}/"
        for rep in range(ctx.repeat):
            if reps and time.monotonic() - begun + reps[-1]["churn_s"] + TEARDOWN_S > BUDGET_S:
                ctx.log(f"  no repetition {rep + 1}: it would end the scenario after its {BUDGET_S} s budget")
                break
            wait_until(lambda: c.all_up(names), 60, "the 4 hosts UP", interval=0.5)
            ctx.log(f"  repetition {rep + 1}: {count} changes under wrk")
            reps.append(_repetition(c, url, _changes(servers, count)))
        wait_until(lambda: c.all_up(names), 60, "the 4 hosts UP after the churn", interval=0.5)
    finally:
        with contextlib.suppress(Exception):
            c.dep.play("teardown.yml")
        with contextlib.suppress(Exception), get_provider("local", state_root=str(c.dep.root)) as prov:
            for inst in prov.list():
                prov.destroy(inst.pool, inst)
        c.dep.remove_state()
        shutil.rmtree(c.tmp, ignore_errors=True)
    return {
        "hosts": HOSTS,
        "changes": count,
        "pause_s": PAUSE_S,
        "repetitions": len(reps),
        "repeat_asked": ctx.repeat,
        "budget_s": BUDGET_S,
        "runs": reps,
        "requests": summary([r["wrk"]["requests"] for r in reps]),
        "failed": summary([r["wrk"]["failed"] for r in reps]),
        "non_2xx": summary([r["wrk"]["non_2xx"] for r in reps]),
        "socket_errors": summary([sum(r["wrk"]["socket_errors"].values()) for r in reps]),
        "rps": summary([r["wrk"]["rps"] for r in reps]),
        "change_s": summary([r["change_s"]["median"] for r in reps]),
        "remove_s": summary([r["remove_s"] for r in reps]),
        "add_s": summary([r["add_s"] for r in reps]),
        "churn_s": summary([r["churn_s"] for r in reps]),
        "p99_ms": summary([r["wrk"]["latency_ms"].get("p99") for r in reps]),
    }


def markdown(r: dict[str, Any]) -> str:
    per_run = "; ".join(
        f"{x['wrk']['failed']} of {x['wrk']['requests']:,} ({x['reloads']} reloads)" for x in r["runs"])
    return "\n".join([
        f"A local deployment of {r['hosts']} hosts; {r['changes']} membership changes in a row, "
        f"{r['pause_s']:g} s apart (remove one",
        "host, add it back, the next host...), each one as heal.yml and scale.yml make it, driven from",
        "Python like the chaos suite's reloads: the runtime change with the `haproxy_server` module's",
        "commands (removal: maint, drain, `del server`; addition: `add server`, health held down until",
        "its first good check), then haproxy.cfg of the new server set (rendered beforehand by the",
        "`haproxy` role's model and template), `haproxy -c`, and the role handler's hitless reload",
        "(server state saved, `reload` on the master CLI, wait for the new worker). Ansible's own",
        "overhead per change is not included. wrk (`-t1 -c4`, keep-alive, nice 19) runs through the",
        f"frontend during the changes. Median of {r['repetitions']} repetition(s) of the {r['changes']} "
        f"changes (range in brackets); {r['repeat_asked']} were asked,",
        f"but a repetition only starts when the scenario still ends within {r['budget_s']} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {fmt_summary(r['requests'], '', 0)} |",
        f"| failed (non-2xx + socket errors) | {fmt_summary(r['failed'], '', 0)} |",
        f"| of which non-2xx | {fmt_summary(r['non_2xx'], '', 0)} |",
        f"| throughput | {fmt_summary(r['rps'], 'req/s', 0)} |",
        f"| p99 latency | {fmt_summary(r['p99_ms'], 'ms')} |",
        f"| one change + reload (median of the {r['changes']}) | {fmt_summary(r['change_s'], 's', 2)} |",
        f"| a removal (drain, `del server`, re-render, reload) | {fmt_summary(r['remove_s'], 's', 2)} |",
        f"| an addition (`add server`, re-render, reload) | {fmt_summary(r['add_s'], 's', 2)} |",
        f"| the {r['changes']} changes, pauses included | {fmt_summary(r['churn_s'], 's')} |",
        "",
        f"Failed per repetition: {per_run} (median {fmt(r['failed']['median'], '', 0)}).",
    ])
