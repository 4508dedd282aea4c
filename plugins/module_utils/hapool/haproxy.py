"""HAProxy runtime API: a command builder that validates every argument, and a client.

Stdlib only, shipped to the targets with the modules.

The builder (``cmd_*`` functions) is the only way to make a :class:`Command`: backend and
server names, addresses, ports, weights and check options are validated, so no input can
smuggle a second command into the line (``;`` and newlines separate commands on the HAProxy
CLI, spaces separate arguments). The client (:class:`RuntimeClient`) opens one connection per
command to a unix socket or a TCP address (the CLI's non-interactive mode: HAProxy answers
and closes), with a timeout, and turns HAProxy's answers into typed exceptions.

Facts verified on HAProxy 2.6.12:

* ``add server`` needs no experimental mode; the backend must use a dynamic algorithm
  (``Backend must use a dynamic load balancing ...`` otherwise). A dynamic server does not
  inherit ``default-server``, starts in MAINT with its checks configured but disabled:
  ``enable health`` then ``enable server`` make it take traffic.
* Leaving MAINT, HAProxy assumes a checked server is UP ("UP 1/3") before its first check.
  ``set server B/S health down`` right after makes it wait for ``rise`` good checks.
* ``del server`` is refused unless the server is in MAINT (``Only servers in maintenance
  mode can be deleted.``) and has no connection left, and for servers other configuration
  elements point to (``track``).
* Errors are plain text: ``Permission denied`` (level too low), ``No such backend.``,
  ``No such server.``, ``Can't find backend.`` (``show servers state``), ``No such proxy.``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import (
    CommandError,
    ConnectError,
    DrainTimeoutError,
    InvalidArgumentError,
    NotAdminError,
    RuntimeApiError,
    RuntimeTimeoutError,
    SocketNotFoundError,
    SocketPermissionError,
    UnknownBackendError,
    UnknownServerError,
)
from .files import atomic_write
from .stats import (
    AdminState,
    AdminStateName,
    BackendSummary,
    OpState,
    ServerState,
    StatRow,
    backend_summary,
    parse_servers_state,
    parse_show_stat,
)

__all__ = [
    "RUNTIME_ARGUMENT_SPEC",
    "Command",
    "HealthName",
    "RuntimeClient",
    "ServerInfo",
    "ServerOptions",
    "SocketAddress",
    "TakeOut",
    "check_command_line",
    "cmd_add_server",
    "cmd_del_server",
    "cmd_disable_health",
    "cmd_disable_server",
    "cmd_enable_health",
    "cmd_enable_server",
    "cmd_set_addr",
    "cmd_set_health",
    "cmd_set_server_state",
    "cmd_set_weight",
    "cmd_show_cli_level",
    "cmd_show_servers_state",
    "cmd_show_stat",
    "cmd_shutdown_sessions",
    "needs_health_gate",
    "parse_socket_address",
    "removal_commands",
    "server_config_line",
    "state_commands",
    "validate_address",
    "validate_name",
    "validate_port",
    "validate_server_name",
    "validate_time",
    "validate_weight",
    "write_state_file",
]

HealthName = Literal["up", "stopping", "down"]
ADMIN_STATES: tuple[AdminStateName, ...] = ("ready", "drain", "maint")
HEALTH_STATES: tuple[HealthName, ...] = ("up", "stopping", "down")

MAX_NAME_LENGTH = 128
MAX_WEIGHT = 256
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

#: The options of every module that talks to the runtime API (documented once, in the doc
#: fragment ``haproxy_runtime``): ``argument_spec={**RUNTIME_ARGUMENT_SPEC, ...}``.
RUNTIME_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "socket": {"type": "str", "default": "/run/haproxy/admin.sock"},
    "timeout": {"type": "float", "default": 5.0},
}

# HAProxy accepts letters, digits, '-', '_', '.' and ':' in proxy and server names.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+", re.ASCII)
_RESERVED_SERVER_NAMES = frozenset({"FRONTEND", "BACKEND"})
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)
_TIME_RE = re.compile(r"([0-9]{1,9})(us|ms|s|m|h|d)?", re.ASCII)
# Any of these in a command line would end it or start another one.
_FORBIDDEN_IN_LINE = re.compile(r"[;\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_name(value: object, what: str = "name") -> str:
    """A backend or server name: 1-128 of ``A-Z a-z 0-9 _ . : -``, nothing else."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid {what} {value[:80]!r}: use 1-{MAX_NAME_LENGTH} characters of A-Z a-z 0-9 _ . : -"
        )
    return value


def validate_server_name(value: object) -> str:
    """A server name: a valid name (:func:`validate_name`) that HAProxy's statistics do not reserve."""
    name = validate_name(value, "server name")
    if name in _RESERVED_SERVER_NAMES:
        raise InvalidArgumentError(f"{name!r} is reserved by HAProxy's statistics")
    return name


def validate_address(value: object, *, allow_hostname: bool = True) -> str:
    """An IPv4/IPv6 address (returned in canonical form) or, if allowed, a DNS hostname."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"address must be a string, got {type(value).__name__}")
    if not value or len(value) > 253 or "%" in value:
        raise InvalidArgumentError(f"invalid address {value[:80]!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if (
        allow_hostname
        and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return value
    what = "an IP address or a hostname" if allow_hostname else "an IP address"
    raise InvalidArgumentError(f"invalid address {value[:80]!r}: expected {what}")


def validate_port(value: object, what: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgumentError(f"{what} must be an integer from 1 to 65535, got {value!r}")
    return value


def validate_weight(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WEIGHT:
        raise InvalidArgumentError(f"weight must be an integer from 0 to {MAX_WEIGHT}, got {value!r}")
    return value


def _positive_int(value: object, what: str, *, minimum: int = 1, maximum: int = 1_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidArgumentError(f"{what} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def validate_time(value: object, what: str = "time", *, allow_zero: bool = False) -> str:
    """An HAProxy time: an integer (milliseconds) or digits with a unit (us ms s m h d)."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be a time such as 2000, '2s' or '500ms', got {value!r}")
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{what} must be a time such as 2000, '2s' or '500ms', got {value!r}")
    match = _TIME_RE.fullmatch(text)
    if not match:
        raise InvalidArgumentError(f"{what} must be a time such as 2000, '2s' or '500ms', got {text[:40]!r}")
    if int(match.group(1)) == 0 and not allow_zero:
        raise InvalidArgumentError(f"{what} must be greater than 0")
    return text


def check_command_line(line: str) -> str:
    """Refuse a line that would be read as more than one command (``;``, control characters)."""
    if not isinstance(line, str) or not line.strip():
        raise InvalidArgumentError("empty runtime command")
    if _FORBIDDEN_IN_LINE.search(line):
        raise InvalidArgumentError(
            f"runtime command contains a separator or control character: {line[:80]!r}"
        )
    return line


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A runtime command line made of validated parts. Build it with the ``cmd_*`` functions.

    ``expect`` describes a successful answer: ``"empty"`` (nothing but whitespace), the
    prefixes one of which the answer must start with, or ``None`` for read commands whose
    output is parsed.
    """

    text: str
    expect: str | tuple[str, ...] | None = "empty"

    def __post_init__(self) -> None:
        check_command_line(self.text)

    def __str__(self) -> str:
        return self.text

    def accepts(self, response: str) -> bool:
        if self.expect is None:
            return True
        if self.expect == "empty":
            return response.strip() == ""
        prefixes = (self.expect,) if isinstance(self.expect, str) else self.expect
        return response.lstrip().startswith(prefixes)


def _target(backend: str, server: str) -> str:
    return f"{validate_name(backend, 'backend name')}/{validate_server_name(server)}"


@dataclass(frozen=True)
class ServerOptions:
    """Keywords of ``add server`` that HAProxy 2.6 accepts for dynamic servers.

    Dynamic servers do not inherit ``default-server``: give check settings here. Times are
    milliseconds (int) or strings with a unit (``"2s"``). The HTTP check request itself comes
    from the backend (``option httpchk`` / ``http-check send``); 2.6 has no per-server path.
    """

    check: bool = True
    inter: int | str | None = None
    fastinter: int | str | None = None
    downinter: int | str | None = None
    rise: int | None = None
    fall: int | None = None
    check_port: int | None = None
    slowstart: int | str | None = None
    weight: int | None = None
    maxconn: int | None = None
    backup: bool = False

    def keywords(self) -> list[str]:
        """The validated keyword list, in a fixed order."""
        words: list[str] = []
        check_settings = {
            "inter": self.inter,
            "fastinter": self.fastinter,
            "downinter": self.downinter,
            "rise": self.rise,
            "fall": self.fall,
            "check_port": self.check_port,
        }
        if not isinstance(self.check, bool) or not isinstance(self.backup, bool):
            raise InvalidArgumentError("check and backup must be booleans")
        if self.check:
            words.append("check")
        elif any(value is not None for value in check_settings.values()):
            given = ", ".join(name for name, value in check_settings.items() if value is not None)
            raise InvalidArgumentError(f"check settings ({given}) given while check is false")
        for name in ("inter", "fastinter", "downinter"):
            value = getattr(self, name)
            if value is not None:
                words += [name, validate_time(value, name)]
        if self.rise is not None:
            words += ["rise", str(_positive_int(self.rise, "rise", maximum=1000))]
        if self.fall is not None:
            words += ["fall", str(_positive_int(self.fall, "fall", maximum=1000))]
        if self.check_port is not None:
            words += ["port", str(validate_port(self.check_port, "check_port"))]
        if self.slowstart is not None:
            words += ["slowstart", validate_time(self.slowstart, "slowstart", allow_zero=True)]
        if self.weight is not None:
            words += ["weight", str(validate_weight(self.weight))]
        if self.maxconn is not None:
            words += ["maxconn", str(_positive_int(self.maxconn, "maxconn", minimum=0))]
        if self.backup:
            words.append("backup")
        return words


def _host_port(address: str, port: int) -> str:
    host = validate_address(address)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{validate_port(port)}"


def cmd_show_stat() -> Command:
    return Command("show stat", expect=None)


def cmd_show_servers_state(backend: str | None = None) -> Command:
    if backend is None:
        return Command("show servers state", expect=None)
    return Command(f"show servers state {validate_name(backend, 'backend name')}", expect=None)


def cmd_show_cli_level() -> Command:
    return Command("show cli level", expect=None)


def cmd_add_server(
    backend: str, server: str, address: str, port: int, options: ServerOptions | None = None
) -> Command:
    words = (options or ServerOptions()).keywords()
    line = " ".join(["add server", _target(backend, server), _host_port(address, port), *words])
    return Command(line, expect="New server registered.")


def cmd_del_server(backend: str, server: str) -> Command:
    return Command(f"del server {_target(backend, server)}", expect="Server deleted.")


def cmd_enable_server(backend: str, server: str) -> Command:
    return Command(f"enable server {_target(backend, server)}")


def cmd_disable_server(backend: str, server: str) -> Command:
    return Command(f"disable server {_target(backend, server)}")


def cmd_enable_health(backend: str, server: str) -> Command:
    return Command(f"enable health {_target(backend, server)}")


def cmd_disable_health(backend: str, server: str) -> Command:
    return Command(f"disable health {_target(backend, server)}")


def cmd_set_server_state(backend: str, server: str, state: str) -> Command:
    if state not in ADMIN_STATES:
        raise InvalidArgumentError(f"state must be one of {', '.join(ADMIN_STATES)}, got {state!r}")
    return Command(f"set server {_target(backend, server)} state {state}")


def cmd_set_health(backend: str, server: str, health: str) -> Command:
    if health not in HEALTH_STATES:
        raise InvalidArgumentError(f"health must be one of {', '.join(HEALTH_STATES)}, got {health!r}")
    return Command(f"set server {_target(backend, server)} health {health}")


def cmd_set_weight(backend: str, server: str, weight: int) -> Command:
    return Command(f"set server {_target(backend, server)} weight {validate_weight(weight)}")


def cmd_set_addr(backend: str, server: str, address: str, port: int | None = None) -> Command:
    """``set server B/S addr IP [port P]``: HAProxy 2.6 takes IP addresses only here."""
    line = f"set server {_target(backend, server)} addr {validate_address(address, allow_hostname=False)}"
    if port is not None:
        line += f" port {validate_port(port)}"
    # "IP changed from '..' to '..'[, port changed ...]" or "no need to change the addr, ...".
    return Command(line, expect=("IP changed", "no need to change"))


def cmd_shutdown_sessions(backend: str, server: str) -> Command:
    return Command(f"shutdown sessions server {_target(backend, server)}")


def needs_health_gate(before: str, after: str, *, checks: bool, health_gate: bool) -> bool:
    """Whether a change of administrative state from ``before`` to ``after`` forces health down.

    The health gate: a server with health checks that leaves MAINT (a server HAProxy has just
    added is in MAINT) would be assumed UP before its first check; forcing its health down
    on the same line makes it take traffic only after ``rise`` good checks.
    """
    return health_gate and checks and before == "maint" and after != "maint"


def state_commands(
    backend: str, server: str, state: str, *, health_gate: bool = False
) -> tuple[Command, ...]:
    """``set server B/S state S``, with ``set server B/S health down`` chained when gated
    (see :func:`needs_health_gate`); sent on one line so that HAProxy applies both at once."""
    commands = [cmd_set_server_state(backend, server, state)]
    if health_gate:
        commands.append(cmd_set_health(backend, server, "down"))
    return tuple(commands)


def removal_commands(
    backend: str, server: str, *, in_maint: bool = False, at_once: bool = False
) -> list[Command]:
    """The commands that take a server out of its backend, in the order they are sent.

    * drained (the default): ``set server B/S state maint`` (not when the server is in MAINT
      already), then, once its sessions have ended, ``del server B/S``;
    * ``at_once``: ``shutdown sessions server B/S`` between the two: the server's sessions are
      closed instead of drained. This is for a server HAProxy holds DOWN (a hung or dead
      host): draining it only delays, since its sessions wait for answers that will not come;
      HAProxy 2.6 retries on another server the requests whose server side it closes, when
      they may be retried (``retry-on``, ``option redispatch``, not ``disable-l7-retry``).
    """
    commands = [] if in_maint else [cmd_set_server_state(backend, server, "maint")]
    if at_once:
        commands.append(cmd_shutdown_sessions(backend, server))
    commands.append(cmd_del_server(backend, server))
    return commands


def server_config_line(server: str, address: str, port: int, options: ServerOptions | None = None) -> str:
    """The ``server`` line for haproxy.cfg equivalent to :func:`cmd_add_server`."""
    words = (options or ServerOptions()).keywords()
    return " ".join(["server", validate_server_name(server), _host_port(address, port), *words])


# --------------------------------------------------------------------------------------------
# Addresses of the runtime API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SocketAddress:
    """Where the runtime API listens: a unix socket path, or a TCP host and port."""

    family: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.family == "unix":
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_socket_address(spec: str) -> SocketAddress:
    """``/run/haproxy/admin.sock``, ``unix:///path``, ``tcp://127.0.0.1:9999``,
    ``127.0.0.1:9999`` or ``[::1]:9999``."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgumentError("socket must be a path or host:port")
    text = spec.strip()
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path:
            raise InvalidArgumentError(f"socket {spec!r} has no path")
        return SocketAddress("unix", path=path)
    if text.startswith("tcp://"):
        return _tcp_address(text[len("tcp://") :], spec)
    if text.startswith(("/", ".", "~")) or ":" not in text:
        return SocketAddress("unix", path=os.path.expanduser(text))
    return _tcp_address(text, spec)


def _tcp_address(text: str, spec: str) -> SocketAddress:
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise InvalidArgumentError(f"socket {spec!r}: expected host:port")
    return SocketAddress("tcp", host=validate_address(host), port=validate_port(int(port_text)))


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeOut:
    """What :meth:`RuntimeClient.take_out` did: the seconds it took and the sessions the
    server still had when they were shut down."""

    seconds: float
    sessions: int


@dataclass(frozen=True)
class ServerInfo:
    """A server as the runtime sees it: ``show servers state`` merged with ``show stat``."""

    backend: str
    name: str
    address: str
    port: int | None
    fqdn: str | None
    admin: AdminStateName
    admin_state: AdminState
    op_state: OpState
    weight: int
    initial_weight: int
    checks_configured: bool
    checks_enabled: bool
    status: str
    scur: int
    qcur: int
    check_status: str | None

    @classmethod
    def merge(cls, state: ServerState, stat: StatRow | None) -> ServerInfo:
        return cls(
            backend=state.backend,
            name=state.server,
            address=state.addr,
            port=state.port,
            fqdn=state.fqdn,
            admin=state.admin,
            admin_state=state.admin_state,
            op_state=state.op_state,
            weight=state.uweight,
            initial_weight=state.iweight,
            checks_configured=state.checks_configured,
            checks_enabled=state.checks_enabled,
            status=stat.status if stat else "",
            scur=stat.scur if stat else 0,
            qcur=stat.qcur if stat else 0,
            check_status=stat.check_status if stat else None,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "fqdn": self.fqdn,
            "state": self.admin,
            "admin_state": int(self.admin_state),
            "op_state": self.op_state.name.lower(),
            "weight": self.weight,
            "initial_weight": self.initial_weight,
            "checks_enabled": self.checks_enabled,
            "status": self.status,
            "scur": self.scur,
            "qcur": self.qcur,
            "check_status": self.check_status,
        }


Clock = Callable[[], float]
Sleep = Callable[[float], None]

_UNKNOWN_BACKEND = ("No such backend.", "Can't find backend.", "No such proxy.")
_UNKNOWN_SERVER = ("No such server.",)


class RuntimeClient:
    """Client of HAProxy's runtime API (stats socket), one connection per command.

    >>> client = RuntimeClient("/run/haproxy/admin.sock", timeout=5)
    >>> summary = client.backends()["app"]            # doctest: +SKIP
    """

    def __init__(
        self, address: str | SocketAddress, timeout: float = 5.0, *, max_response: int = MAX_RESPONSE_BYTES
    ) -> None:
        self.address = address if isinstance(address, SocketAddress) else parse_socket_address(address)
        if not timeout > 0:
            raise InvalidArgumentError(f"timeout must be > 0, got {timeout!r}")
        self.timeout = float(timeout)
        self.max_response = max_response

    def __repr__(self) -> str:
        return f"RuntimeClient({str(self.address)!r}, timeout={self.timeout:g})"

    # -- transport ---------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        where = str(self.address)
        try:
            if self.address.family == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(self.address.path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            return socket.create_connection((self.address.host, self.address.port), timeout=self.timeout)
        except FileNotFoundError:
            raise SocketNotFoundError(f"no HAProxy runtime socket at {where} (is HAProxy running?)") from None
        except PermissionError:
            raise SocketPermissionError(
                f"permission denied opening {where}: check its mode and owner"
            ) from None
        except TimeoutError:
            raise RuntimeTimeoutError(f"timed out after {self.timeout:g} s connecting to {where}") from None
        except ConnectionRefusedError:
            raise ConnectError(f"connection refused by {where} (is HAProxy running?)") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from None

    def raw(self, line: str) -> str:
        """Send one checked line and return HAProxy's whole answer (it closes after it)."""
        return self._send(check_command_line(line))

    def _send(self, line: str) -> str:
        try:
            payload = line.encode("ascii", "strict") + b"\n"
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"runtime command is not ASCII: {line[:80]!r}") from None
        deadline = time.monotonic() + self.timeout
        sock = self._connect()
        chunks: list[bytes] = []
        size = 0
        try:
            sock.sendall(payload)
            # Like socat: no more input. The stats socket closes after its answer anyway; the
            # master CLI (``-S``) waits for this before it closes.
            sock.shutdown(socket.SHUT_WR)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                size += len(data)
                if size > self.max_response:
                    raise RuntimeApiError(f"answer to {line!r} exceeds {self.max_response} bytes")
                chunks.append(data)
        except TimeoutError:
            raise RuntimeTimeoutError(
                f"HAProxy at {self.address} did not answer {line!r} within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise ConnectError(f"connection to {self.address} failed: {exc.strerror or exc}") from None
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def execute(self, *commands: Command) -> str:
        """Run commands on one line (``a; b``) and check the answer.

        Several commands are only chained when each answers nothing on success, so that
        HAProxy applies them back to back (used to force ``health down`` as a server leaves
        MAINT). Raises :class:`NotAdminError`, :class:`UnknownBackendError`,
        :class:`UnknownServerError` or :class:`CommandError`.
        """
        if not commands:
            raise InvalidArgumentError("no command to execute")
        if len(commands) > 1 and any(command.expect != "empty" for command in commands):
            raise InvalidArgumentError("only commands with an empty answer can be chained")
        # Each command was checked when it was built; only the separator joins them.
        line = "; ".join(check_command_line(command.text) for command in commands)
        response = self._send(line)
        self._classify(line, response)
        for command in commands:
            if not command.accepts(response):
                raise CommandError(line, response)
        return response

    @staticmethod
    def _classify(line: str, response: str) -> None:
        first = response.lstrip().split("\n", 1)[0].strip()
        if first == "Permission denied":
            raise NotAdminError(f"{line!r}: Permission denied (the socket needs 'level admin')")
        if first in _UNKNOWN_BACKEND:
            raise UnknownBackendError(f"{line!r}: {first}")
        if first in _UNKNOWN_SERVER:
            raise UnknownServerError(f"{line!r}: {first}")
        if first.startswith("Unknown command"):
            raise CommandError(line, first)

    # -- reading -----------------------------------------------------------------------------

    def cli_level(self) -> str:
        """``admin``, ``operator`` or ``user``."""
        return self.execute(cmd_show_cli_level()).strip()

    def require_admin(self) -> None:
        level = self.cli_level()
        if level != "admin":
            raise NotAdminError(f"the runtime socket {self.address} has level {level!r}, 'admin' is needed")

    def show_stat(self, backend: str | None = None) -> list[StatRow]:
        """All ``show stat`` rows, or the rows of one backend (UnknownBackendError if none)."""
        rows = parse_show_stat(self.execute(cmd_show_stat()))
        if backend is None:
            return rows
        validate_name(backend, "backend name")
        selected = [row for row in rows if row.proxy == backend]
        if not any(row.is_backend for row in selected):
            raise UnknownBackendError(f"no backend named {backend!r}")
        return selected

    def backends(self, backend: str | None = None) -> dict[str, BackendSummary]:
        return backend_summary(self.show_stat(backend))

    def servers_state_text(self, backend: str | None = None) -> str:
        text = self.execute(cmd_show_servers_state(backend))
        parse_servers_state(text)  # refuse to hand on anything else
        return text

    def show_servers_state(self, backend: str | None = None) -> list[ServerState]:
        return parse_servers_state(self.execute(cmd_show_servers_state(backend)))

    def get_server(self, backend: str, server: str) -> ServerInfo | None:
        """The server, ``None`` if the backend has no such server (UnknownBackendError if no backend)."""
        _target(backend, server)
        state = next((s for s in self.show_servers_state(backend) if s.server == server), None)
        if state is None:
            return None
        stat = next((row for row in self.show_stat(backend) if row.is_server and row.server == server), None)
        return ServerInfo.merge(state, stat)

    def server_state(self, backend: str, server: str) -> ServerInfo:
        info = self.get_server(backend, server)
        if info is None:
            raise UnknownServerError(f"no server {server!r} in backend {backend!r}")
        return info

    def sessions(self, backend: str, server: str) -> tuple[int, int]:
        """(current sessions, queued requests) of a server, from ``show stat``."""
        for row in self.show_stat(backend):
            if row.is_server and row.server == server:
                return row.scur, row.qcur
        raise UnknownServerError(f"no server {server!r} in backend {backend!r}")

    # -- changing ----------------------------------------------------------------------------

    def add_server(
        self, backend: str, server: str, address: str, port: int, options: ServerOptions | None = None
    ) -> None:
        """``add server``: the new server is in MAINT; see :meth:`enable_server`."""
        self.execute(cmd_add_server(backend, server, address, port, options))

    def enable_health(self, backend: str, server: str) -> None:
        self.execute(cmd_enable_health(backend, server))

    def enable_server(self, backend: str, server: str, *, health_gate: bool = False) -> None:
        """Leave MAINT; with ``health_gate``, force health down in the same line so that the
        server takes traffic only after ``rise`` good checks (needs checks enabled)."""
        self.set_server_state(backend, server, "ready", health_gate=health_gate)

    def set_server_state(
        self, backend: str, server: str, state: AdminStateName, *, health_gate: bool = False
    ) -> None:
        self.execute(*state_commands(backend, server, state, health_gate=health_gate))

    def set_health(self, backend: str, server: str, health: HealthName) -> None:
        self.execute(cmd_set_health(backend, server, health))

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        self.execute(cmd_set_weight(backend, server, weight))

    def set_addr(self, backend: str, server: str, address: str, port: int | None = None) -> str:
        return self.execute(cmd_set_addr(backend, server, address, port)).strip()

    def shutdown_sessions(self, backend: str, server: str) -> None:
        self.execute(cmd_shutdown_sessions(backend, server))

    def del_server(self, backend: str, server: str) -> None:
        """``del server`` (the server must be in MAINT without connections)."""
        self.execute(cmd_del_server(backend, server))

    def wait_drained(
        self,
        backend: str,
        server: str,
        timeout: float,
        *,
        interval: float = 0.2,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> float:
        """Poll until the server has no current session and no queued request.

        Returns the seconds waited; raises :class:`DrainTimeoutError` with the counts still
        open when ``timeout`` runs out.
        """
        start = clock()
        while True:
            scur, qcur = self.sessions(backend, server)
            elapsed = clock() - start
            if scur == 0 and qcur == 0:
                return elapsed
            if elapsed >= timeout:
                raise DrainTimeoutError(backend, server, scur, qcur, timeout)
            sleep(max(0.0, min(interval, timeout - elapsed)))

    def remove_server(
        self,
        backend: str,
        server: str,
        timeout: float,
        *,
        interval: float = 0.2,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> float:
        """MAINT, wait until no session is left, ``del server``. Returns the seconds it took.

        HAProxy 2.6 also refuses ``del server`` while the server has idle (reusable) server-side
        connections, which it purges only slowly (``pool-purge-delay``); a server entering
        MAINT closes them, so when only idle connections are left the server re-enters MAINT
        (``state drain; state maint`` on one line) and the deletion is retried, until
        ``timeout``.
        """
        start = clock()
        info = self.server_state(backend, server)
        if info.admin != "maint":
            self.set_server_state(backend, server, "maint")
        self.wait_drained(backend, server, timeout, interval=interval, clock=clock, sleep=sleep)
        while True:
            try:
                self.del_server(backend, server)
                return clock() - start
            except CommandError as exc:
                if "still has connections" not in exc.response or clock() - start >= timeout:
                    raise
            scur, qcur = self.sessions(backend, server)
            if scur == 0 and qcur == 0:
                self.execute(
                    cmd_set_server_state(backend, server, "drain"),
                    cmd_set_server_state(backend, server, "maint"),
                )
                with contextlib.suppress(CommandError):
                    self.del_server(backend, server)
                    return clock() - start
            sleep(interval)

    def take_out(
        self,
        backend: str,
        server: str,
        timeout: float,
        *,
        interval: float = 0.2,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        sent: list[str] | None = None,
    ) -> TakeOut:
        """Take a server out at once: MAINT (unless it is already), ``shutdown sessions
        server``, then ``del server`` as soon as HAProxy has let go of the sessions and
        connections (retried as in :meth:`remove_server`, at most ``timeout`` seconds).

        The commands are those of :func:`removal_commands` with ``at_once``; each one is
        appended to ``sent`` once HAProxy accepted it (what a caller reports when a later one
        fails). Returns the seconds it took and the sessions that were open when they were
        shut down.
        """
        start = clock()
        info = self.server_state(backend, server)
        *changes, delete = removal_commands(backend, server, in_maint=info.admin == "maint", at_once=True)
        sessions = 0
        for command in changes:
            if command.text.startswith("shutdown sessions"):
                sessions = self.sessions(backend, server)[0]
            self.execute(command)
            if sent is not None:
                sent.append(command.text)
        left = max(0.0, timeout - (clock() - start))
        self.remove_server(backend, server, left, interval=interval, clock=clock, sleep=sleep)
        if sent is not None:
            sent.append(delete.text)
        return TakeOut(clock() - start, sessions)

    def dump_servers_state(self, path: str) -> str:
        """Write ``show servers state`` to ``path`` (a server-state-file) atomically."""
        text = self.servers_state_text()
        write_state_file(path, text)
        return text


def write_state_file(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` atomically (temporary file in the same directory, fsync, rename), the
    text ending with a newline."""
    atomic_write(path, text if text.endswith("\n") else text + "\n", mode=mode, fsync=True)
