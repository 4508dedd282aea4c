"""The heal schedule in tests: install it with heal_timer.yml (a name of its own), and remove it
afterwards, also on failure - the cron entry, the watcher and the runs a tick started."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from helpers.heal import events
from helpers.procs import CRON_DIR, wait_until
from helpers.site import Deployment


class Schedule:
    def __init__(self, dep: Deployment, **settings: object) -> None:
        self.dep = dep
        self.name = f"hapool-heal-t{secrets.token_hex(4)}"
        self.settings = {
            "heal_timer_name": self.name,
            "heal_timer_playbook_args": ["-e", json.dumps(dep.extra_vars)],
            **settings,
        }
        self.log = dep.root / "heal" / f"{self.name}.log"

    def apply(self, state: str) -> subprocess.CompletedProcess[str]:
        return self.dep.play("heal_timer.yml", **self.settings, heal_timer_state=state)

    def watcher_pid(self) -> int | None:
        try:
            return int((self.dep.root / "heal" / f"{self.name}-watch.pid").read_text())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def scheduled(dep: Deployment, **settings: object) -> Iterator[Schedule]:
    schedule = Schedule(dep, **settings)
    try:
        run = schedule.apply("present")
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        yield schedule
    finally:
        pid = schedule.watcher_pid()
        removed = schedule.apply("absent")
        # never leave a cron entry or a watcher behind, whatever the role did
        (CRON_DIR / schedule.name).unlink(missing_ok=True)
        if pid is not None and is_watcher(pid):
            os.kill(pid, signal.SIGTERM)
        # A tick started before the removal finishes its heal run: wait for it (the deployment
        # is shared with the next tests), then stop whatever is left of the wrapper.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not wrapper_pids(schedule), 120, "the schedule's runs to end", interval=0.5)
        for left in wrapper_pids(schedule):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGTERM)
        assert removed.returncode == 0, removed.stdout[-5000:]
        assert not (CRON_DIR / schedule.name).exists()
        assert pid is None or not is_watcher(pid)


def wrapper_pids(schedule: Schedule) -> list[int]:
    """Live processes running the schedule's wrapper (a tick and its heal run)."""
    wrapper = f"{schedule.name}-tick.sh".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if wrapper in (proc / "cmdline").read_bytes() and not zombie(int(proc.name)):
                    pids.append(int(proc.name))
    return pids


def is_watcher(pid: int) -> bool:
    try:
        return "-watch.py" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") and not zombie(pid)
    except OSError:
        return False


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_for_replace(dep: Deployment, victim: str, timeout: float) -> dict[str, object]:
    found: list[dict[str, object]] = []

    def replaced() -> bool:
        found[:] = [e for e in events(dep) if e["action"] == "replace" and e["instance"] == victim]
        return bool(found)

    wait_until(replaced, timeout, f"a replace event of {victim}", interval=0.5)
    return found[0]
