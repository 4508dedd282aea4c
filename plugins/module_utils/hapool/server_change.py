"""What ``haproxy_server`` does, as a pure plan and a small executor.

* :class:`WantedServer` is the module's wanted state, validated (names, address, port, check
  options, timeouts) before HAProxy is contacted.
* :func:`plan_server_change` is pure: from what the runtime API reported of the server
  (``before``, ``None`` when it is absent) and the wanted state, it returns a
  :class:`ServerPlan` - the commands in the order they are sent, whether anything changes, the
  predicted server, the diff and the module's result. Check mode reports the plan.
* :func:`execute_plan` runs a plan against a :class:`~.haproxy.RuntimeClient`: the steps one
  line each, or the removal (drain then ``del server``, or at once with ``force`` and
  ``drain_timeout=0``), and the wait for sessions to end.

Stdlib only, shipped to the targets with the modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import DrainTimeoutError, HapoolError, InvalidArgumentError
from .haproxy import (
    Command,
    RuntimeClient,
    ServerInfo,
    ServerOptions,
    cmd_add_server,
    cmd_enable_health,
    cmd_set_addr,
    cmd_set_weight,
    cmd_shutdown_sessions,
    needs_health_gate,
    removal_commands,
    server_config_line,
    state_commands,
    validate_address,
    validate_name,
    validate_port,
    validate_server_name,
)

__all__ = [
    "FORCE_GRACE",
    "SERVER_ARGUMENT_SPEC",
    "STATES",
    "Outcome",
    "ServerPlan",
    "WantedServer",
    "execute_plan",
    "failure_result",
    "plan_server_change",
    "server_view",
]

#: Seconds left to delete a server after its sessions were shut down (``force``).
FORCE_GRACE = 10.0

STATES = ("present", "ready", "drain", "maint", "absent")

#: ``haproxy_server``'s own options (with :data:`~.haproxy.RUNTIME_ARGUMENT_SPEC`); the
#: defaults of :meth:`WantedServer.from_params` come from here.
SERVER_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "backend": {"type": "str", "required": True},
    "name": {"type": "str", "required": True, "aliases": ["server"]},
    "state": {"type": "str", "default": "present", "choices": list(STATES)},
    "address": {"type": "str"},
    "port": {"type": "int"},
    "weight": {"type": "int"},
    "check": {"type": "bool", "default": True},
    "inter": {"type": "str"},
    "fastinter": {"type": "str"},
    "downinter": {"type": "str"},
    "rise": {"type": "int"},
    "fall": {"type": "int"},
    "check_port": {"type": "int"},
    "slowstart": {"type": "str"},
    "maxconn": {"type": "int"},
    "backup": {"type": "bool", "default": False},
    "health_gate": {"type": "bool", "default": True},
    "wait": {"type": "bool", "default": False},
    "drain_timeout": {"type": "float", "default": 300.0},
    "force": {"type": "bool", "default": False},
    "poll_interval": {"type": "float", "default": 0.2},
    "state_file": {"type": "path"},
}

Removal = Literal["none", "drain", "at_once"]


def _time(value: Any) -> Any:
    # Times may come as "2000" from YAML strings: an integer means milliseconds.
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _positive(value: Any, what: str, *, allow_zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise InvalidArgumentError(f"{what} must be a positive number")
    return float(value)


@dataclass(frozen=True)
class WantedServer:
    """The wanted state of one server, validated. Build it with :meth:`from_params`."""

    backend: str
    name: str
    state: str = "present"
    address: str | None = None
    port: int | None = None
    options: ServerOptions = field(default_factory=ServerOptions)
    health_gate: bool = True
    wait: bool = False
    drain_timeout: float = 300.0
    force: bool = False
    poll_interval: float = 0.2
    state_file: str | None = None
    #: ``add server`` and the matching configuration line, when address and port are given.
    add_command: Command | None = None
    server_line: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WantedServer:
        """The module's parameters (missing keys take the module's defaults), validated.

        Raises :class:`~.errors.InvalidArgumentError` for a bad name (``;``, spaces, newlines,
        ``/``, a reserved name), address, port, check option or timeout.
        """
        p: dict[str, Any] = {key: spec.get("default") for key, spec in SERVER_ARGUMENT_SPEC.items()}
        p.update(params)
        backend = validate_name(p["backend"], "backend name")
        name = validate_server_name(p["name"])
        if p["state"] not in STATES:
            raise InvalidArgumentError(f"state must be one of {', '.join(STATES)}, got {p['state']!r}")
        address = validate_address(p["address"]) if p["address"] is not None else None
        port = validate_port(p["port"]) if p["port"] is not None else None
        options = ServerOptions(
            check=p["check"],
            inter=_time(p["inter"]),
            fastinter=_time(p["fastinter"]),
            downinter=_time(p["downinter"]),
            rise=p["rise"],
            fall=p["fall"],
            check_port=p["check_port"],
            slowstart=_time(p["slowstart"]),
            weight=p["weight"],
            maxconn=p["maxconn"],
            backup=p["backup"],
        )
        add_command = server_line = None
        if address is not None and port is not None:
            # Validates the check options too; they are used only when the server is added.
            server_line = server_config_line(name, address, port, options)
            add_command = cmd_add_server(backend, name, address, port, options)
        drain_timeout = _positive(p["drain_timeout"], "drain_timeout", allow_zero=True)
        poll_interval = _positive(p["poll_interval"], "poll_interval")
        if "timeout" in p:
            _positive(p["timeout"], "timeout")
        return cls(
            backend=backend,
            name=name,
            state=p["state"],
            address=address,
            port=port,
            options=options,
            health_gate=bool(p["health_gate"]),
            wait=bool(p["wait"]),
            drain_timeout=drain_timeout,
            force=bool(p["force"]),
            poll_interval=poll_interval,
            state_file=p["state_file"],
            add_command=add_command,
            server_line=server_line,
        )


def server_view(server: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the diff shows of a server (``{}`` when it is absent)."""
    if not server:
        return {}
    return {key: server[key] for key in ("address", "port", "state", "weight")}


@dataclass(frozen=True)
class ServerPlan:
    """The commands for one server, in the order they are sent, and what they lead to.

    ``steps`` are runtime command lines (commands of one step are chained with ``; `` and
    applied back to back). With ``removal`` other than ``"none"`` the steps are the removal
    commands, which :func:`execute_plan` interleaves with waits.
    """

    wanted: WantedServer
    before: ServerInfo | None
    steps: tuple[tuple[Command, ...], ...]
    after: dict[str, Any] | None
    removal: Removal = "none"

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    @property
    def lines(self) -> list[str]:
        return ["; ".join(command.text for command in step) for step in self.steps]

    @property
    def diff(self) -> dict[str, Any]:
        header = f"{self.wanted.backend}/{self.wanted.name}"
        before = None
        if self.before is not None:  # a server added by hostname shows its hostname
            before = {**self.before.as_dict(), "address": self.before.fqdn or self.before.address}
        return {
            "before": server_view(before),
            "after": server_view(self.after),
            "before_header": header,
            "after_header": header,
        }

    def result(self, *, diff: bool = False) -> dict[str, Any]:
        """The module's result as planned (what check mode returns)."""
        result: dict[str, Any] = {
            "changed": self.changed,
            "backend": self.wanted.backend,
            "name": self.wanted.name,
            "commands": self.lines,
            "before": self.before.as_dict() if self.before else None,
            "server": self.after,
            "state": self.after["state"] if self.after else "absent",
            "sessions": self.before.scur if self.before else 0,
            "waited": 0.0,
            "forced_sessions": 0,
            "state_file_written": False,
        }
        if self.wanted.server_line:
            result["server_line"] = self.wanted.server_line
        if diff:
            result["diff"] = self.diff
        return result


def plan_server_change(before: ServerInfo | None, params: WantedServer | Mapping[str, Any]) -> ServerPlan:
    """The plan that brings the server from ``before`` to the wanted state. Pure.

    Raises :class:`~.errors.InvalidArgumentError` for invalid parameters and for a missing
    server that cannot be added (no address or port).
    """
    wanted = params if isinstance(params, WantedServer) else WantedServer.from_params(params)
    backend, name = wanted.backend, wanted.name
    if wanted.state == "absent":
        if before is None:
            return ServerPlan(wanted, None, (), None)
        at_once = wanted.force and wanted.drain_timeout == 0
        commands = removal_commands(backend, name, in_maint=before.admin == "maint", at_once=at_once)
        return ServerPlan(
            wanted, before, tuple((command,) for command in commands), None, "at_once" if at_once else "drain"
        )
    target = None if wanted.state == "present" else wanted.state
    if before is None:
        return _plan_add(wanted, target or "ready")

    steps: list[tuple[Command, ...]] = []
    after: dict[str, Any] = before.as_dict()
    address = wanted.address
    if address is not None and before.fqdn and address == before.fqdn:
        address = None  # added by hostname, unchanged
    if (address is not None and address != before.address) or (
        wanted.port is not None and wanted.port != before.port
    ):
        set_to = address if address is not None else before.address
        port = wanted.port if wanted.port is not None else before.port
        steps.append((cmd_set_addr(backend, name, set_to, port),))
        after.update(address=set_to, port=port)
    weight = wanted.options.weight
    if weight is not None and weight != before.weight:
        steps.append((cmd_set_weight(backend, name, weight),))
        after["weight"] = weight
    if target is not None and target != before.admin:
        gate = needs_health_gate(
            before.admin, target, checks=before.checks_enabled, health_gate=wanted.health_gate
        )
        steps.append(state_commands(backend, name, target, health_gate=gate))
        after["state"] = target
    return ServerPlan(wanted, before, tuple(steps), after)


def _plan_add(wanted: WantedServer, final: str) -> ServerPlan:
    backend, name = wanted.backend, wanted.name
    if wanted.add_command is None or wanted.address is None or wanted.port is None:
        raise InvalidArgumentError(
            f"server {name!r} does not exist in backend {backend!r}: give address and port to add it"
        )
    check = wanted.options.check
    steps: list[tuple[Command, ...]] = [(wanted.add_command,)]
    if check:
        steps.append((cmd_enable_health(backend, name),))
    # HAProxy adds the server in MAINT.
    if final != "maint":
        gate = needs_health_gate("maint", final, checks=check, health_gate=wanted.health_gate)
        steps.append(state_commands(backend, name, final, health_gate=gate))
    after = {
        "backend": backend,
        "name": name,
        "address": wanted.address,
        "port": wanted.port,
        "state": final,
        "weight": wanted.options.weight if wanted.options.weight is not None else 1,
        "checks_enabled": check,
    }
    return ServerPlan(wanted, None, tuple(steps), after)


def failure_result(wanted: WantedServer, exc: HapoolError, sent: list[str] | None = None) -> dict[str, Any]:
    """The keys of haproxy_server's failed result besides the message: the server (``backend``,
    ``name``; also for a missing server given without address or port), and once the run
    started sending, ``changed`` and the ``commands`` HAProxy accepted (``sent``), with a drain
    timeout's open ``sessions`` and ``queued`` requests."""
    extra: dict[str, Any] = {"backend": wanted.backend, "name": wanted.name}
    if sent is not None:
        extra.update(changed=bool(sent), commands=list(sent))
    if isinstance(exc, DrainTimeoutError):
        extra.update(sessions=exc.sessions, queued=exc.queued)
    return extra


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What :func:`execute_plan` did: the commands (as the result lists them), the seconds
    spent waiting for sessions and the sessions ``force`` closed."""

    commands: list[str]
    waited: float = 0.0
    forced_sessions: int = 0

    def result(self) -> dict[str, Any]:
        return {"commands": self.commands, "waited": self.waited, "forced_sessions": self.forced_sessions}


def execute_plan(
    client: RuntimeClient,
    plan: ServerPlan,
    *,
    sent: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Run ``plan``. Each command line HAProxy accepted is appended to ``sent`` (what a caller
    reports when a later one fails: HapoolError, DrainTimeoutError with the open counts)."""
    done: list[str] = [] if sent is None else sent
    wanted, lines = plan.wanted, plan.lines
    backend, name, interval = wanted.backend, wanted.name, wanted.poll_interval
    if plan.removal == "at_once":
        # A DOWN server: no drain, its sessions wait for a host that does not answer.
        took = client.take_out(backend, name, FORCE_GRACE, interval=interval, sent=done)
        return Outcome(lines, round(took.seconds, 3), took.sessions)
    if plan.removal == "drain":
        # maint (unless already), wait for the sessions to end, del server (retried while
        # HAProxy still reports connections), all within drain_timeout.
        if plan.before is not None and plan.before.admin != "maint":
            client.set_server_state(backend, name, "maint")
            done.append(lines[0])
        timeout, waited, forced = wanted.drain_timeout, 0.0, 0
        if wanted.force:
            started = clock()
            try:
                client.wait_drained(backend, name, timeout, interval=interval)
            except DrainTimeoutError as exc:
                # The deregistration delay is over: close what is left, then delete.
                client.shutdown_sessions(backend, name)
                done.append(cmd_shutdown_sessions(backend, name).text)
                lines = [*lines[:-1], done[-1], lines[-1]]
                forced = exc.sessions
                timeout = FORCE_GRACE
            waited = clock() - started
        waited += client.remove_server(backend, name, timeout, interval=interval)
        done.append(lines[-1])
        return Outcome(lines, round(waited, 3), forced)
    for step, line in zip(plan.steps, lines, strict=True):
        client.execute(*step)
        done.append(line)
    if wanted.state in ("drain", "maint") and wanted.wait:
        waited = client.wait_drained(backend, name, wanted.drain_timeout, interval=interval)
        return Outcome(lines, round(waited, 3))
    return Outcome(lines)
