"""Parse time of ``show stat`` with 10 000 rows.

A real HAProxy is started with one backend of 10 000 servers (checks off: they point at a
closed loopback port), its ``show stat`` is read over the admin socket, then parsed by
``parse_show_stat`` (and summarised by ``backend_summary``, which heal_plan and scale_plan
call) ``repeat`` x 5 times. The socket read (HAProxy producing the CSV) is timed apart.
"""

from __future__ import annotations

import time
from typing import Any

from ansible.module_utils.hapool.haproxy import RuntimeClient, cmd_show_stat
from ansible.module_utils.hapool.stats import backend_summary, parse_show_stat
from helpers.procs import free_port, running, start_haproxy

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "parse"
TITLE = "Parse time of `show stat` with 10 000 rows"
SERVERS = 10_000


def run(ctx: Context) -> dict[str, Any]:
    closed = free_port()  # nothing listens there; checks are off, so the servers stay UP
    servers = [f"server s{i:05d} 127.0.0.1:{closed}" for i in range(SERVERS)]
    ctx.log(f"starting HAProxy with {SERVERS} servers")
    lb = start_haproxy(ctx.workdir / "parse", {"big": servers}, timeout=60)
    with running(lb):
        client = RuntimeClient(str(lb.admin_socket), timeout=30)
        read_s, parse_s, summary_s = [], [], []
        text = ""
        for _ in range(ctx.repeat * 5):
            t0 = time.perf_counter()
            text = client.execute(cmd_show_stat())
            read_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rows = parse_show_stat(text)
            parse_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            backend_summary(rows)
            summary_s.append(time.perf_counter() - t0)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    big_rows = sum(1 for line in lines if line.startswith("big,"))
    if big_rows < SERVERS:
        raise BenchError(f"show stat had {big_rows} rows of the backend, expected at least {SERVERS}")
    return {
        "rows": len(lines),
        "bytes": len(text.encode()),
        "read_ms": summary([s * 1000 for s in read_s]),
        "parse_ms": summary([s * 1000 for s in parse_s]),
        "summary_ms": summary([s * 1000 for s in summary_s]),
        "parse_us_per_row": summary([s * 1e6 / len(lines) for s in parse_s]),
    }


def markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        f"`show stat` of a real HAProxy with one backend of {SERVERS:,} servers: {r['rows']:,} rows, "
        f"{r['bytes'] / 1e6:.1f} MB of CSV. `parse_show_stat` (the parser every module uses) and",
        "`backend_summary` (what `heal_plan` and `scale_plan` compute from it), median of "
        f"{r['parse_ms']['n']} runs:",
        "",
        "| step | time | per row |",
        "|---|---|---|",
        f"| HAProxy writes it, read over the admin socket | {fmt_summary(r['read_ms'], 'ms')} | |",
        f"| `parse_show_stat` | {fmt_summary(r['parse_ms'], 'ms')} | "
        f"{fmt_summary(r['parse_us_per_row'], 'µs', 2)} |",
        f"| `backend_summary` | {fmt_summary(r['summary_ms'], 'ms')} | |",
    ])
