#!/usr/bin/env python3
"""Query hapool's event log (what heal.yml and scale.yml did) from a terminal.

    scripts/events.py                                   # every event, as a table
    scripts/events.py --pool web --since 1h             # pool web, the last hour
    scripts/events.py --action replace,circuit_open --since 2026-11-22T00:00:00Z
    scripts/events.py --instance web-3f9a2c --json      # JSON lines, for jq
    scripts/events.py --limit 20                        # the 20 newest

The log is <state root>/heal/events.jsonl (the state root is $HAPOOL_STATE_DIR, default the
project's .state), or --log PATH. Stdlib and hapool's module_utils only; runs with any
Python 3.11. Exit status 0 (also when nothing matches, and when lines of the log cannot be
read: they are skipped with a warning on stderr naming them), 2 on a bad argument or a log
that cannot be read at all (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import _core_path  # scripts/_core_path.py, next to this file: the one bootstrap of the core

ROOT = _core_path.ROOT
_core_path.use_core()

from ansible.module_utils.hapool.actions import KNOWN_ACTIONS, unknown_actions
from ansible.module_utils.hapool.errors import HapoolError
from ansible.module_utils.hapool.events import count_actions, format_events, parse_time, read_events_checked

TIME_HELP = "epoch seconds, a duration ago (30s, 10m, 2h, 1d, 1w), now, or ISO-8601 (UTC without an offset)"


def default_log() -> Path:
    root = os.environ.get("HAPOOL_STATE_DIR") or str(ROOT / ".state")
    return Path(root) / "heal" / "events.jsonl"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="events.py",
        description="Query hapool's event log (heal.yml and scale.yml) by pool, time, action and instance.",
        epilog="Exit status: 0 (unreadable lines are skipped with a warning), or 2 on a bad argument or "
        "a log that cannot be read at all.",
    )
    cli.add_argument("--log", type=Path, help=f"the event log (default: {default_log()})")
    cli.add_argument("--pool", help="only this pool")
    cli.add_argument("--since", help=f"only events at or after this time: {TIME_HELP}")
    cli.add_argument("--until", help="only events at or before this time (same formats)")
    cli.add_argument(
        "--action", action="append", default=[], metavar="ACTION[,ACTION...]",
        help="only these actions (repeat or separate with commas), e.g. replace,scale_out; hapool's "
        f"actions: {', '.join(KNOWN_ACTIONS)}",
    )  # fmt: skip
    cli.add_argument("--instance", help="only events about this instance (its instance or replacement)")
    cli.add_argument("--limit", type=int, help="only the newest LIMIT matching events")
    cli.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    return cli


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)  # exits 2 with a usage message on a bad option
    now = time.time()
    try:
        since = parse_time(args.since, now=now)
        until = parse_time(args.until, now=now)
    except HapoolError as exc:
        cli.error(str(exc))
    if since is not None and until is not None and since > until:
        cli.error(f"--since {args.since} is after --until {args.until}")
    if args.limit is not None and args.limit < 0:
        cli.error(f"--limit must be 0 or more, got {args.limit}")
    actions = tuple(a.strip() for value in args.action for a in value.split(",") if a.strip())
    unknown = unknown_actions(actions)
    if unknown:  # an action of the user's own, or a typo: said, and looked for all the same
        print(f"events.py: warning: {', '.join(unknown)}: not an action hapool writes "
              f"(those are: {', '.join(KNOWN_ACTIONS)})", file=sys.stderr)  # fmt: skip
    log = args.log or default_log()
    if not log.exists():
        if args.log is not None:
            print(f"events.py: error: the event log {log} does not exist", file=sys.stderr)
            return 2
        print(f"no events: {log} does not exist yet (no heal.yml or scale.yml run has written one)",
              file=sys.stderr)  # fmt: skip
        return 0
    try:
        checked = read_events_checked(
            str(log), pool=args.pool, since=since, until=until, actions=actions, instance=args.instance,
            limit=args.limit,
        )  # fmt: skip
    except HapoolError as exc:
        print(f"events.py: error: {exc}", file=sys.stderr)
        return 2
    if checked.skipped:
        print(f"events.py: warning: {checked.warning(str(log))}", file=sys.stderr)
    events = checked.events
    if args.json:
        for event in events:
            print(json.dumps(event, default=str))
        return 0
    if not events:
        print(f"no matching events in {log}")
        return 0
    print("\n".join(line.rstrip() for line in format_events(events)))
    counts = count_actions(events)
    print(f"\n{len(events)} event(s): " + ", ".join(f"{action} {n}" for action, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
