"""Real HAProxy and nginx processes for tests, on loopback, with free ports.

Reusable by every test suite::

    from helpers.procs import start_nginx, start_haproxy

    web = start_nginx(tmp_path / "web1", "web1")          # serves "Hello web1!" on 127.0.0.1:<free>
    lb = start_haproxy(tmp_path / "lb", {"app": [f"server web1 {web.address} check"]})
    ...
    lb.stop(); web.stop()                                  # (fixtures do it, also on failure)

nginx: one process per server (``daemon off``, ``master_process off``), own prefix directory,
``/`` answers ``Hello <name>!``, ``/health`` answers ``ok``, ``/slow`` sends ``slow_bytes``
at ``slow_rate`` bytes per second (an in-flight request of a known duration).

HAProxy: master-worker mode (``-W -S master.sock``), an admin stats socket with
``expose-fd listeners``, a server-state-file loaded with ``load-server-state-from-file
global``, one HTTP frontend; :meth:`HAProxy.reload` reloads through the master CLI and waits
for the new worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOOPBACK = "127.0.0.1"
CRON_DIR = Path("/etc/cron.d")


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def unix_cli(path: str | os.PathLike[str], line: str, timeout: float = 5.0) -> str:
    """One command on a HAProxy CLI unix socket (stats or master), raw answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(line.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)  # the master CLI answers and closes only after this
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def _stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------


@dataclass
class Nginx:
    name: str
    prefix: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    def stop(self) -> None:
        _stop_process(self.proc, signal.SIGQUIT)


def start_nginx(
    prefix: Path,
    name: str,
    *,
    host: str = LOOPBACK,
    port: int | None = None,
    slow_bytes: int = 64 * 1024,
    slow_rate: int = 32 * 1024,
    timeout: float = 10.0,
) -> Nginx:
    """Start nginx in the foreground with its own prefix dir; wait until it accepts."""
    prefix.mkdir(parents=True, exist_ok=True)
    html = prefix / "html"
    html.mkdir(exist_ok=True)
    (html / "index.html").write_text(f"Hello {name}!\n")
    (html / "slow.bin").write_bytes(b"x" * slow_bytes)
    port = port or free_port(host)
    temp = {key: prefix / f"tmp_{key}" for key in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = prefix / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            daemon off;
            master_process off;
            worker_processes 1;
            pid {prefix}/nginx.pid;
            error_log {prefix}/error.log warn;
            events {{ worker_connections 512; }}
            http {{
                access_log off;
                keepalive_requests 100000;
                client_body_temp_path {temp["body"]};
                proxy_temp_path {temp["proxy"]};
                fastcgi_temp_path {temp["fastcgi"]};
                uwsgi_temp_path {temp["uwsgi"]};
                scgi_temp_path {temp["scgi"]};
                default_type text/plain;
                server {{
                    listen {host}:{port};
                    root {html};
                    location = / {{ try_files /index.html =404; }}
                    location = /health {{ return 200 "ok\\n"; }}
                    location = /slow {{
                        alias {html}/slow.bin;
                        limit_rate {slow_rate};
                        default_type application/octet-stream;
                    }}
                }}
            }}
            """
        )
    )
    log = (prefix / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    server = Nginx(name=name, prefix=prefix, host=host, port=port, proc=proc)
    try:
        wait_until(
            lambda: proc.poll() is not None or port_open(host, port), timeout, f"nginx {name} on {port}"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"nginx {name} exited: {(prefix / 'stderr.log').read_text()[-2000:]}")
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------------------------

DEFAULTS = """\
    mode http
    option idle-close-on-response
    option redispatch
    retries 3
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout queue 5s
    load-server-state-from-file global
"""


@dataclass
class HAProxy:
    directory: Path
    config: Path
    admin_socket: Path
    master_socket: Path
    state_file: Path
    frontend_port: int
    stats_tcp_port: int | None
    proc: subprocess.Popen[bytes] | None = None
    backends: dict[str, list[str]] = field(default_factory=dict)
    extra_sockets: Sequence[str] = ()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.frontend_port}"

    def cli(self, line: str) -> str:
        return unix_cli(self.admin_socket, line)

    def master(self, line: str) -> str:
        return unix_cli(self.master_socket, line)

    def worker_pids(self) -> list[int]:
        """PIDs of the current workers (``show proc`` on the master CLI); retried while the
        master re-executes itself during a reload."""
        text = ""

        def answered() -> bool:
            nonlocal text
            try:
                text = self.master("show proc")
            except OSError:
                return False
            return "master" in text

        wait_until(answered, 10, "the master CLI")
        return [int(p[0]) for p in (line.split() for line in text.splitlines()) if p[1:2] == ["worker"]]

    def write_config(self, backends: Mapping[str, Sequence[str]] | None = None) -> None:
        if backends is not None:
            self.backends = {name: list(lines) for name, lines in backends.items()}
        self.config.write_text(
            render_config(
                frontend_port=self.frontend_port,
                admin_socket=self.admin_socket,
                state_file=self.state_file,
                backends=self.backends,
                stats_tcp_port=self.stats_tcp_port,
                extra_sockets=self.extra_sockets,
            )
        )
        check = subprocess.run(
            [HAPROXY, "-c", "-q", "-f", str(self.config)], check=False, capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"invalid haproxy config:\n{check.stdout}{check.stderr}")

    def reload(self, timeout: float = 15.0) -> None:
        """Reload through the master CLI; wait for a new worker that answers on the socket."""
        before = set(self.worker_pids())
        self.master("reload")

        def new_worker_ready() -> bool:
            try:
                current = set(self.worker_pids())
                return bool(current - before) and "admin" in self.cli("show cli level")
            except (OSError, TimeoutError):
                return False

        wait_until(new_worker_ready, timeout, "the new haproxy worker after reload", interval=0.1)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM)


def render_config(
    *,
    frontend_port: int,
    admin_socket: Path,
    state_file: Path,
    backends: Mapping[str, Sequence[str]],
    stats_tcp_port: int | None = None,
    extra_sockets: Sequence[str] = (),
    balance: str = "roundrobin",
) -> str:
    """A production-like config: ``backends`` maps a name to its lines (``server ...``, and
    ``balance ...`` to override ``balance``); the first backend is the frontend's default.
    Health checks are ``GET /health``; checks are fast so tests are fast (``inter 300ms``).
    ``extra_sockets`` are more ``stats socket`` specs (``{dir}`` is the config's directory)."""
    lines = [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        *[f"    stats socket {spec.format(dir=admin_socket.parent)}" for spec in extra_sockets],
        f"    server-state-file {state_file}",
        "    hard-stop-after 15s",
    ]
    if stats_tcp_port:
        lines.append(f"    stats socket {LOOPBACK}:{stats_tcp_port} level admin")
    lines += ["", "defaults", textwrap.indent(textwrap.dedent(DEFAULTS), "    ").rstrip(), ""]
    names = list(backends)
    lines += ["frontend fe", f"    bind {LOOPBACK}:{frontend_port}"]
    if names:
        lines.append(f"    default_backend {names[0]}")
    for name in names:
        own = list(backends[name])
        lines += ["", f"backend {name}"]
        if not any(line.startswith("balance ") for line in own):
            lines.append(f"    balance {balance}")
        lines += [
            "    option httpchk GET /health",
            "    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2",
        ]
        lines += [f"    {line}" for line in own]
    return "\n".join(lines) + "\n"


def start_haproxy(
    directory: Path,
    backends: Mapping[str, Sequence[str]],
    *,
    stats_tcp: bool = False,
    extra_sockets: Sequence[str] = (),
    timeout: float = 10.0,
) -> HAProxy:
    """Start HAProxy in master-worker mode with a generated config in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    lb = HAProxy(
        directory=directory,
        config=directory / "haproxy.cfg",
        admin_socket=directory / "admin.sock",
        master_socket=directory / "master.sock",
        state_file=directory / "server-state",
        frontend_port=free_port(),
        stats_tcp_port=free_port() if stats_tcp else None,
        extra_sockets=tuple(extra_sockets),
    )
    lb.write_config(backends)
    log = (directory / "haproxy.log").open("wb")
    lb.proc = subprocess.Popen(
        [HAPROXY, "-W", "-S", f"{lb.master_socket},mode,600", "-f", str(lb.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()

    proc = lb.proc

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return (
                "admin" in lb.cli("show cli level")
                and port_open(LOOPBACK, lb.frontend_port)
                and "worker" in lb.master("show proc")
            )
        except OSError:
            return False

    try:
        wait_until(ready, timeout, "haproxy to start")
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited: {(directory / 'haproxy.log').read_text()[-3000:]}")
    except BaseException:
        lb.stop()
        raise
    return lb


@contextlib.contextmanager
def running(*stoppables: Nginx | HAProxy) -> Iterator[None]:
    """Stop the given processes on exit, whatever happens."""
    try:
        yield
    finally:
        for item in reversed(stoppables):
            item.stop()


def _cron_pid() -> int | None:
    """The pid of a cron daemon that runs (a zombie, killed and not yet reaped, does not count)."""
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if not entry.name.isdigit():
            continue
        try:
            comm, rest = (entry / "stat").read_text().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, ValueError, IndexError):
            continue
        if comm == "cron" and not rest.startswith("Z"):
            return int(entry.name)
    return None


@contextlib.contextmanager
def cron_daemon() -> Iterator[None]:
    """Debian's cron daemon running: started here (and stopped on exit) when none runs.
    Raises RuntimeError when there is no cron to start (``make setup`` installs it)."""
    if os.geteuid() != 0 or shutil.which("cron") is None or not CRON_DIR.is_dir():
        raise RuntimeError("needs root and Debian's cron with /etc/cron.d (make setup installs it)")
    started = None
    if _cron_pid() is None:
        subprocess.run(["cron"], check=True)
        wait_until(lambda: _cron_pid() is not None, 10, "cron to start")
        started = _cron_pid()
    try:
        yield
    finally:
        if started is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started, signal.SIGTERM)
            # Gone before the next cron_daemon() looks: one that still saw this dying cron would
            # start none (seen in bench: the loss scenario's timer never ticked after heal's).
            wait_until(lambda: _cron_pid() != started, 10, "cron to stop")
