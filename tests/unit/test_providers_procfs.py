"""The one /proc/<pid>/stat reader (providers/procfs.py): a real process this test starts (its
command name set to hold spaces and parentheses), and stat lines of every awkward shape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.errors import ProviderError
from ansible.module_utils.hapool.lock import holder_alive, process_start
from ansible.module_utils.hapool.providers.procfs import (
    ProcStat,
    children,
    cmdline,
    parse_proc_stat,
    pid_alive,
    pid_stopped,
    proc_table,
    read_stat,
    tree_cpu_ticks,
)

#: At most 15 characters (the kernel's TASK_COMM_LEN), with what makes naive parsers stumble.
COMM = "w) (x y) z"
MARKER = "hapool-procfs-test"

CHILD = f"""
import sys, time
end = time.process_time() + 0.2
while time.process_time() < end:  # some CPU time, so that utime + stime > 0
    pass
with open("/proc/self/comm", "w") as fh:
    fh.write({COMM!r})
print("ready", flush=True)
time.sleep(60)  # {MARKER}
"""

#: A whole stat line as the kernel writes it: after comm, state, ppid, pgrp, session, tty_nr,
#: tpgid, flags, minflt, cminflt, majflt, cmajflt, utime (7), stime (3), cutime (2), cstime (1)...
TAIL = "S 1 40 40 0 -1 4194560 120 0 0 0 7 3 2 1 20 0 1 0 900 11202560 380 18446744073709551615 1 1 0"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, MARKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def wait_for_state(pid: int, states: str, timeout: float = 5.0) -> ProcStat:
    deadline = time.monotonic() + timeout
    while True:
        stat = read_stat(pid)
        assert stat is not None
        if stat.state in states or time.monotonic() > deadline:
            return stat
        time.sleep(0.01)


# --- a real process ------------------------------------------------------------------------------


def test_real_process_with_spaces_and_parentheses_in_its_command_name(child):
    stat = read_stat(child.pid)
    assert stat is not None
    assert (stat.pid, stat.comm, stat.ppid) == (child.pid, COMM, os.getpid())
    assert stat.state in "SR"
    assert stat.utime + stat.stime > 0  # it burnt 0.2 s of CPU before sleeping
    assert proc_table()[child.pid].comm == COMM
    ticks = tree_cpu_ticks(os.getpid(), proc_table())
    assert ticks is not None and ticks >= stat.utime + stat.stime  # this test's tree includes it
    assert child.pid in set(children(os.getpid()))
    assert MARKER in cmdline(child.pid)
    assert pid_alive(child.pid) and pid_alive(child.pid, marker=MARKER)
    assert not pid_alive(child.pid, marker="not-" + MARKER)


def test_real_process_stopped_continued_zombie_and_gone(child):
    os.kill(child.pid, signal.SIGSTOP)
    assert wait_for_state(child.pid, "Tt").state in "Tt"
    assert pid_stopped(child.pid) and pid_alive(child.pid)
    os.kill(child.pid, signal.SIGCONT)
    assert wait_for_state(child.pid, "SR").state in "SR"
    assert not pid_stopped(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    assert wait_for_state(child.pid, "Z").state == "Z"  # not reaped yet: a zombie
    assert not pid_alive(child.pid)
    child.wait()
    assert read_stat(child.pid) is None
    assert not pid_alive(child.pid) and not pid_stopped(child.pid)


def test_start_time_names_the_process_for_the_pool_lock(child):
    """lock.py's holder check reads the start time through read_stat: field 22 of the stat line
    (counted after the command name, which holds spaces and parentheses here)."""
    with open(f"/proc/{child.pid}/stat", encoding="utf-8") as fh:
        field_22 = fh.read().rsplit(")", 1)[1].split()[19]
    stat = read_stat(child.pid)
    assert stat is not None and stat.starttime == int(field_22)
    assert process_start(child.pid) == field_22
    lease = {"holder_pid": child.pid, "holder_start": field_22}
    assert holder_alive(lease)
    assert not holder_alive({**lease, "holder_start": str(int(field_22) + 1)})  # a recycled pid
    os.kill(child.pid, signal.SIGKILL)
    assert wait_for_state(child.pid, "Z").state == "Z"
    assert process_start(child.pid) is None and not holder_alive(lease)  # a zombie holds nothing
    child.wait()
    assert process_start(child.pid) is None


def test_a_line_without_a_start_time_has_none():
    assert parse_proc_stat(f"4321 (nginx) {' '.join(TAIL.split()[:19])}").starttime is None
    assert parse_proc_stat(f"4321 (nginx) {TAIL}").starttime == 900


# --- stat lines of awkward shapes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("comm"),
    [
        "nginx",
        "nginx: master",  # spaces
        "a) (b",  # a ')' followed by more text: the comm runs to the LAST ')'
        "x) S 1 2 3 4 (",  # looks like the fields themselves
        "((",
        "))",
        "",  # empty
        " ",
    ],
)
def test_comm_with_spaces_and_parentheses(comm):
    stat = parse_proc_stat(f"4321 ({comm}) {TAIL}\n")
    assert stat == ProcStat(pid=4321, comm=comm, state="S", ppid=1, utime=7, stime=3, cutime=2, cstime=1,
                            starttime=900)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        f"4321 nginx {TAIL}",  # no parentheses
        f"4321 (nginx {TAIL}",  # no closing one
        f"4321 nginx) {TAIL}",  # no opening one
        f"pid (nginx) {TAIL}",  # pid not a number
        "4321 (nginx) S 1 40 40 0 -1 4194560",  # too few fields (no times)
        f"4321 (nginx) {TAIL.replace('S 1 ', 'S one ')}",  # ppid not a number
        f"4321 (nginx) {TAIL.replace(' 7 3 2 1 ', ' 7 x 2 1 ')}",  # stime not a number
    ],
)
def test_malformed_stat_lines_are_a_clear_error(text):
    with pytest.raises(ProviderError, match="unexpected /proc/<pid>/stat text"):
        parse_proc_stat(text)


def fake_proc(root: Path, stats: dict[int, str]) -> str:
    for pid, text in stats.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(text)
    (root / "self").mkdir()  # not a pid: ignored
    return str(root)


def test_every_reader_skips_malformed_entries_of_a_proc_tree(tmp_path):
    proc = fake_proc(
        tmp_path,
        {
            10: f"10 (a) (b c) {TAIL}\n",
            11: f"11 (child) {TAIL.replace('S 1 ', 'T 10 ')}\n",
            12: "12 (garbage\n",
            13: f"13 (bad ppid) {TAIL.replace('S 1 ', 'R 10x ')}\n",
        },
    )
    assert read_stat(10, proc) == parse_proc_stat(f"10 (a) (b c) {TAIL}")
    assert read_stat(12, proc) is None and read_stat(13, proc) is None and read_stat(99, proc) is None
    assert sorted(proc_table(proc)) == [10, 11]
    assert list(children(10, proc)) == [11]
    assert pid_stopped(11, proc) and not pid_stopped(10, proc)
    assert not pid_stopped(12, proc) and not pid_alive(12, proc=proc)
    assert tree_cpu_ticks(10, proc_table(proc)) == (7 + 3) * 2 + 2 + 1


def test_an_unreadable_proc_is_a_clear_error(tmp_path):
    with pytest.raises(ProviderError, match="cannot list"):
        proc_table(str(tmp_path / "no-proc"))
