"""What every benchmark scenario shares: the run context, wrk under a time bound, medians,
a sampler of the balancer's view over time, and the machine's description.

A scenario is a module in ``bench/scenarios`` with

* ``NAME`` (its key in the JSON report), ``TITLE`` (its heading in docs/benchmarks.md),
* ``run(ctx: Context) -> dict`` that measures (JSON-serialisable figures; raises on failure),
* ``markdown(result: dict) -> str`` that renders its section of the report.

The scenarios reuse the test helpers (``tests/helpers``): real HAProxy, nginx, Docker and the
project's playbooks, exactly as the e2e tests drive them. Every load is bounded in time.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "scripts", ROOT / "tests", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import _core_path  # scripts/_core_path.py: the one bootstrap of the core

_core_path.use_core()


class BenchError(RuntimeError):
    """A scenario could not measure what it should (the report shows the message)."""


@dataclass
class Context:
    repeat: int = 3  # repetitions of each measured figure (the report gives the median)
    providers: list[str] = field(default_factory=lambda: ["local", "docker"])
    quick: bool = False  # shorter loads and fewer sizes: to try the bench, not to publish it
    workdir: Path = Path("/tmp")  # noqa: S108  (short paths: HAProxy socket paths max 97 chars)
    img_dir: Path = ROOT / "docs" / "img"

    def dir(self, name: str) -> Path:
        """A fresh directory of the run's work directory (created)."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ statistics

def median(values: Iterable[float | int | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summary(values: Sequence[float | int | None]) -> dict[str, Any]:
    """Median, 90th percentile (5 values or more), min, max and every value (None: a repetition
    that did not produce the figure)."""
    vals = [float(v) for v in values if v is not None]
    return {
        "median": statistics.median(vals) if vals else None,
        # the 90th percentile (inclusive method: within the range) from 5 values up
        "p90": statistics.quantiles(vals, n=10, method="inclusive")[8] if len(vals) >= 5 else None,
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
        "n": len(vals),
        "values": [None if v is None else round(float(v), 4) for v in values],
    }


def fmt(value: float | int | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def fmt_summary(s: dict[str, Any], unit: str = "", digits: int = 1) -> str:
    """``12.3 s (11.0-14.2)``: the median and the range of the repetitions."""
    if s.get("median") is None:
        return "n/a"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], unit, digits)
    return f"{fmt(s['median'], unit, digits)} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


# ------------------------------------------------------------------ wrk

@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]  # p50, p90, p99
    output: str

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx/3xx answer: non-2xx plus connect/read/write/timeout errors."""
        return self.non_2xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("output")
        out["failed"] = self.failed
        return out


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"wrk: cannot read the latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not total or not rps:
        raise BenchError(f"wrk gave no summary:\n{output[-2000:]}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(g) for g in errors.groups()) if errors else (0, 0, 0, 0), strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    latency = {f"p{p}": _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.MULTILINE)}
    return WrkResult(
        requests=int(total.group(1)), seconds=_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(rps.group(1)), non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors, latency_ms=latency, output=output,
    )


class Wrk:
    """wrk in the background, bounded by ``seconds`` (its ``-d``); :meth:`stop` ends it earlier
    with SIGINT, on which wrk prints its summary as at the end of the duration."""

    def __init__(self, url: str, seconds: float, *, connections: int = 8, threads: int = 2,
                 timeout_s: float = 5.0, delay_ms: int = 0) -> None:
        """``delay_ms``: each connection waits that long before each request (wrk's Lua
        ``delay()``), which caps the load near ``connections * 1000 / delay_ms`` req/s."""
        if shutil.which("wrk") is None:
            raise BenchError("wrk is not installed (make setup installs it)")
        self.seconds = seconds
        self._script: Path | None = None
        script: list[str] = []
        if delay_ms:
            fd, name = tempfile.mkstemp(prefix="hp-wrk-", suffix=".lua")
            os.write(fd, f"function delay()\n  return {int(delay_ms)}\nend\n".encode())
            os.close(fd)
            self._script = Path(name)
            script = ["-s", name]
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(seconds))}s",
             f"--timeout={max(1, int(timeout_s))}s", "--latency", *script, url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.started = time.monotonic()

    def stop(self) -> WrkResult:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> WrkResult:
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise BenchError("wrk did not stop") from None
        finally:
            if self._script is not None:
                self._script.unlink(missing_ok=True)
        return parse_wrk(out)

    def __enter__(self) -> Wrk:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        if self._script is not None:
            self._script.unlink(missing_ok=True)


def wrk(url: str, seconds: float, connections: int = 8, threads: int = 2, delay_ms: int = 0) -> WrkResult:
    return Wrk(url, seconds, connections=connections, threads=threads, delay_ms=delay_ms).wait()


# ------------------------------------------------------------------ sampling over time

@dataclass
class Sampler:
    """Calls ``probe()`` every ``interval`` seconds in a thread (bounded by ``max_seconds``)
    and keeps ``(seconds since start, probe())``; a probe that raises is recorded as None."""

    probe: Callable[[], Any]
    interval: float = 0.5
    max_seconds: float = 900.0
    samples: list[tuple[float, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = 0.0

    def start(self) -> Sampler:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        while not self._stop.is_set() and self.now() < self.max_seconds:
            at = self.now()
            try:
                value = self.probe()
            except Exception:
                value = None
            self.samples.append((round(at, 3), value))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, Any]]:
        self._stop.set()
        self._thread.join(10)
        return list(self.samples)


# ------------------------------------------------------------------ the machine

def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "not found"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "hostname": platform.node(),
        "os": os_name,
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "haproxy": _first_line(["haproxy", "-v"]).split(" - ")[0],
        "nginx": _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "docker": _first_line(["docker", "version", "--format", "{{.Server.Version}}"]),
        "ansible": _first_line([str(Path(sys.executable).parent / "ansible"), "--version"]),
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
    }
