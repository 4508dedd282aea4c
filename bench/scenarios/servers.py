"""Wall time of heal.yml, scale.yml and site.yml with 10, 100 and 1000 servers in the backend.

One local deployment (``inventories/local``, isolated state root): a pool ``web`` of 2 local
provider hosts, padded with N *static* servers (the pool's ``servers:`` list) that all point at
one real nginx started for the scenario, so that their health checks pass and they are UP.
Static servers are left alone by both planners: ``heal_plan`` keeps them ("a static server of
the pool") and ``scale_plan`` joins the provider's instances with the backend's rows, so
servers without an instance are not counted as capacity and never drained (they only count
in heal_plan's circuit breaker, which is why they must be UP).

Their health checks are slow on purpose (``inter 20s``, per server through the ``extra`` of
each static server, which wins over the backend's ``default-server``): 1000 servers make 50
checks per second against the one nginx. The 2 provider hosts keep the pool's fast checks
(``inter 1s``, ``fall 2``, ``rise 1``), so a killed host is DOWN within seconds.

For each N (10, 100, 1000; ``--quick``: 10 and 100), in the same deployment, growing:

* ``site.yml`` converging the pool to N static servers (the 2 hosts already run), and the size
  of the rendered haproxy.cfg; the very first ``site.yml`` (which also launches the 2 hosts)
  is reported apart;
* ``heal.yml`` with nothing to do (``ctx.repeat`` runs);
* ``heal.yml`` replacing one host killed with SIGKILL (once): the run is timed,
  then the replacement must be alive and UP in HAProxy;
* ``scale.yml`` with nothing to do (file policy at 2; ``ctx.repeat`` runs);
* ``scale.yml`` scaling out by one host (the file policy ``<state root>/scale/web.desired`` at
  3), then back in (at 2), once each; cooldowns, stabilization and warmup 0.

The heavy runs are measured once per size (``_heavy``) to bound the scenario's time (about
10 minutes at ``--repeat 3`` on an idle 2-core machine); the no-op runs ``ctx.repeat`` times.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ansible.module_utils.hapool.providers import get_provider
from helpers.heal import events, instances, kill_hard, pool, server_status
from helpers.procs import start_nginx, wait_until
from helpers.site import Deployment, recap

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "servers"
TITLE = "heal.yml, scale.yml and site.yml with 10, 100 and 1000 servers"
SIZES = [10, 100, 1000]
QUICK_SIZES = [10, 100]
STATIC_CHECK = "inter 20s fastinter 20s downinter 20s"
HOSTS = 2


def _heavy(ctx: Context) -> int:
    """Runs of each heavy figure (a replacement, a scale-out, a scale-in) per size: one, since
    they dominate the scenario's time (the no-op runs get ``ctx.repeat``)."""
    return min(ctx.repeat, 1)


class _Bench:
    def __init__(self, ctx: Context, static_port: int) -> None:
        self.ctx = ctx
        self.static_port = static_port
        tmp = ctx.workdir / "servers"
        tmp.mkdir(parents=True, exist_ok=True)
        self.dep = Deployment(tmp, "local", [])
        self.metric = self.dep.root / "scale" / "web.desired"
        # The pool goes in a file (-e @file): 1000 servers would come near the 128 KiB limit of
        # one command-line argument.
        self.vars_file = tmp / "pools.json"
        self.size = 0

    def set_size(self, n: int) -> None:
        servers = [{"name": f"static{i:04d}", "address": "127.0.0.1", "port": self.static_port,
                    "extra": STATIC_CHECK} for i in range(n)]
        web = pool("local", min=1, desired=HOSTS, max=HOSTS + 2, flap_window=0, servers=servers,
                   scale={"policies": [{"type": "file", "path": str(self.metric)}],
                          "scale_out_cooldown": 0, "scale_in_cooldown": 0, "scale_in_stabilization": 0,
                          "warmup": 0, "drain_timeout": 5})
        self.dep.extra_vars.pop("hapool_pools", None)
        self.vars_file.write_text(json.dumps({"hapool_pools": [web]}))
        self.size = n

    def play(self, playbook: str, what: str) -> float:
        t0 = time.monotonic()
        run = self.dep.play(playbook, "-e", f"@{self.vars_file}")
        seconds = time.monotonic() - t0
        if run.returncode != 0:
            raise BenchError(f"{what} ({playbook}, {self.size} static servers) failed:\n"
                             f"{run.stdout[-4000:]}{run.stderr[-2000:]}")
        self.last = run
        self.ctx.log(f"  {what}: {seconds:.1f} s")
        return seconds

    def hosts(self) -> list[Any]:
        return [i for i in instances(self.dep, "local") if i.alive]

    def view(self) -> dict[str, str]:
        return server_status(self.dep, "local")

    def check_healthy(self, hosts: int) -> None:
        """``hosts`` live provider hosts, each UP in HAProxy, and every static server UP."""
        names = {i.name for i in self.hosts()}

        def ok() -> bool:
            view = self.view()
            static = [s for n, s in view.items() if n.startswith("static")]
            return (len(names) == hosts and all(view.get(n, "").startswith("UP") for n in names)
                    and len(static) == self.size and all(s.startswith("UP") for s in static))

        try:
            wait_until(ok, 60, f"{hosts} hosts and {self.size} static servers UP", interval=0.5)
        except TimeoutError:
            view = self.view()
            raise BenchError(f"not healthy: hosts {sorted(names)}, statuses "
                             f"{Counter(v.split()[0] for v in view.values())}, "
                             f"hosts' {({n: view.get(n) for n in names})}") from None

    def actions(self) -> Counter[str]:
        return Counter(str(e.get("action")) for e in events(self.dep))

    def write_desired(self, n: int) -> None:
        self.metric.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.metric.with_suffix(".tmp")
        tmp.write_text(f"{n}\n")
        tmp.replace(self.metric)


def _noop(b: _Bench, playbook: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        before = b.actions()
        out.append(b.play(playbook, f"{playbook} no-op"))
        acted = {k: v for k, v in (b.actions() - before).items()
                 if k not in ("scale_recommendation",)}
        if acted:
            raise BenchError(f"{playbook} was expected to do nothing but logged {acted}")
        changed = recap(b.last.stdout).get("localhost", {}).get("changed", 0)
        b.ctx.log(f"    (localhost changed={changed})")
    return out


def _heal_replace(b: _Bench, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        victim = min(b.hosts(), key=lambda i: i.created)  # the oldest: out of its grace period
        kill_hard(victim)
        wait_until(lambda v=victim.name: v not in {i.name for i in b.hosts()}, 10, "the kill")
        out.append(b.play("heal.yml", f"heal.yml replacing {victim.name}"))
        names = {i.name for i in b.hosts()}
        if victim.name in names or len(names) != HOSTS:
            raise BenchError(f"heal.yml did not replace {victim.name}: live hosts {sorted(names)}")
        view = b.view()
        if not all(view.get(n, "").startswith("UP") for n in names):
            raise BenchError(f"after heal.yml: {({n: view.get(n) for n in names})}")
    return out


def _scale_out_in(b: _Bench, runs: int) -> tuple[list[float], list[float]]:
    outs, ins = [], []
    for _ in range(runs):
        before = {i.name for i in b.hosts()}
        b.write_desired(HOSTS + 1)
        outs.append(b.play("scale.yml", f"scale.yml {HOSTS} -> {HOSTS + 1}"))
        after = {i.name for i in b.hosts()}
        new = after - before
        view = b.view()
        if len(after) != HOSTS + 1 or len(new) != 1 or not view.get(next(iter(new)), "").startswith("UP"):
            raise BenchError(f"scale-out: hosts {sorted(before)} -> {sorted(after)}, view "
                             f"{({n: view.get(n) for n in after})}")
        b.write_desired(HOSTS)
        ins.append(b.play("scale.yml", f"scale.yml {HOSTS + 1} -> {HOSTS}"))
        left = {i.name for i in instances(b.dep, "local")}
        if len(left) != HOSTS or not set(b.view()) >= left:
            raise BenchError(f"scale-in: hosts {sorted(after)} -> {sorted(left)}")
    return outs, ins


def _cleanup(b: _Bench) -> None:
    with contextlib.suppress(Exception):
        b.dep.play("teardown.yml", "-e", f"@{b.vars_file}")
    with contextlib.suppress(Exception), get_provider("local", state_root=str(b.dep.root)) as prov:
        for inst in prov.list():
            prov.destroy(inst.pool, inst)
    b.dep.remove_state()


def run(ctx: Context) -> dict[str, Any]:
    sizes = QUICK_SIZES if ctx.quick else SIZES
    static_dir = ctx.workdir / "servers-static"
    nginx = start_nginx(static_dir, "static")
    b = _Bench(ctx, nginx.port)
    result: dict[str, Any] = {"sizes": {}, "repeat": ctx.repeat, "heavy_repeat": _heavy(ctx),
                              "hosts": HOSTS, "static_check": STATIC_CHECK}
    try:
        b.set_size(sizes[0])
        b.write_desired(HOSTS)
        ctx.log(f"first site.yml: {HOSTS} hosts, {sizes[0]} static servers")
        result["first_site_s"] = round(b.play("site.yml", "first site.yml"), 3)
        for n in sizes:
            ctx.log(f"{n} static servers + {HOSTS} hosts")
            b.set_size(n)
            site_s = b.play("site.yml", f"site.yml to {n} static servers")
            cfg = b.dep.root / "local" / "haproxy" / "haproxy.cfg"
            b.check_healthy(HOSTS)
            figures: dict[str, Any] = {
                "servers": n + HOSTS,
                "cfg_bytes": cfg.stat().st_size,
                "cfg_server_lines": sum(1 for line in cfg.read_text().splitlines()
                                        if line.lstrip().startswith("server ")),
                "site_s": round(site_s, 3),
            }
            figures["heal_noop_s"] = summary(_noop(b, "heal.yml", ctx.repeat))
            figures["heal_replace_s"] = summary(_heal_replace(b, _heavy(ctx)))
            b.check_healthy(HOSTS)
            figures["scale_noop_s"] = summary(_noop(b, "scale.yml", ctx.repeat))
            outs, ins = _scale_out_in(b, _heavy(ctx))
            figures["scale_out_s"] = summary(outs)
            figures["scale_in_s"] = summary(ins)
            b.check_healthy(HOSTS)
            result["sizes"][str(n)] = figures
    finally:
        _cleanup(b)
        nginx.stop()
        shutil.rmtree(static_dir, ignore_errors=True)
        shutil.rmtree(Path(ctx.workdir / "servers"), ignore_errors=True)
    return result


def markdown(r: dict[str, Any]) -> str:
    sizes = list(r["sizes"])
    rows = [
        ("`site.yml` (re-render to N servers, hosts running)", "site_s"),
        ("`heal.yml`, nothing to do", "heal_noop_s"),
        ("`heal.yml`, one host killed: replaced and UP", "heal_replace_s"),
        ("`scale.yml`, nothing to do", "scale_noop_s"),
        ("`scale.yml`, scale out by one host (2 → 3, UP)", "scale_out_s"),
        ("`scale.yml`, scale back in (3 → 2, drained)", "scale_in_s"),
    ]
    head = "| run | " + " | ".join(f"{int(s) + r['hosts']:,} servers" for s in sizes) + " |"
    lines = [
        f"One local deployment: a pool of {r['hosts']} local provider hosts padded with N static servers",
        "(the pool's `servers:` list) that all point at one nginx, so that they pass their checks and",
        f"are UP (their checks: `{r['static_check']}`, per server; the hosts keep `inter 1s`). `heal_plan`",
        "keeps static servers, and `scale_plan` ignores them (it only counts servers that are provider",
        "instances), so only the hosts are healed and scaled. Wall time of `ansible-playbook`, median",
        f"of {r['repeat']} runs for the no-op runs (range in brackets); the replacement, the scale-out and",
        f"the scale-in ran {r['heavy_repeat']} time(s) per size (they dominate the scenario's time). The",
        "scale runs use the file policy with cooldowns, stabilization and warmup at 0; `site.yml` runs once.",
        "",
        head,
        "|---|" + "---|" * len(sizes),
    ]
    for label, key in rows:
        cells = []
        for s in sizes:
            value = r["sizes"][s][key]
            cells.append(f"{value:.1f} s" if isinstance(value, int | float) else fmt_summary(value, "s"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| haproxy.cfg size | " + " | ".join(
        f"{r['sizes'][s]['cfg_bytes'] / 1024:.0f} KiB ({r['sizes'][s]['cfg_server_lines']:,} `server` lines)"
        for s in sizes) + " |")
    lines += ["", f"The first `site.yml` (launching the {r['hosts']} hosts, {sizes[0]} static servers) took "
              f"{r['first_site_s']:.1f} s."]
    return "\n".join(lines)
