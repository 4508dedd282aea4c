"""Processes on this machine, read from ``/proc``: the one ``/proc/<pid>/stat`` reader
(:func:`read_stat`) and what is built on it (liveness, stopped state, children, process trees
and their CPU ticks), used by the local provider and by the docker provider's hung-host check.

Every function takes ``proc`` (default ``/proc``) so tests can point it at a fake tree.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import NamedTuple

from ..errors import ProviderError

PROC = "/proc"


class ProcStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` that hapool uses (times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int  # user time of waited-for children
    cstime: int  # system time of waited-for children
    #: When the process started (field 22, clock ticks after boot): with the pid, it names one
    #: process (a recycled pid has another). ``None`` on a line too short to have it.
    starttime: int | None = None


def parse_proc_stat(text: str) -> ProcStat:
    """Parse the text of ``/proc/<pid>/stat`` (see proc(5)).

    ``comm`` (field 2) is the command name in parentheses and may itself hold spaces and
    parentheses (``(nginx: (x) y)``), so it runs from the first ``(`` to the LAST ``)``; the
    remaining fields are split on whitespace: state, ppid, ..., utime (14), stime (15), cutime
    (16), cstime (17), ..., starttime (22). Raises :class:`ProviderError` if the text is not of that shape.
    """
    head, paren, tail = text.partition("(")
    comm, close, rest = tail.rpartition(")")
    fields = rest.split()
    try:
        if not (paren and close) or len(fields) < 15:
            raise ValueError("too few fields")
        return ProcStat(
            pid=int(head),
            comm=comm,
            state=fields[0],
            ppid=int(fields[1]),
            utime=int(fields[11]),
            stime=int(fields[12]),
            cutime=int(fields[13]),
            cstime=int(fields[14]),
            starttime=int(fields[19]) if len(fields) > 19 else None,
        )
    except ValueError as exc:
        raise ProviderError(f"unexpected /proc/<pid>/stat text {text[:120]!r}: {exc}") from exc


def read_stat(pid: int | str, proc: str = PROC) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``, parsed; ``None`` when there is no such process (or it
    exited while being read) or its stat text is not of the expected shape."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return parse_proc_stat(fh.read())
    except (OSError, ProviderError):
        return None


def pids(proc: str = PROC) -> list[int]:
    """Every pid listed in ``proc``."""
    try:
        entries = os.listdir(proc)
    except OSError as exc:
        raise ProviderError(f"cannot list {proc}: {exc}") from exc
    return [int(entry) for entry in entries if entry.isdigit()]


def proc_table(proc: str = PROC) -> dict[int, ProcStat]:
    """Every process of ``proc`` (one pass; processes that exit meanwhile are skipped)."""
    table: dict[int, ProcStat] = {}
    for pid in pids(proc):
        stat = read_stat(pid, proc)
        if stat is not None:
            table[pid] = stat
    return table


def tree_cpu_ticks(root: int, table: dict[int, ProcStat]) -> int | None:
    """CPU ticks of ``root`` and all its descendants in ``table`` (utime + stime each), plus
    ``root``'s reaped children (cutime + cstime). ``None`` if ``root`` is not in the table."""
    if root not in table:
        return None
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    top = table[root]
    ticks = top.cutime + top.cstime
    todo, seen = [root], {root}
    while todo:
        pid = todo.pop()
        ticks += table[pid].utime + table[pid].stime
        for child in children.get(pid, ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return ticks


def children(pid: int, proc: str = PROC) -> Iterator[int]:
    """The direct children of ``pid`` (processes whose ppid is ``pid``)."""
    for candidate in pids(proc):
        stat = read_stat(candidate, proc)
        if stat is not None and stat.ppid == pid:
            yield candidate


def cmdline(pid: int, proc: str = PROC) -> str:
    """The command line of ``pid``, arguments joined by spaces ("" when unreadable)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def pid_alive(pid: int, marker: str | None = None, proc: str = PROC) -> bool:
    """``pid`` runs (zombies count as dead: PID 1 may not reap daemons) and, when ``marker``
    is given, its command line contains it (guards against a recycled pid)."""
    stat = read_stat(pid, proc)
    if stat is None or stat.state in ("Z", "X", "x"):
        return False
    return marker is None or marker in cmdline(pid, proc)


def pid_stopped(pid: int, proc: str = PROC) -> bool:
    """``pid`` is stopped by a signal (SIGSTOP, SIGTSTP...) or a tracer: it handles no signal
    but SIGKILL and SIGCONT, so it would never act on a SIGQUIT."""
    stat = read_stat(pid, proc)
    return stat is not None and stat.state in ("T", "t")


def read_pid(pid_file: pathlib.Path) -> int | None:
    """The pid in a pid file (``None`` when missing or not a number)."""
    try:
        text = pid_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pids_holding(directory: pathlib.Path, proc: str = PROC) -> set[int]:
    """Processes (but this one) with an open file under ``directory``."""
    found: set[int] = set()
    prefix = str(directory).rstrip("/") + "/"
    for pid in pids(proc):
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.add(pid)
                break
    found.discard(os.getpid())
    return found
