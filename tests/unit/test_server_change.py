"""plan_server_change without HAProxy: every transition of one server, as tables.

``before`` is what the runtime API would report (a :class:`ServerInfo`, or ``None`` when the
server is absent), the parameters are the module's; each row gives the command lines the
plan sends, in order, and what the plan predicts. The executor, ``execute_plan``, runs here
against :class:`FakeRuntime` (the order of the commands, the waits, the forced drain's splice,
a refusal mid-plan); the commands' effect on a real HAProxy is tested in
tests/integration/test_haproxy_modules.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from ansible.module_utils.hapool.errors import (
    CommandError,
    DrainTimeoutError,
    HapoolError,
    InvalidArgumentError,
    NotAdminError,
    UnknownServerError,
)
from ansible.module_utils.hapool.haproxy import (
    Command,
    RuntimeClient,
    ServerInfo,
    TakeOut,
    needs_health_gate,
    state_commands,
    validate_server_name,
)
from ansible.module_utils.hapool.server_change import (
    FORCE_GRACE,
    SERVER_ARGUMENT_SPEC,
    Outcome,
    WantedServer,
    execute_plan,
    failure_result,
    plan_server_change,
)
from ansible.module_utils.hapool.stats import AdminState, OpState

ADMIN_BITS = {"ready": AdminState.NONE, "drain": AdminState.FDRAIN, "maint": AdminState.FMAINT}


def server(state: str = "ready", **changes: Any) -> ServerInfo:
    """web1 of backend app, as ``show servers state`` + ``show stat`` would report it."""
    info = ServerInfo(
        backend="app",
        name="web1",
        address="10.0.0.1",
        port=8080,
        fqdn=None,
        admin=state,  # type: ignore[arg-type]
        admin_state=ADMIN_BITS[state],
        op_state=OpState.RUNNING,
        weight=1,
        initial_weight=1,
        checks_configured=True,
        checks_enabled=True,
        status={"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}[state],
        scur=3,
        qcur=0,
        check_status="L7OK",
    )
    return replace(info, **changes)


def params(**args: Any) -> dict[str, Any]:
    return {"backend": "app", "name": "web1", **args}


ADD = {"address": "10.0.0.9", "port": 8080}
ADD_LINE = "add server app/web1 10.0.0.9:8080 check"
GATED = "set server app/web1 state {0}; set server app/web1 health down"
HEALTH = "enable health app/web1"
MAINT, SHUT, DEL = (
    "set server app/web1 state maint",
    "shutdown sessions server app/web1",
    "del server app/web1",
)
ADDR = "set server app/web1 addr "

# (id, before, parameters, command lines, predicted state)
TRANSITIONS = [
    # absent -> present / ready / drain / maint
    ("add", None, ADD, [ADD_LINE, HEALTH, GATED.format("ready")], "ready"),
    ("add-ready", None, {**ADD, "state": "ready"}, [ADD_LINE, HEALTH, GATED.format("ready")], "ready"),
    ("add-drain", None, {**ADD, "state": "drain"}, [ADD_LINE, HEALTH, GATED.format("drain")], "drain"),
    ("add-maint", None, {**ADD, "state": "maint"}, [ADD_LINE, HEALTH], "maint"),
    ("add-no-gate", None, {**ADD, "health_gate": False},
     [ADD_LINE, HEALTH, "set server app/web1 state ready"], "ready"),
    ("add-no-check", None, {**ADD, "check": False},
     ["add server app/web1 10.0.0.9:8080", "set server app/web1 state ready"], "ready"),
    ("add-options", None, {**ADD, "inter": "2000", "rise": 2, "fall": 3, "slowstart": "30s", "weight": 50},
     ["add server app/web1 10.0.0.9:8080 check inter 2000 rise 2 fall 3 slowstart 30s weight 50",
      HEALTH, GATED.format("ready")], "ready"),
    ("add-hostname", None, {"address": "web1.example", "port": 80},
     ["add server app/web1 web1.example:80 check", HEALTH, GATED.format("ready")], "ready"),
    # present leaves an existing server's administrative state alone
    ("present-ready", server("ready"), {}, [], "ready"),
    ("present-maint", server("maint"), ADD | {"address": "10.0.0.1"}, [], "maint"),
    # ready / drain / maint
    ("ready-drain", server("ready"), {"state": "drain"}, ["set server app/web1 state drain"], "drain"),
    ("ready-maint", server("ready"), {"state": "maint"}, ["set server app/web1 state maint"], "maint"),
    ("drain-ready", server("drain"), {"state": "ready"}, ["set server app/web1 state ready"], "ready"),
    ("drain-maint", server("drain"), {"state": "maint"}, ["set server app/web1 state maint"], "maint"),
    ("maint-ready", server("maint"), {"state": "ready"}, [GATED.format("ready")], "ready"),
    ("maint-drain", server("maint"), {"state": "drain"}, [GATED.format("drain")], "drain"),
    ("same-ready", server("ready"), {"state": "ready"}, [], "ready"),
    ("same-drain", server("drain"), {"state": "drain"}, [], "drain"),
    ("same-maint", server("maint"), {"state": "maint"}, [], "maint"),
    # health gate: only a server with checks enabled that leaves MAINT, and only when asked
    ("maint-ready-no-gate", server("maint"), {"state": "ready", "health_gate": False},
     ["set server app/web1 state ready"], "ready"),
    ("maint-ready-no-checks", server("maint", checks_enabled=False), {"state": "ready"},
     ["set server app/web1 state ready"], "ready"),
    # weight and address
    ("weight", server("ready"), {"weight": 30}, ["set server app/web1 weight 30"], "ready"),
    ("weight-same", server("ready"), {"weight": 1}, [], "ready"),
    ("address", server("ready"), {"address": "10.0.0.2"}, [ADDR + "10.0.0.2 port 8080"], "ready"),
    ("port", server("ready"), {"port": 9090}, [ADDR + "10.0.0.1 port 9090"], "ready"),
    ("address-port", server("ready"), {"address": "10.0.0.2", "port": 9090},
     [ADDR + "10.0.0.2 port 9090"], "ready"),
    ("address-same", server("ready"), {"address": "10.0.0.1", "port": 8080}, [], "ready"),
    ("address-by-hostname", server("ready", fqdn="web1.example"), {"address": "web1.example"}, [], "ready"),
    ("ipv6-canonical", server("ready", address="fd00::1"), {"address": "fd00:0::1"}, [], "ready"),
    ("all-at-once", server("maint"), {"state": "drain", "weight": 5, "port": 81},
     [ADDR + "10.0.0.1 port 81", "set server app/web1 weight 5", GATED.format("drain")], "drain"),
    # present -> absent
    ("absent", server("ready"), {"state": "absent"}, [MAINT, DEL], "absent"),
    ("absent-from-maint", server("maint"), {"state": "absent"}, [DEL], "absent"),
    ("absent-force-drained", server("ready"), {"state": "absent", "force": True, "drain_timeout": 5},
     [MAINT, DEL], "absent"),
    ("absent-at-once", server("ready"), {"state": "absent", "force": True, "drain_timeout": 0},
     ["set server app/web1 state maint", SHUT, DEL], "absent"),
    ("absent-at-once-from-maint", server("maint"), {"state": "absent", "force": True, "drain_timeout": 0},
     [SHUT, DEL], "absent"),
    ("absent-timeout-0-without-force", server("ready"), {"state": "absent", "drain_timeout": 0},
     [MAINT, DEL], "absent"),
    ("absent-already", None, {"state": "absent"}, [], "absent"),
    ("absent-already-force", None, {"state": "absent", "force": True, "drain_timeout": 0}, [], "absent"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "args", "lines", "state"), [t[1:] for t in TRANSITIONS], ids=[t[0] for t in TRANSITIONS]
)
def test_transitions(before: ServerInfo | None, args: dict[str, Any], lines: list[str], state: str) -> None:
    plan = plan_server_change(before, params(**args))
    assert plan.lines == lines
    assert plan.changed == bool(lines)
    result = plan.result()
    assert result["commands"] == lines and result["changed"] == bool(lines)
    assert result["state"] == state
    assert result["before"] == (before.as_dict() if before else None)
    assert result["sessions"] == (before.scur if before else 0)
    assert (result["waited"], result["forced_sessions"], result["state_file_written"]) == (0.0, 0, False)
    assert (result["server"] is None) == (state == "absent")


REMOVALS = [
    (server("ready"), {"state": "absent"}, "drain"),
    (server("ready"), {"state": "absent", "force": True}, "drain"),
    (server("ready"), {"state": "absent", "force": True, "drain_timeout": 0}, "at_once"),
    (server("ready"), {"state": "absent", "drain_timeout": 0}, "drain"),
    (None, {"state": "absent", "force": True, "drain_timeout": 0}, "none"),
    (server("ready"), {"state": "maint"}, "none"),
]


@pytest.mark.parametrize(("before", "args", "removal"), REMOVALS)
def test_how_the_executor_removes(before: ServerInfo | None, args: dict[str, Any], removal: str) -> None:
    """drain: maint, wait for sessions (force: shut down what is left), del; at_once: no wait."""
    assert plan_server_change(before, params(**args)).removal == removal


def test_added_server_prediction_and_server_line() -> None:
    plan = plan_server_change(None, params(**ADD, weight=7, inter="2s"))
    assert plan.after == {
        "backend": "app",
        "name": "web1",
        "address": "10.0.0.9",
        "port": 8080,
        "state": "ready",
        "weight": 7,
        "checks_enabled": True,
    }
    result = plan.result()
    assert result["server_line"] == "server web1 10.0.0.9:8080 check inter 2s weight 7"
    assert plan_server_change(None, params(**ADD)).after["weight"] == 1  # type: ignore[index]
    # No server line without both address and port.
    assert "server_line" not in plan_server_change(server(), params(port=8080)).result()


def test_diff_before_and_after() -> None:
    plan = plan_server_change(server("maint"), params(state="ready", weight=4, address="10.0.0.2"))
    assert plan.result(diff=True)["diff"] == {
        "before": {"address": "10.0.0.1", "port": 8080, "state": "maint", "weight": 1},
        "after": {"address": "10.0.0.2", "port": 8080, "state": "ready", "weight": 4},
        "before_header": "app/web1",
        "after_header": "app/web1",
    }
    assert "diff" not in plan.result()
    # The server listed by address (not its hostname) shows its fqdn in neither; the predicted
    # server keeps every other key of the one read.
    assert set(plan.after or {}) == set(server().as_dict())
    added = plan_server_change(None, params(**ADD)).diff
    assert added["before"] == {} and added["after"] == {
        "address": "10.0.0.9", "port": 8080, "state": "ready", "weight": 1
    }  # fmt: skip
    removed = plan_server_change(server(), params(state="absent")).diff
    assert removed["before"]["state"] == "ready" and removed["after"] == {}
    unchanged = plan_server_change(server(), params(state="ready")).diff
    assert unchanged["before"] == unchanged["after"]


# (id, before, parameters, diff.before.address, diff.after.address): the diff shows the server as
# it was added - its hostname when it has one (fqdn or address, as haproxy_server always did).
DIFF_ADDRESSES = [
    ("by-address", server(), {}, "10.0.0.1", "10.0.0.1"),
    ("by-hostname", server(fqdn="web1.example"), {}, "web1.example", "10.0.0.1"),
    ("by-hostname-same-name-given", server(fqdn="web1.example"), {"address": "web1.example"},
     "web1.example", "10.0.0.1"),
    ("by-hostname-moved", server(fqdn="web1.example"), {"address": "10.0.0.7"}, "web1.example", "10.0.0.7"),
    ("by-hostname-removed", server(fqdn="web1.example"), {"state": "absent"}, "web1.example", None),
]


@pytest.mark.parametrize(("before", "args", "was", "becomes"), [r[1:] for r in DIFF_ADDRESSES],
                         ids=[r[0] for r in DIFF_ADDRESSES])
def test_diff_before_shows_the_fqdn_or_the_address(
    before: ServerInfo, args: dict[str, Any], was: str, becomes: str | None
) -> None:
    diff = plan_server_change(before, params(**args)).result(diff=True)["diff"]
    assert diff["before"]["address"] == was
    assert diff["after"].get("address") == becomes
    assert plan_server_change(before, params(**args)).result()["before"]["address"] == "10.0.0.1"  # raw


def _missing() -> HapoolError:
    with pytest.raises(HapoolError) as caught:
        plan_server_change(None, params(state="ready"))
    return caught.value


# (id, error, commands HAProxy accepted before it, the failed result's keys besides msg/error)
FAILURES = [
    ("missing-server", _missing(), None, {"backend": "app", "name": "web1"}),
    ("refused-first", CommandError("set server app/web1 state drain", "No such server."), [],
     {"backend": "app", "name": "web1", "changed": False, "commands": []}),
    ("drain-timeout", DrainTimeoutError("app", "web1", 2, 1, 5.0), [MAINT],
     {"backend": "app", "name": "web1", "changed": True, "commands": [MAINT], "sessions": 2, "queued": 1}),
]


@pytest.mark.parametrize(("error", "sent", "extra"), [r[1:] for r in FAILURES], ids=[r[0] for r in FAILURES])
def test_a_failed_run_names_the_server(
    error: HapoolError, sent: list[str] | None, extra: dict[str, Any]
) -> None:
    """haproxy_server fails with the server's backend and name (a missing server given without
    address or port included), what it sent and a drain timeout's open counts."""
    assert failure_result(WantedServer.from_params(params()), error, sent) == extra


def test_check_mode_reports_the_plan_and_touches_nothing() -> None:
    """Check mode returns the plan's result: the predicted state and server, the commands."""
    before = server("ready")
    result = plan_server_change(before, params(state="drain")).result(diff=True)
    assert result["state"] == "drain" and result["server"]["state"] == "drain"
    assert result["before"]["state"] == "ready"  # what was read is not rewritten
    assert before.admin == "ready"


def test_missing_server_without_address_or_port() -> None:
    for args in ({}, {"state": "ready"}, {"address": "10.0.0.9"}, {"port": 8080, "state": "maint"}):
        with pytest.raises(
            InvalidArgumentError, match="does not exist in backend 'app': give address and port"
        ):
            plan_server_change(None, params(**args))


BAD_NAMES = [
    "",
    "web1;del server app/web2",
    "web1 state maint",
    "web1\nset server app/web2 state maint",
    "app/web2",
    "w" * 129,
    "web\x00",
    "wéb1",
    "BACKEND",
    "FRONTEND",
    None,
    7,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_server_names(name: object) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_server_name(name)
    for before in (None, server()):
        with pytest.raises(InvalidArgumentError):
            plan_server_change(before, params(name=name, **ADD))


@pytest.mark.parametrize("backend", ["", "app;show info", "app web", "app/x", None])
def test_bad_backend_names(backend: object) -> None:
    with pytest.raises(InvalidArgumentError, match="backend name"):
        plan_server_change(server(), params(backend=backend))


def test_good_names() -> None:
    assert validate_server_name("web-1_a.b:c") == "web-1_a.b:c"
    assert plan_server_change(None, params(name="w" * 128, **ADD)).changed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"state": "up"}, "state must be one of"),
        ({"address": "10.0.0.1;show info"}, "invalid address"),
        ({"address": "10.0.0.1 port 1"}, "invalid address"),
        ({"port": 0}, "port must be"),
        ({"port": 70000}, "port must be"),
        ({**ADD, "inter": "2s;show info"}, "inter"),
        ({**ADD, "rise": 0}, "rise"),
        ({**ADD, "check": False, "inter": "2s"}, "check settings"),
        ({**ADD, "weight": 257}, "weight"),
        ({"drain_timeout": -1}, "drain_timeout must be a positive number"),
        ({"drain_timeout": None}, "drain_timeout must be a positive number"),
        ({"poll_interval": 0}, "poll_interval must be a positive number"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_invalid_parameters(args: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        WantedServer.from_params(params(**args))


def test_weight_out_of_range_on_an_existing_server() -> None:
    with pytest.raises(InvalidArgumentError, match="weight"):
        plan_server_change(server(), params(weight=300))


def test_set_addr_takes_ip_addresses_only() -> None:
    with pytest.raises(InvalidArgumentError, match="IP address"):
        plan_server_change(server(), params(address="localhost"))


def test_times_as_digit_strings_are_milliseconds() -> None:
    wanted = WantedServer.from_params(params(**ADD, inter="2000", slowstart="0"))
    assert (wanted.options.inter, wanted.options.slowstart) == (2000, 0)


def test_defaults_are_the_modules() -> None:
    wanted = WantedServer.from_params(params())
    for key in ("state", "health_gate", "wait", "drain_timeout", "force", "poll_interval"):
        assert getattr(wanted, key) == SERVER_ARGUMENT_SPEC[key]["default"], key
    assert wanted.options.check is True and wanted.options.backup is False


def test_a_wanted_server_is_planned_like_its_parameters() -> None:
    wanted = WantedServer.from_params(params(state="maint"))
    assert plan_server_change(server(), wanted) == plan_server_change(server(), params(state="maint"))


HEALTH_GATE = [
    # before, after, checks, health_gate, gated
    ("maint", "ready", True, True, True),
    ("maint", "drain", True, True, True),
    ("maint", "maint", True, True, False),
    ("ready", "drain", True, True, False),
    ("drain", "ready", True, True, False),
    ("maint", "ready", False, True, False),
    ("maint", "ready", True, False, False),
]


@pytest.mark.parametrize(("before", "after", "checks", "gate", "gated"), HEALTH_GATE)
def test_health_gate(before: str, after: str, checks: bool, gate: bool, gated: bool) -> None:
    assert needs_health_gate(before, after, checks=checks, health_gate=gate) is gated
    texts = [c.text for c in state_commands("app", "web1", after, health_gate=gated)]
    assert texts == [
        f"set server app/web1 state {after}",
        *(["set server app/web1 health down"] if gated else []),
    ]


def test_invalid_parameters_are_hapool_errors() -> None:
    """What the module's run_module turns into fail_json."""
    with pytest.raises(HapoolError):
        plan_server_change(None, params(name="web1;x"))


# --------------------------------------------------------------------------------------------
# execute_plan
# --------------------------------------------------------------------------------------------


class FakeRuntime(RuntimeClient):
    """Stands in for HAProxy's runtime API so that the executor's ordering and splicing can be
    tested without a process; the integration tests (tests/integration/test_haproxy_modules.py)
    cover the real socket.

    One server, ``app/web1``: ``admin`` is its administrative state (``set server ... state``
    changes it), ``scur`` / ``qcur`` its current sessions and queued requests, open until the
    fake clock reaches ``ends_at`` (``None``: they never end by themselves) or a ``shutdown
    sessions server`` closes them. ``refuse`` scripts HAProxy's refusals: the error (one of
    errors.py's) a command line gets instead of being applied. Every line sent is recorded in
    ``log`` with the fake time it was sent at. The client's own waits (``wait_drained``,
    ``remove_server``, ``take_out``) run unchanged, on the fake clock: nothing sleeps, and
    nothing reaches a socket.
    """

    def __init__(
        self,
        admin: str = "ready",
        *,
        scur: int = 3,
        qcur: int = 0,
        ends_at: float | None = 0.0,
        refuse: dict[str, HapoolError] | None = None,
    ) -> None:
        super().__init__("/nonexistent/hapool-fake.sock")
        self.admin, self.scur, self.qcur, self.ends_at = admin, scur, qcur, ends_at
        self.refuse = dict(refuse or {})
        self.log: list[tuple[float, str]] = []
        self.now = 0.0

    @property
    def lines(self) -> list[str]:
        """The command lines HAProxy got, in order (refused ones included)."""
        return [line for _, line in self.log]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def _send(self, line: str) -> str:
        raise AssertionError(f"the fake runtime was asked to send {line!r} to a socket")

    def execute(self, *commands: Command) -> str:
        line = "; ".join(command.text for command in commands)
        self.log.append((self.now, line))
        if line in self.refuse:
            raise self.refuse[line]
        for command in commands:
            if command.text.startswith("set server app/web1 state "):
                self.admin = command.text.rsplit(" ", 1)[1]
            elif command.text == SHUT:
                self.ends_at = self.now
        return ""

    def server_state(self, backend: str, server_name: str) -> ServerInfo:
        assert (backend, server_name) == ("app", "web1")
        return server(self.admin)

    def sessions(self, backend: str, server_name: str) -> tuple[int, int]:
        assert (backend, server_name) == ("app", "web1")
        if self.ends_at is not None and self.now >= self.ends_at:
            return 0, 0
        return self.scur, self.qcur

    def wait_drained(self, backend: str, server: str, timeout: float, *, interval: float = 0.2,
                     **_: object) -> float:
        return super().wait_drained(backend, server, timeout, interval=interval, clock=self.clock,
                                    sleep=self.sleep)

    def remove_server(self, backend: str, server: str, timeout: float, *, interval: float = 0.2,
                      **_: object) -> float:
        return super().remove_server(backend, server, timeout, interval=interval, clock=self.clock,
                                     sleep=self.sleep)

    def take_out(self, backend: str, server: str, timeout: float, *, interval: float = 0.2,
                 sent: list[str] | None = None, **_: object) -> TakeOut:
        return super().take_out(backend, server, timeout, interval=interval, clock=self.clock,
                                sleep=self.sleep, sent=sent)


def execute(
    before: ServerInfo | None, args: dict[str, Any], **script: Any
) -> tuple[FakeRuntime, Outcome, list[str]]:
    """Plan and run: the runtime, the outcome and the lines the executor reported as sent."""
    plan = plan_server_change(before, params(**args))
    runtime = FakeRuntime(before.admin if before else "maint", **script)  # HAProxy adds in MAINT
    sent: list[str] = []
    outcome = execute_plan(runtime, plan, sent=sent, clock=runtime.clock)
    return runtime, outcome, sent


WEIGHT5 = "set server app/web1 weight 5"
DRAIN = "set server app/web1 state drain"
WAIT = {"wait": True, "poll_interval": 0.5}  # 0.5: the fake clock adds up exactly

# (id, before, parameters, script of the runtime, lines sent in order, seconds waited)
EXECUTED_STEPS = [
    ("add", None, ADD, {}, [ADD_LINE, HEALTH, GATED.format("ready")], 0.0),
    ("add-maint", None, {**ADD, "state": "maint"}, {}, [ADD_LINE, HEALTH], 0.0),
    ("add-no-check", None, {**ADD, "check": False}, {},
     ["add server app/web1 10.0.0.9:8080", "set server app/web1 state ready"], 0.0),
    ("addr-weight-state", server("maint"), {"state": "drain", "weight": 5, "port": 81}, {},
     [ADDR + "10.0.0.1 port 81", WEIGHT5, GATED.format("drain")], 0.0),
    ("addr-weight", server("ready"), {"address": "10.0.0.2", "weight": 5}, {},
     [ADDR + "10.0.0.2 port 8080", WEIGHT5], 0.0),
    ("ready-maint", server("ready"), {"state": "maint"}, {}, [MAINT], 0.0),
    ("nothing-to-do", server("ready"), {"state": "ready"}, {"ends_at": None}, [], 0.0),
    # wait: after the steps, until the sessions end (drain and maint only)
    ("drain-wait", server("ready"), {"state": "drain", **WAIT}, {"ends_at": 1.5}, [DRAIN], 1.5),
    ("maint-wait-drained-already", server("ready"), {"state": "maint", **WAIT}, {}, [MAINT], 0.0),
    ("maint-wait-unchanged", server("maint"), {"state": "maint", **WAIT}, {"ends_at": 2.0}, [], 2.0),
    ("ready-wait-ignored", server("drain"), {"state": "ready", **WAIT}, {"ends_at": None},
     ["set server app/web1 state ready"], 0.0),
    ("drain-no-wait", server("ready"), {"state": "drain"}, {"ends_at": None}, [DRAIN], 0.0),
]  # fmt: skip


@pytest.mark.parametrize(("before", "args", "script", "lines", "waited"), [r[1:] for r in EXECUTED_STEPS],
                         ids=[r[0] for r in EXECUTED_STEPS])
def test_execute_sends_the_steps_in_order(
    before: ServerInfo | None, args: dict[str, Any], script: dict[str, Any], lines: list[str], waited: float
) -> None:
    """Each step is one line, sent in the plan's order, and reported sent once accepted."""
    runtime, outcome, sent = execute(before, args, **script)
    assert runtime.lines == lines
    assert sent == lines
    assert outcome == Outcome(lines, waited, 0)
    assert runtime.now == waited  # no wait but the one asked for


# (id, before, parameters, script, outcome: the lines sent = the result's commands, seconds waited,
#  sessions forced)
REMOVED = [
    ("drain", server("ready"), {"state": "absent", "poll_interval": 0.5}, {"ends_at": 2.0},
     Outcome([MAINT, DEL], 2.0, 0)),
    ("drain-from-maint", server("maint"), {"state": "absent", "poll_interval": 0.5}, {"ends_at": 1.0},
     Outcome([DEL], 1.0, 0)),
    ("drain-nothing-open", server("ready"), {"state": "absent"}, {}, Outcome([MAINT, DEL], 0.0, 0)),
    ("force-drained-in-time", server("ready"),
     {"state": "absent", "force": True, "drain_timeout": 5, "poll_interval": 0.5}, {"ends_at": 2.0},
     Outcome([MAINT, DEL], 2.0, 0)),
    # force: the deregistration delay runs out, shutdown sessions is spliced in before del
    ("force-splice", server("ready"),
     {"state": "absent", "force": True, "drain_timeout": 3, "poll_interval": 0.5},
     {"ends_at": None, "scur": 4}, Outcome([MAINT, SHUT, DEL], 3.0, 4)),
    ("force-splice-from-maint", server("maint"),
     {"state": "absent", "force": True, "drain_timeout": 3, "poll_interval": 0.5},
     {"ends_at": None, "scur": 4}, Outcome([SHUT, DEL], 3.0, 4)),
    # drain_timeout=0 with force: taken out at once, the sessions open then are the forced ones
    ("at-once", server("ready"), {"state": "absent", "force": True, "drain_timeout": 0},
     {"ends_at": None, "scur": 4}, Outcome([MAINT, SHUT, DEL], 0.0, 4)),
    ("at-once-from-maint", server("maint"), {"state": "absent", "force": True, "drain_timeout": 0},
     {"ends_at": None, "scur": 4}, Outcome([SHUT, DEL], 0.0, 4)),
]  # fmt: skip


@pytest.mark.parametrize(("before", "args", "script", "expected"), [r[1:] for r in REMOVED],
                         ids=[r[0] for r in REMOVED])
def test_execute_removes_the_server(
    before: ServerInfo, args: dict[str, Any], script: dict[str, Any], expected: Outcome
) -> None:
    """maint (unless already), the wait, del; with force, shutdown sessions when the wait runs
    out, listed where it was sent: between the plan's maint and del."""
    runtime, outcome, sent = execute(before, args, **script)
    assert runtime.lines == expected.commands
    assert sent == expected.commands
    assert outcome == expected
    assert runtime.now == expected.waited


def test_the_forced_drain_shuts_the_sessions_down_when_drain_timeout_runs_out() -> None:
    """Nothing is shut down before the timeout; del follows the shutdown at once; the module's
    result (the plan's, updated with the outcome's as haproxy_server does) lists the splice,
    where check mode listed the plan."""
    args = {"state": "absent", "force": True, "drain_timeout": 3, "poll_interval": 0.5}
    plan = plan_server_change(server("ready"), params(**args))
    runtime = FakeRuntime("ready", scur=4, qcur=1, ends_at=None)
    outcome = execute_plan(runtime, plan, clock=runtime.clock)
    assert runtime.log == [(0.0, MAINT), (3.0, SHUT), (3.0, DEL)]
    checked = plan.result()
    assert (checked["commands"], checked["waited"], checked["forced_sessions"]) == ([MAINT, DEL], 0.0, 0)
    result = {**plan.result(), **outcome.result()}
    assert (result["changed"], result["state"], result["server"]) == (True, "absent", None)
    assert (result["commands"], result["waited"], result["forced_sessions"]) == ([MAINT, SHUT, DEL], 3.0, 4)
    assert plan.lines == [MAINT, DEL]  # the plan is left as it was


def test_the_forced_drain_that_ends_in_time_shuts_nothing_down() -> None:
    plan = plan_server_change(server("ready"), params(state="absent", force=True, drain_timeout=3,
                                                      poll_interval=0.5))
    runtime = FakeRuntime("ready", ends_at=2.5)
    assert execute_plan(runtime, plan, clock=runtime.clock).result() == {
        "commands": [MAINT, DEL], "waited": 2.5, "forced_sessions": 0}
    assert runtime.log == [(0.0, MAINT), (2.5, DEL)]


def test_the_take_out_at_once_has_a_grace_of_its_own() -> None:
    """drain_timeout=0: no wait for the sessions, then up to FORCE_GRACE for HAProxy to close them."""
    plan = plan_server_change(server("ready"), params(state="absent", force=True, drain_timeout=0,
                                                      poll_interval=0.5))
    runtime = FakeRuntime("ready", scur=2, ends_at=None)
    runtime.refuse[DEL] = CommandError(DEL, "Server still has connections attached to it, cannot remove it.")
    with pytest.raises(CommandError, match="still has connections"):
        execute_plan(runtime, plan, clock=runtime.clock)
    assert runtime.now == FORCE_GRACE  # retried for the grace, not for drain_timeout (0)
    assert runtime.lines[:3] == [MAINT, SHUT, DEL]


def test_execute_without_a_sent_list_returns_the_same_outcome() -> None:
    plan = plan_server_change(None, params(**ADD))
    runtime = FakeRuntime("maint")
    assert execute_plan(runtime, plan) == Outcome([ADD_LINE, HEALTH, GATED.format("ready")])
    assert runtime.lines == plan.lines


NO_SERVER = UnknownServerError("'del server app/web1': No such server.")
ALL_AT_ONCE = {"state": "drain", "weight": 5, "port": 81}
ABSENT_2S = {"state": "absent", "drain_timeout": 2, "poll_interval": 0.5}

# (id, before, parameters, script, error raised, the failed result's keys besides msg, error,
#  backend and name: whether it changed anything, the lines HAProxy accepted, a drain timeout's
#  open sessions and queued requests)
FAILED_RUNS = [
    ("first-step-refused", server("ready"), {"state": "drain"},
     {"refuse": {DRAIN: NotAdminError(f"{DRAIN!r}: Permission denied")}}, NotAdminError,
     {"changed": False, "commands": []}),
    ("add-then-health-refused", None, ADD,
     {"refuse": {HEALTH: UnknownServerError(f"{HEALTH!r}: No such server.")}}, UnknownServerError,
     {"changed": True, "commands": [ADD_LINE]}),
    ("third-step-refused", server("maint"), ALL_AT_ONCE,
     {"refuse": {GATED.format("drain"): CommandError(GATED.format("drain"), "Invalid state.")}},
     CommandError, {"changed": True, "commands": [ADDR + "10.0.0.1 port 81", WEIGHT5]}),
    ("wait-times-out", server("ready"), {"state": "drain", **WAIT, "drain_timeout": 2},
     {"ends_at": None, "scur": 3, "qcur": 1}, DrainTimeoutError,
     {"changed": True, "commands": [DRAIN], "sessions": 3, "queued": 1}),
    ("drain-times-out", server("ready"), ABSENT_2S, {"ends_at": None, "scur": 2}, DrainTimeoutError,
     {"changed": True, "commands": [MAINT], "sessions": 2, "queued": 0}),
    ("del-refused", server("ready"), ABSENT_2S, {"refuse": {DEL: NO_SERVER}}, UnknownServerError,
     {"changed": True, "commands": [MAINT]}),
    ("maint-refused", server("ready"), ABSENT_2S,
     {"refuse": {MAINT: NotAdminError(f"{MAINT!r}: Permission denied")}}, NotAdminError,
     {"changed": False, "commands": []}),
    ("force-shutdown-refused", server("ready"), {**ABSENT_2S, "force": True},
     {"ends_at": None, "refuse": {SHUT: CommandError(SHUT, "Unknown command.")}}, CommandError,
     {"changed": True, "commands": [MAINT]}),
    ("force-del-refused", server("ready"), {**ABSENT_2S, "force": True},
     {"ends_at": None, "refuse": {DEL: NO_SERVER}}, UnknownServerError,
     {"changed": True, "commands": [MAINT, SHUT]}),
    ("at-once-del-refused", server("ready"), {"state": "absent", "force": True, "drain_timeout": 0},
     {"ends_at": None, "refuse": {DEL: NO_SERVER}}, UnknownServerError,
     {"changed": True, "commands": [MAINT, SHUT]}),
    ("at-once-shutdown-refused", server("ready"), {"state": "absent", "force": True, "drain_timeout": 0},
     {"ends_at": None, "refuse": {SHUT: CommandError(SHUT, "Unknown command.")}}, CommandError,
     {"changed": True, "commands": [MAINT]}),
]  # fmt: skip


@pytest.mark.parametrize(("before", "args", "script", "error", "report"), [r[1:] for r in FAILED_RUNS],
                         ids=[r[0] for r in FAILED_RUNS])
def test_a_refusal_mid_plan_stops_and_reports_what_was_sent(
    before: ServerInfo | None,
    args: dict[str, Any],
    script: dict[str, Any],
    error: type[HapoolError],
    report: dict[str, Any],
) -> None:
    """Nothing is sent after the refused line; ``sent`` holds the lines HAProxy accepted, and the
    module's failed result (failure_result) reports them, with a drain timeout's open counts."""
    plan = plan_server_change(before, params(**args))
    runtime = FakeRuntime(before.admin if before else "maint", **script)
    sent: list[str] = []
    with pytest.raises(error) as caught:
        execute_plan(runtime, plan, sent=sent, clock=runtime.clock)
    assert sent == report["commands"]
    assert runtime.lines == [*sent, *script.get("refuse", {})]  # the refused line is the last one
    assert failure_result(plan.wanted, caught.value, sent) == {"backend": "app", "name": "web1", **report}
