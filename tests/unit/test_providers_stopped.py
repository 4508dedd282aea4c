"""How the providers tell a stopped (SIGSTOP, hung) host from a running one, on a fake /proc:
the local provider by the state of nginx's processes, the docker provider by the state of the
container's main process - only when that pid's cgroup names the container (an engine on
another machine gives pids that are not this machine's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.hapool.providers.containers import main_process_stopped
from ansible.module_utils.hapool.providers.procfs import pid_stopped

CONTAINER = "3f9a2c" * 10 + "abcd"


def fake_proc(root: Path, pid: int, state: str, cgroup: str = "") -> str:
    (root / str(pid)).mkdir(parents=True)
    # A whole line, as the kernel writes it (proc(5)): state, ppid, ..., utime, stime, cutime, cstime, ...
    (root / str(pid) / "stat").write_text(
        f"{pid} (nginx: master (x)) {state} 1 {pid} {pid} 0 -1 4194560 120 0 0 0 3 2 0 0 20 0 1 0 900 "
        "11202560 380 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0\n"
    )
    (root / str(pid) / "cgroup").write_text(cgroup)
    return str(root)


@pytest.mark.parametrize(("state", "stopped"), [("T", True), ("t", True), ("S", False), ("R", False),
                                                ("D", False), ("Z", False)])
def test_pid_stopped_reads_the_state_after_the_command(tmp_path: Path, state: str, stopped: bool) -> None:
    proc = fake_proc(tmp_path, 42, state)
    assert pid_stopped(42, proc) is stopped


def test_pid_stopped_of_a_missing_process_is_false(tmp_path: Path) -> None:
    assert pid_stopped(4242, str(tmp_path)) is False


@pytest.mark.parametrize(
    "cgroup",
    [
        f"0::/system.slice/docker-{CONTAINER}.scope\n",  # cgroup v2, systemd driver
        f"12:cpu,cpuacct:/docker/{CONTAINER}\n0::/docker/{CONTAINER}\n",  # v1 / cgroupfs driver
    ],
)
def test_a_container_whose_main_process_is_stopped(tmp_path: Path, cgroup: str) -> None:
    assert main_process_stopped(CONTAINER, 77, fake_proc(tmp_path / "a", 77, "T", cgroup)) is True
    assert main_process_stopped(CONTAINER, 77, fake_proc(tmp_path / "b", 77, "S", cgroup)) is False


def test_a_pid_of_another_container_or_machine_is_not_trusted(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 77, "T", "0::/user.slice/session-1.scope\n")  # not this container
    assert main_process_stopped(CONTAINER, 77, proc) is False
    assert main_process_stopped(CONTAINER, 78, proc) is False  # no such process here
    assert main_process_stopped(CONTAINER, 0, proc) is False  # not running: no pid
    assert main_process_stopped("", 77, proc) is False
