"""The heal timer's tick wrapper runs the playbook it is told to (heal.yml by default,
reconcile.yml for heal + scale): the role is applied for real into a temporary directory (no
schedule, no watcher) with a stand-in ansible-playbook that records its arguments, and the
wrapper's `once` tick is run."""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"

STUB = """#!/bin/sh
# stands in for ansible-playbook: records its arguments, one per line
printf '%s\\n' "$@" > "$(dirname "$0")/argv"
echo "stub ran"
"""


def _apply(tmp_path: pathlib.Path, **settings: object) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "ansible-playbook"
    stub.write_text(STUB)
    stub.chmod(0o755)
    play = [
        {
            "name": "Apply heal_timer without a schedule or a watcher",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "roles": [
                {
                    "role": "heal_timer",
                    "vars": {
                        "hapool_state_root": str(tmp_path),
                        "heal_timer_name": "hapool-heal-unit",
                        "heal_timer_scheduler": "none",
                        "heal_timer_watch": False,
                        "heal_timer_dir": str(tmp_path / "heal"),
                        "heal_timer_project_dir": str(ROOT),
                        "heal_timer_inventory": str(ROOT / "inventories" / "local"),
                        "heal_timer_ansible_playbook": str(stub),
                        "heal_timer_playbook_args": ["-e", "x=1"],
                        **settings,
                    },
                }
            ],
        }
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path / ".tmp")
    )
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )


@pytest.mark.parametrize(
    ("settings", "playbook"),
    [({}, "heal.yml"), ({"heal_timer_playbook": "reconcile.yml"}, "reconcile.yml")],
    ids=["default-heal", "reconcile"],
)
def test_the_wrapper_runs_the_chosen_playbook(
    tmp_path: pathlib.Path, settings: dict[str, str], playbook: str
) -> None:
    run = _apply(tmp_path, **settings)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    wrapper = tmp_path / "heal" / "hapool-heal-unit-tick.sh"
    text = wrapper.read_text()
    path = str(ROOT / "playbooks" / playbook)
    assert f"runs {path}." in text
    assert "flock -n" in text

    tick = subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=False)
    assert tick.returncode == 0, tick.stdout + tick.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == ["-i", str(ROOT / "inventories" / "local"), path, "-e", "x=1"]
    log = (tmp_path / "heal" / "hapool-heal-unit.log").read_text()
    assert "heal run (tick once, pid" in log and f"): {playbook}" in log
    assert "stub ran" in log and "heal run exited 0" in log


def test_a_tick_while_a_run_holds_the_lock_is_skipped_and_logged(tmp_path: pathlib.Path) -> None:
    run = _apply(tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    wrapper = tmp_path / "heal" / "hapool-heal-unit-tick.sh"
    with open(tmp_path / "heal" / "hapool-heal-unit.flock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a run in progress holds it
        tick = subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=False)
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert not (tmp_path / "argv").exists(), "the playbook ran while another run held the lock"
    log = (tmp_path / "heal" / "hapool-heal-unit.log").read_text()
    assert "tick once skipped: a heal run is in progress" in log and "heal run (tick" not in log
    # Lock released: the next tick runs.
    tick = subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=False)
    assert tick.returncode == 0 and (tmp_path / "argv").exists(), tick.stdout + tick.stderr


def test_the_ticks_of_a_minute_start_on_the_clock_s_multiples_of_the_period(tmp_path: pathlib.Path) -> None:
    """The cron wrapper's ticks start every period to the millisecond, however long a tick takes
    (whole-second sleeps made them up to a second late): period 1 s, the stand-in playbook notes
    when it starts; the wrapper is stopped after 3 ticks."""
    run = _apply(tmp_path, heal_timer_period=1)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    stub = tmp_path / "ansible-playbook"
    stub.write_text('#!/bin/sh\ndate +%s.%N >> "$(dirname "$0")/starts"\nsleep 0.3\n')
    while time.time() % 1 < 0.5:  # started in the second half of a second: whole-second sleeps would be late
        time.sleep(0.02)
    wrapper = subprocess.Popen([str(tmp_path / "heal" / "hapool-heal-unit-tick.sh")], start_new_session=True)
    try:
        starts = tmp_path / "starts"
        for _ in range(100):
            if starts.exists() and len(starts.read_text().split()) >= 4:
                break
            time.sleep(0.1)
    finally:
        os.killpg(wrapper.pid, signal.SIGTERM)
        wrapper.wait(timeout=10)
    times = [float(t) for t in starts.read_text().split()]
    assert len(times) >= 4, times
    # tick 0 starts at once, ticks 1.. on the second (the stand-in starts some ms after its tick)
    late = [t - int(t) for t in times[1:4]]
    assert all(x < 0.2 for x in late), late
    assert [int(t) - int(times[1]) for t in times[1:4]] == [0, 1, 2], times


def test_the_systemd_units_are_valid(tmp_path: pathlib.Path) -> None:
    """systemd is not PID 1 here: the units are installed without starting them
    (heal_timer_systemd_start: false) and checked by systemd-analyze verify."""
    units = tmp_path / "systemd"
    units.mkdir()
    run = _apply(tmp_path, heal_timer_scheduler="systemd", heal_timer_systemd_dir=str(units),
                 heal_timer_systemd_start=False, heal_timer_watch=True, heal_timer_period=10)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    names = sorted(p.name for p in units.iterdir())
    assert names == ["hapool-heal-unit-watch.service", "hapool-heal-unit.service", "hapool-heal-unit.timer"]
    verify = subprocess.run(["systemd-analyze", "verify", *(str(units / n) for n in names)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stdout + verify.stderr
    timer = (units / "hapool-heal-unit.timer").read_text()
    assert "OnUnitActiveSec=10s" in timer and "AccuracySec=100ms" in timer
    service = (units / "hapool-heal-unit.service").read_text()
    assert f"ExecStart={tmp_path / 'heal' / 'hapool-heal-unit-tick.sh'} once" in service
    watch = (units / "hapool-heal-unit-watch.service").read_text()
    assert "hapool-heal-unit-watch.py --socket" in watch and "Restart=always" in watch
    assert not (tmp_path / "heal" / "hapool-heal-unit-watch.pid").exists()  # no process watcher


def test_an_absolute_playbook_path_is_run_as_is(tmp_path: pathlib.Path) -> None:
    mine = tmp_path / "mine.yml"
    mine.write_text("---\n[]\n")
    run = _apply(tmp_path, heal_timer_playbook=str(mine))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    wrapper = tmp_path / "heal" / "hapool-heal-unit-tick.sh"
    subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=True)
    assert (tmp_path / "argv").read_text().splitlines()[2] == str(mine)


@pytest.mark.parametrize("bad", ["nosuch.yml", "heal"])
def test_a_missing_or_odd_playbook_is_refused_before_anything_is_installed(
    tmp_path: pathlib.Path, bad: str
) -> None:
    run = _apply(tmp_path, heal_timer_playbook=bad)
    assert run.returncode != 0
    assert "heal_timer_playbook" in run.stdout + run.stderr
    assert not (tmp_path / "heal" / "hapool-heal-unit-tick.sh").exists()


def test_a_tick_starts_a_dead_balancer_before_its_playbook_also_while_a_run_holds_the_lock(
    tmp_path: pathlib.Path,
) -> None:
    """With heal_timer_watch_ensure set (heal_timer.yml sets it from the haproxy role), each tick
    first runs the watcher's --once check: the stats socket does not answer here, so the supervise
    script (a stand-in printing its report) runs with --restart and a balancer_restart event by
    the timer is logged; then the playbook runs."""
    calls = tmp_path / "ensure-calls"
    ensure = tmp_path / "ensure-running.sh"
    ensure.write_text(
        f"#!/bin/sh\necho \"$@\" >> {calls}\n"
        """echo '{"action": "start", "reason": "master not running", "seconds": 0.2, "master": 5}'\n"""
    )
    ensure.chmod(0o755)
    run = _apply(tmp_path, heal_timer_watch_ensure=str(ensure),
                 heal_timer_watch_socket=str(tmp_path / "none.sock"))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    wrapper = tmp_path / "heal" / "hapool-heal-unit-tick.sh"
    assert (tmp_path / "heal" / "hapool-heal-unit-watch.py").exists()  # installed for the check
    tick = subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=False)
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert calls.read_text() == "--restart\n" and (tmp_path / "argv").exists()
    [event] = [json.loads(line) for line in (tmp_path / "heal" / "events.jsonl").read_text().splitlines()]
    assert (event["action"], event["by"], event["restart"], event["instance"]) == (
        "balancer_restart", "timer", "start", "localhost")
    log = (tmp_path / "heal" / "hapool-heal-unit.log").read_text()
    assert log.index("started the master again") < log.index("heal run (tick once")
    # a run holds the lock: the tick is skipped, the balancer check is not
    (tmp_path / "argv").unlink()
    with open(tmp_path / "heal" / "hapool-heal-unit.flock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        subprocess.run([str(wrapper), "once"], capture_output=True, text=True, timeout=60, check=True)
    assert calls.read_text() == "--restart\n--restart\n" and not (tmp_path / "argv").exists()
