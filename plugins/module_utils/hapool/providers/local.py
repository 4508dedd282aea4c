"""The ``local`` provider: each instance is an nginx process on this machine.

Layout (``state_dir`` defaults to ``<project>/.state/local``)::

    <state_dir>/.lock                          flock: one launch allocates at a time
    <state_dir>/pools/<pool>/names             every name the pool ever used (never reused)
    <state_dir>/pools/<pool>/<instance>/       the nginx prefix (``nginx -p``)
        instance.json                          name, pool, address, port, created, template
        conf/nginx.conf                        minimal config, like a freshly booted image
        html/index.html                        default page "Hello <instance>!"
        logs/nginx.pid, error.log, access.log, startup.log
        tmp/                                   nginx temp paths

A launch from a baked template (``LaunchSpec.template``: the template tree a bake made, see
``hapool.templates``) copies that tree into the prefix instead, its placeholders replaced by the
host's values (name, pool, address, port, prefix), and records the version in instance.json:
the host serves its final configuration from its first request, with no provisioning.

nginx is started with ``nginx -p <prefix>/ -c <prefix>/conf/nginx.conf`` and daemonises, so it
outlives the controller. Liveness = the pid in ``logs/nginx.pid`` is a live (not zombie)
process whose command line names this prefix. The nginx_web role re-configures the host
through ``nginx_web_prefix`` and reloads it; it must keep ``pid logs/nginx.pid``.

CPU usage (:meth:`LocalProvider.cpu_seconds`): the user + system time of the nginx master and
all its descendants (the workers), plus the time of the children the master has already
reaped (``cutime`` + ``cstime``: workers replaced by a reload), so the counter does not go
backwards on a reload; read from ``/proc/<pid>/stat`` in clock ticks (``SC_CLK_TCK``) by
:mod:`.procfs`, like every other process fact this provider uses (liveness, stopped, children).

Addresses: every instance listens on an address of ``bind_network`` (a loopback CIDR; default
``127.0.0.1/32``) and ``port`` (default 0: a free port the kernel picks for each instance).
With ``bind_network: 127.0.1.0/24`` and ``port: 80`` each host gets its own loopback address
on port 80, like separate machines (Linux routes all of 127.0.0.0/8 to ``lo``; ports below
1024 need root). Allocation runs under a lock, skips pairs used by other instances of this
state directory and pairs something else is bound to, and a launch whose nginx still meets
"address already in use" retries with the next pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

# A module, not names: hapool.templates imports providers.names (templates -> providers package ->
# local -> templates), so its attributes are read at launch time, when both are loaded.
from .. import templates
from ..errors import OrphanError, ProviderError, ProviderUnavailableError, TemplateError
from .base import (
    BROKEN,
    DESTROYED,
    RUNNING,
    STOPPED,
    Instance,
    LaunchSpec,
    LaunchTemplate,
    Provider,
    sort_instances,
)
from .names import instance_name, validate_pool
from .net import wait_tcp
from .procfs import children, pid_alive, pid_stopped, pids_holding, proc_table, read_pid, tree_cpu_ticks
from .state import file_lock, read_json, write_json_atomic

START_ATTEMPTS = 5

NGINX_CONF = """\
# nginx.conf of the hapool local host {name} (pool {pool}), written by the local provider.
# Like a freshly booted base image: one server with a default page. The nginx_web role
# replaces this file (nginx_web_prefix = {prefix}) and reloads nginx; it must keep the pid
# file at logs/nginx.pid, which the provider reads to tell whether the host is alive.
{user_line}worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 512;
}}

http {{
    default_type application/octet-stream;
    types {{
        text/html html htm;
        text/plain txt;
    }}
    access_log logs/access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    server {{
        listen {address}:{port};
        server_name {name};
        root html;
        index index.html;
    }}
}}
"""

INDEX_HTML = """\
<!DOCTYPE html>
<html>
<head><title>{name}</title></head>
<body>
<h1>Hello {name}!</h1>
<p>hapool pool {pool}, local provider, {address}:{port}</p>
</body>
</html>
"""


def render_nginx_conf(*, name: str, pool: str, prefix: str, address: str, port: int, user: str | None) -> str:
    user_line = f"user {user};\n" if user else ""
    return NGINX_CONF.format(
        name=name, pool=pool, prefix=prefix, address=address, port=port, user_line=user_line
    )


def render_index(*, name: str, pool: str, address: str, port: int) -> str:
    return INDEX_HTML.format(name=name, pool=pool, address=address, port=port)


# --- processes (read through .procfs) ---------------------------------------------------------


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_dead(pids: set[int], timeout: float, sleep: Callable[[float], None]) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = {p for p in pids if pid_alive(p)}
    while alive and time.monotonic() < deadline:
        sleep(0.05)
        alive = {p for p in alive if pid_alive(p)}
    return alive


# --- addresses ----------------------------------------------------------------------------------


def can_bind(address: str, port: int) -> int | None:
    """Bind ``address:port`` the way nginx does (SO_REUSEADDR); the bound port, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return None
        bound: int = sock.getsockname()[1]
        return bound


def allocate_address(
    network: str,
    port: int,
    used: set[tuple[str, int]],
    avoid: set[tuple[str, int]] | None = None,
    binder: Callable[[str, int], int | None] = can_bind,
) -> tuple[str, int]:
    """Choose ``(address, port)`` for a new local instance.

    Addresses of ``network`` are tried in order; addresses no instance uses come first, so a
    /24 gives each instance its own address. ``port`` 0 asks the kernel for a free port on
    that address; a fixed port is taken when no instance uses the pair and it can be bound.
    ``binder`` is injectable for tests.
    """
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError as exc:
        raise ProviderError(f"invalid bind_network {network!r}: {exc}") from exc
    if not net.is_loopback or net.version != 4:
        raise ProviderError(f"bind_network {network!r} must be an IPv4 loopback network (127.0.0.0/8)")
    if not 0 <= port <= 65535:
        raise ProviderError(f"invalid port {port}")
    avoid = avoid or set()
    hosts = [str(a) for a in (net.hosts() if net.num_addresses > 2 else net)]
    used_addresses = {a for a, _ in used}
    ordered = [a for a in hosts if a not in used_addresses] + [a for a in hosts if a in used_addresses]
    for address in ordered:
        if port == 0:
            bound = binder(address, 0)
            if bound is not None and (address, bound) not in used | avoid:
                return address, bound
        elif (address, port) not in used | avoid and binder(address, port) is not None:
            return address, port
    raise ProviderError(
        f"no free address in {network} " + (f"for port {port}" if port else "(no port could be bound)")
    )


# --- the provider -------------------------------------------------------------------------------


class LocalProvider(Provider):
    """nginx processes on this machine, one prefix directory each."""

    name = "local"
    OPTIONS: ClassVar[dict[str, str]] = {o: o for o in ("bind_network", "port", "start_timeout")}

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        nginx: str = "nginx",
        bind_network: str = "127.0.0.1/32",
        port: int = 0,
        user: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(state_dir, clock=clock, rng=rng)
        # Worker user. nginx's default when the master runs as root is "nobody", which cannot
        # read a prefix below a private directory (pytest's tmp, a 0700 home): run workers as
        # the controller's user unless told otherwise.
        if user is None and os.geteuid() == 0:
            user = "root"
        self.user = user
        self.nginx = nginx
        self.port = int(port)
        self.bind_network = bind_network
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)

    # -- paths

    def _pool_dir(self, pool: str) -> pathlib.Path:
        return self.state_dir / "pools" / validate_pool(pool)

    def prefix(self, pool: str, name: str) -> pathlib.Path:
        return self._pool_dir(pool) / name

    def _nginx_exe(self) -> str:
        exe = shutil.which(self.nginx) or shutil.which(self.nginx, path=os.defpath + ":/usr/sbin:/sbin")
        if exe is None:
            raise ProviderUnavailableError(
                f"the local provider needs nginx, and {self.nginx!r} is not on PATH "
                "(apt-get install nginx-light, or set the provider's 'nginx' setting)"
            )
        return exe

    def nginx_command(self, prefix: pathlib.Path, exe: str | None = None) -> list[str]:
        return [exe or self.nginx, "-p", f"{prefix}/", "-c", str(prefix / "conf" / "nginx.conf")]

    # -- reading state

    def _read(self, pool: str, prefix: pathlib.Path) -> Instance:
        name = prefix.name
        try:
            meta = read_json(prefix / "instance.json")
            if not isinstance(meta, dict):
                raise ProviderError("instance.json is not an object")
            address, port, created = str(meta["address"]), int(meta["port"]), float(meta["created"])
        except (ProviderError, KeyError, TypeError, ValueError) as exc:
            created = prefix.stat().st_mtime if prefix.exists() else 0.0
            return Instance(
                name=name, pool=pool, provider=self.name, address="", port=0, created=created,
                state=BROKEN, extra={"prefix": str(prefix), "error": str(exc)},
            )  # fmt: skip
        pid = read_pid(prefix / "logs" / "nginx.pid")
        alive = pid is not None and pid_alive(pid, marker=str(prefix))
        return Instance(
            name=name,
            pool=pool,
            provider=self.name,
            address=address,
            port=port,
            created=created,
            state=RUNNING if alive else STOPPED,
            extra={
                "prefix": str(prefix),
                "pid": pid if alive else None,
                "conf": str(prefix / "conf" / "nginx.conf"),
                "pid_file": str(prefix / "logs" / "nginx.pid"),
                "user": str(meta.get("user") or ""),
                "nginx_command": self.nginx_command(prefix),
                "template": meta.get("template") if isinstance(meta.get("template"), str) else None,
            },
        )

    def list(self, pool: str | None = None) -> list[Instance]:
        pools_dir = self.state_dir / "pools"
        if pool is not None:
            pools = [validate_pool(pool)]
        elif pools_dir.is_dir():
            pools = sorted(p.name for p in pools_dir.iterdir() if p.is_dir())
        else:
            pools = []
        found: list[Instance] = []
        for p in pools:
            pool_dir = pools_dir / p
            if not pool_dir.is_dir():
                continue
            for prefix in sorted(pool_dir.iterdir()):
                if prefix.is_dir() and not prefix.name.startswith("."):
                    found.append(self._read(p, prefix))
        return sort_instances(found)

    def get(self, pool: str, name: str) -> Instance | None:
        prefix = self.prefix(pool, instance_name(name))
        return self._read(pool, prefix) if prefix.is_dir() else None

    def _used_endpoints(self) -> set[tuple[str, int]]:
        return {(i.address, i.port) for i in self.list() if i.port}

    # -- CPU usage

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        """User + system seconds of each instance's nginx: master, workers (all descendants)
        and the master's reaped children, from /proc. ``None`` for a host that is not running
        (or not of this pool)."""
        validate_pool(pool)
        result: dict[str, float | None] = dict.fromkeys((instance_name(n) for n in names), None)
        masters: dict[str, int] = {}
        for name in result:
            prefix = self.prefix(pool, name)
            pid = read_pid(prefix / "logs" / "nginx.pid")
            if pid is not None and pid_alive(pid, marker=str(prefix)):
                masters[name] = pid
        if not masters:
            return result
        try:
            ticks_per_second = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot read the clock tick rate (SC_CLK_TCK): {exc}") from exc
        table = proc_table()
        for name, pid in masters.items():
            ticks = tree_cpu_ticks(pid, table)
            result[name] = None if ticks is None else ticks / ticks_per_second
        return result

    # -- launch

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        spec = spec or LaunchSpec()
        validate_pool(pool)
        exe = self._nginx_exe()
        if spec.template is not None and not self.artifact_exists(spec.template.artifact):
            raise ProviderError(
                f"the template tree {spec.template.artifact} of pool {pool}'s template version "
                f"{spec.template.version} is missing (deleted?): bake the pool's template again - "
                "ansible-playbook playbooks/bake.yml (or site.yml) bakes a version whose artefact is gone"
            )
        with file_lock(self.state_dir / ".lock"):
            live = [p.name for p in self._pool_dir(pool).glob("*") if p.is_dir()]
            name = self.ledger.reserve(pool, self.rng, spec.name, live)
            prefix = self.prefix(pool, name)
            created = self.clock()
            try:
                return self._create_and_start(pool, name, prefix, created, exe, template=spec.template)
            except BaseException as exc:
                self._cleanup_failed(prefix, exc)
                raise

    def _create_and_start(
        self,
        pool: str,
        name: str,
        prefix: pathlib.Path,
        created: float,
        exe: str,
        *,
        template: LaunchTemplate | None = None,
    ) -> Instance:
        for sub in ("conf", "html", "logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        used = self._used_endpoints()
        tried: set[tuple[str, int]] = set()
        last_error = ""
        for _ in range(START_ATTEMPTS):
            address, port = allocate_address(self.bind_network, self.port, used, tried)
            tried.add((address, port))
            self._write_files(
                pool=pool, name=name, prefix=prefix, address=address, port=port, created=created,
                template=template,
            )  # fmt: skip
            ok, last_error = self._start(prefix, exe, address, port)
            if ok:
                return self._read(pool, prefix)
            if "Address already in use" not in last_error:
                break
        raise ProviderError(f"nginx of local instance {name} (pool {pool}) did not start: {last_error}")

    def _write_files(
        self,
        *,
        pool: str,
        name: str,
        prefix: pathlib.Path,
        address: str,
        port: int,
        created: float,
        template: LaunchTemplate | None = None,
    ) -> None:
        meta = {
            "name": name,
            "pool": pool,
            "provider": self.name,
            "address": address,
            "port": port,
            "created": created,
            "prefix": str(prefix),
            "user": self.user or "",
            "template": template.version if template is not None else None,
        }
        write_json_atomic(prefix / "instance.json", meta)
        if template is not None:
            host = {"name": name, "pool": pool, "address": address, "port": str(port)}
            self._write_template(template, prefix, host)
            return
        (prefix / "conf" / "nginx.conf").write_text(
            render_nginx_conf(
                name=name, pool=pool, prefix=str(prefix), address=address, port=port, user=self.user
            ),
            encoding="utf-8",
        )
        (prefix / "html" / "index.html").write_text(
            render_index(name=name, pool=pool, address=address, port=port), encoding="utf-8"
        )

    @staticmethod
    def _write_template(template: LaunchTemplate, prefix: pathlib.Path, host: dict[str, str]) -> None:
        """Copy the template tree into ``prefix`` with this host's values (replacing what an
        earlier attempt of the same launch wrote); the tree's logs/ and tmp/ hold no file."""
        stage = prefix / ".template"
        shutil.rmtree(stage, ignore_errors=True)
        values = {
            templates.HOST: host["name"],
            templates.POOL: host["pool"],
            templates.ADDRESS: host["address"],
            templates.PORT: host["port"],
            templates.PREFIX: str(prefix),
        }
        try:
            templates.personalize_tree(template.artifact, stage, values)
        except TemplateError as exc:
            raise ProviderError(f"cannot launch from template version {template.version}: {exc}") from exc
        for entry in sorted(stage.iterdir()):
            target = prefix / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
        stage.rmdir()

    def _start(self, prefix: pathlib.Path, exe: str, address: str, port: int) -> tuple[bool, str]:
        """Start nginx (it daemonises). Returns (running and accepting, error text)."""
        startup_log = prefix / "logs" / "startup.log"
        # Output goes to a file, not a pipe: the daemon would keep a pipe open and hang us.
        with open(startup_log, "ab") as log:
            try:
                proc = subprocess.run(
                    self.nginx_command(prefix, exe),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=self.start_timeout,
                    start_new_session=True,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return False, f"{exe}: {exc}"
        if proc.returncode != 0:
            return False, self._log_tail(prefix) or f"exit status {proc.returncode}"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            pid = read_pid(prefix / "logs" / "nginx.pid")
            if pid is not None and pid_alive(pid, marker=str(prefix)):
                if wait_tcp(address, port, max(deadline, time.monotonic() + 0.1)):
                    return True, ""
                return False, f"nginx runs (pid {pid}) but {address}:{port} does not accept connections"
            time.sleep(0.02)
        return False, "nginx exited or wrote no pid file: " + (self._log_tail(prefix) or "no log output")

    @staticmethod
    def _log_tail(prefix: pathlib.Path, lines: int = 5) -> str:
        out: list[str] = []
        for name in ("startup.log", "error.log"):
            with contextlib.suppress(OSError):
                out += (prefix / "logs" / name).read_text(encoding="utf-8", errors="replace").splitlines()
        return " | ".join(line.strip() for line in out[-lines:] if line.strip())

    def _cleanup_failed(self, prefix: pathlib.Path, cause: BaseException) -> None:
        try:
            self._stop_and_remove(prefix)
        except Exception as exc:
            raise OrphanError(
                f"launch failed ({cause}) and its clean-up failed too ({exc}): {prefix} is left; "
                "destroy it with the pool_instance module (state=absent) or remove it by hand",
                orphan=str(prefix),
            ) from cause

    # -- launch templates

    @property
    def bake_kind(self) -> str | None:
        return "local"

    def template_base(self, spec: LaunchSpec | None = None) -> str:
        """The base of a pool's template: the nginx binary the hosts run, by content
        (``nginx <path> sha256:<digest>``), so an upgraded nginx makes a new version."""
        exe = os.path.realpath(self._nginx_exe())
        digest = hashlib.sha256()
        try:
            with open(exe, "rb") as binary:
                for chunk in iter(lambda: binary.read(1 << 16), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ProviderError(f"cannot read the nginx binary {exe}: {exc}") from exc
        return f"nginx {exe} sha256:{digest.hexdigest()}"

    def artifact_exists(self, artifact: str) -> bool:
        """A template tree is there: a directory (not a symlink) with its ``conf/nginx.conf``."""
        tree = pathlib.Path(artifact)
        return tree.is_dir() and not tree.is_symlink() and (tree / "conf" / "nginx.conf").is_file()

    # -- destroy

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        name = instance_name(instance)
        prefix = self.prefix(pool, name)
        if not prefix.is_dir():
            return None
        with file_lock(self.state_dir / ".lock"):
            before = self._read(pool, prefix)
            self._stop_and_remove(prefix)
        return dataclasses.replace(before, state=DESTROYED)

    #: Seconds a stopped nginx (SIGSTOP: a hung host) gets to quit once it is continued.
    stopped_grace = 1.0

    def _stop_and_remove(self, prefix: pathlib.Path) -> None:
        """QUIT nginx (graceful), KILL it and its workers after ``stop_timeout``, remove the prefix.

        A stopped nginx (master or a worker stopped by SIGSTOP: a hung host) would not act on
        SIGQUIT until it is continued, and a master waits for its workers: it gets SIGQUIT then
        SIGCONT, and only ``stopped_grace`` seconds before SIGKILL (which ends stopped
        processes too) instead of ``stop_timeout``.
        """
        if not prefix.exists():
            return
        pid = read_pid(prefix / "logs" / "nginx.pid")
        if pid is not None and pid_alive(pid, marker=str(prefix)):
            tree = [pid, *children(pid)]
            stopped = any(pid_stopped(p) for p in tree)
            _kill(pid, signal.SIGQUIT)
            if stopped:
                for member in tree:
                    _kill(member, signal.SIGCONT)
            if _wait_dead({pid}, self.stopped_grace if stopped else self.stop_timeout, time.sleep):
                for child in children(pid):
                    _kill(child, signal.SIGKILL)
                _kill(pid, signal.SIGKILL)
                if _wait_dead({pid}, 5.0, time.sleep):
                    raise ProviderError(f"nginx (pid {pid}) of {prefix} survived SIGKILL")
        # Workers left by a master that died (kill -9) still serve: they hold the logs open.
        strays = pids_holding(prefix)
        for stray in strays:
            _kill(stray, signal.SIGKILL)  # stopped (SIGSTOP) ones too
        if _wait_dead(strays, 5.0, time.sleep):
            raise ProviderError(f"processes {sorted(strays)} holding files in {prefix} survived SIGKILL")
        shutil.rmtree(prefix)

    def describe(self) -> dict[str, Any]:
        return {"state_dir": str(self.state_dir), "bind_network": self.bind_network, "port": self.port}

