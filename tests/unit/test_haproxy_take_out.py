"""Taking a server out at once (a server HAProxy holds DOWN): the commands planned and their
order, driven by a scripted runtime (no HAProxy). The real HAProxy, with a hung nginx behind
the server, is in tests/integration/test_take_out_hung.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from ansible.module_utils.hapool.errors import CommandError, DrainTimeoutError, InvalidArgumentError
from ansible.module_utils.hapool.haproxy import Command, RuntimeClient, removal_commands


def texts(commands: list[Command]) -> list[str]:
    return [c.text for c in commands]


def test_drained_removal_is_maint_then_del() -> None:
    assert texts(removal_commands("app", "web1")) == [
        "set server app/web1 state maint",
        "del server app/web1",
    ]
    assert texts(removal_commands("app", "web1", in_maint=True)) == ["del server app/web1"]


def test_removal_at_once_shuts_the_sessions_down_between_maint_and_del() -> None:
    assert texts(removal_commands("app", "web1", at_once=True)) == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]
    assert texts(removal_commands("app", "web1", in_maint=True, at_once=True)) == [
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]


@pytest.mark.parametrize("server", ["web1;del server app/web2", "web 1", "web1\nshow stat", ""])
def test_removal_refuses_hostile_names(server: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"server name|invalid"):
        removal_commands("app", server, at_once=True)


@dataclass
class FakeRuntime(RuntimeClient):
    """One server ``app/web1`` behind a scripted runtime: ``sessions`` is what ``show stat``
    reports until a ``shutdown sessions`` (then ``after_shutdown``, one value per look),
    ``refusals`` how many ``del server`` are refused for idle connections."""

    admin: str = "ready"
    scur: int = 8
    after_shutdown: list[int] = field(default_factory=lambda: [0])
    refusals: int = 0
    sent: list[str] = field(default_factory=list)
    now: float = 0.0

    def __post_init__(self) -> None:
        super().__init__("/nonexistent.sock")
        self.shut = False

    def server_state(self, backend: str, server: str):  # type: ignore[override]
        assert (backend, server) == ("app", "web1")
        return SimpleNamespace(admin=self.admin)

    def sessions(self, backend: str, server: str) -> tuple[int, int]:
        if self.shut and self.after_shutdown:
            self.scur = self.after_shutdown.pop(0) if len(self.after_shutdown) > 1 else self.after_shutdown[0]
        return self.scur, 0

    def execute(self, *commands: Command) -> str:
        line = "; ".join(c.text for c in commands)
        self.sent.append(line)
        for command in commands:
            if command.text.endswith("state maint"):
                self.admin = "maint"
            elif command.text.startswith("shutdown sessions"):
                self.shut = True
            elif command.text.startswith("del server") and self.refusals:
                self.refusals -= 1
                raise CommandError(line, "Server still has connections attached to it, cannot remove it.")
        return ""

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_take_out_sends_maint_shutdown_del_without_waiting_for_a_drain() -> None:
    runtime = FakeRuntime(scur=8)
    sent: list[str] = []
    took = runtime.take_out("app", "web1", 10, clock=runtime.clock, sleep=runtime.sleep, sent=sent)
    assert runtime.sent == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]
    assert sent == runtime.sent
    assert took.sessions == 8  # what was open when they were shut down
    assert took.seconds == 0  # no wait: HAProxy let go of them at once


def test_take_out_of_a_server_in_maint_skips_maint_and_waits_for_haproxy_to_close_the_sessions() -> None:
    runtime = FakeRuntime(admin="maint", scur=3, after_shutdown=[2, 0])
    took = runtime.take_out("app", "web1", 10, interval=0.2, clock=runtime.clock, sleep=runtime.sleep)
    assert runtime.sent == ["shutdown sessions server app/web1", "del server app/web1"]
    assert took.sessions == 3 and took.seconds == pytest.approx(0.2)


def test_take_out_retries_del_while_idle_connections_remain() -> None:
    runtime = FakeRuntime(scur=1, refusals=1)
    runtime.take_out("app", "web1", 10, clock=runtime.clock, sleep=runtime.sleep)
    assert runtime.sent == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",  # refused: idle connections
        "set server app/web1 state drain; set server app/web1 state maint",
        "del server app/web1",
    ]


def test_take_out_fails_with_the_open_count_when_haproxy_keeps_the_sessions() -> None:
    runtime = FakeRuntime(scur=4, after_shutdown=[4])
    sent: list[str] = []
    with pytest.raises(DrainTimeoutError) as info:
        runtime.take_out("app", "web1", 2.0, clock=runtime.clock, sleep=runtime.sleep, sent=sent)
    assert info.value.sessions == 4
    assert sent == ["set server app/web1 state maint", "shutdown sessions server app/web1"]  # no del
    assert runtime.now == pytest.approx(2.0)
