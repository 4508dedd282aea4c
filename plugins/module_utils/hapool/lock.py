"""The pool lock: a lease for runs that span several processes (an Ansible play, one module per
task), shared by every playbook that acts on pools (heal, scale, site, refresh) - one at a time.

``flock`` only lives as long as the process that holds it, and every Ansible task is a new
process: an acting run holds a *lease* instead, a small JSON file ``{"owner", "acquired",
"expires"}`` rewritten under ``flock``. A second run finds a lease that has not expired and
stops ("locked"); a run that crashed leaves a lease that expires after ``ttl`` seconds.
A lease may also name the process that runs the holder (``pid`` with its start time, e.g. the
``ansible-playbook`` process): once that process is gone the lease is stale at once, so a
run that was killed does not block the next ones until the ttl. Time is passed in. Stdlib only.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from typing import Any

from .errors import LockError
from .providers.procfs import read_stat  # providers/ never imports lock.py: no import cycle


@dataclass(frozen=True)
class LeaseResult:
    acquired: bool
    owner: str
    holder: str | None  # who holds the lease now (us when acquired)
    expires: float | None
    stale_owner: str | None = None  # an expired lease that was taken over

    def as_dict(self) -> dict[str, Any]:
        return {
            "acquired": self.acquired,
            "owner": self.owner,
            "holder": self.holder,
            "expires": self.expires,
            "stale_owner": self.stale_owner,
        }


def _open(path: str) -> int:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LockError(f"cannot open the lock file {path}: {exc}") from exc


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        value = json.loads(data.decode("utf-8") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _write(fd: int, value: dict[str, Any]) -> None:
    payload = json.dumps(value).encode("utf-8")
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, payload)
    os.fsync(fd)


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, from ``procfs.read_stat``), None if it
    does not run (or is a zombie)."""
    stat = read_stat(pid)
    if stat is None or stat.state in ("Z", "X", "x") or stat.starttime is None:
        return None
    return str(stat.starttime)


def holder_alive(lease: dict[str, Any]) -> bool:
    """False when the lease names a process that no longer runs (or a recycled pid)."""
    pid, start = lease.get("holder_pid"), lease.get("holder_start")
    if not isinstance(pid, int) or not pid > 0:
        return True  # nothing to check: only the ttl counts
    current = process_start(pid)
    return current is not None and current == start


def acquire(path: str, owner: str, ttl: float, now: float, *, holder_pid: int | None = None) -> LeaseResult:
    """Take the lease unless another owner holds one that has not expired and whose process
    (when it named one) still runs."""
    if not owner:
        raise LockError("a lease needs an owner")
    if not ttl > 0:
        raise LockError(f"ttl must be > 0, got {ttl!r}")
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease = _read(fd)
        holder = lease.get("owner")
        expires = float(lease.get("expires") or 0)
        if holder and holder != owner and expires > now and holder_alive(lease):
            return LeaseResult(False, owner, str(holder), expires)
        stale = str(holder) if holder and holder != owner else None
        record: dict[str, Any] = {"owner": owner, "acquired": now, "expires": now + ttl}
        if holder_pid is not None:
            record.update(holder_pid=holder_pid, holder_start=process_start(holder_pid))
        _write(fd, record)
        return LeaseResult(True, owner, owner, now + ttl, stale)
    finally:
        os.close(fd)


def release(path: str, owner: str) -> bool:
    """Give the lease up if ``owner`` holds it; True when released."""
    if not os.path.exists(path):
        return False
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease = _read(fd)
        if lease.get("owner") != owner:
            return False
        _write(fd, {})
        return True
    finally:
        os.close(fd)


__all__ = ["LeaseResult", "acquire", "holder_alive", "process_start", "release"]
