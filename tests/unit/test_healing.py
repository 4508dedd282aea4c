"""The healer's decision (plan_heal), its event log and its lease lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
from dataclasses import dataclass

import pytest
from ansible.module_utils.hapool.actions import (
    BACKOFF_SKIP,
    CIRCUIT_OPEN,
    REGISTER,
    REMOVE_SERVER,
    REPLACE,
    REPLACE_FAILED,
    REPLACE_LAUNCH,
)
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.events import (
    append_event,
    append_events,
    make_event,
    parse_events,
    read_events,
)
from ansible.module_utils.hapool.healing import (
    CAPPED,
    KEEP,
    WAIT,
    HealSettings,
    backoff_delay,
    early_failures,
    failed_attempts,
    plan_heal,
)
from ansible.module_utils.hapool.lock import acquire, release
from ansible.module_utils.hapool.providers import Instance
from ansible.module_utils.hapool.stats import normalize_status
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 10_000.0


@dataclass(frozen=True)
class Row:
    server: str
    status: str
    lastchg: int | None = 5

    @property
    def status_class(self) -> str:
        return normalize_status(self.status)


def inst(name: str, age: float = 600.0, state: str = "running") -> Instance:
    return Instance(name=name, pool="web", provider="local", address="127.0.0.1", port=80,
                    created=NOW - age, state=state)


def pool(**over: object) -> dict[str, object]:
    return {"name": "web", "provider": "local", **over}


def actions(plan_obj: object) -> dict[str, str]:
    return {d.name: d.action for d in plan_obj.decisions}  # type: ignore[attr-defined]


# --- tables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "age", "expected"),
    [
        ("UP", 600, KEEP),
        ("UP 1/3", 600, KEEP),
        ("DOWN", 600, REPLACE),
        ("DOWN 1/2", 600, REPLACE),
        ("DOWN", 10, WAIT),  # in its grace period
        ("MAINT", 600, KEEP),
        ("MAINT (via web/x)", 600, KEEP),
        ("DRAIN", 600, KEEP),
        ("NOLB", 600, KEEP),
        ("no check", 600, KEEP),
    ],
)
def test_one_failed_host_among_healthy_ones(status: str, age: float, expected: str) -> None:
    servers = [Row("web-a", status), Row("web-b", "UP"), Row("web-c", "UP")]
    instances = [inst("web-a", age), inst("web-b"), inst("web-c")]
    plan = plan_heal(pool(), servers, instances, [], NOW)
    assert actions(plan)["web-a"] == expected
    assert actions(plan)["web-b"] == KEEP
    assert plan.circuit_open is False


def test_dead_instance_is_replaced_before_haproxy_notices() -> None:
    plan = plan_heal(pool(), [Row("web-a", "UP"), Row("web-b", "UP")],
                     [inst("web-a", state="stopped"), inst("web-b")], [], NOW)
    assert plan.replace == ["web-a"]
    assert "stopped" in plan.decisions[0].reason


def test_dead_young_instance_is_replaced_too() -> None:
    plan = plan_heal(pool(), [Row("web-a", "UP"), Row("web-b", "UP")],
                     [inst("web-a", age=1, state="stopped"), inst("web-b")], [], NOW)
    assert plan.replace == ["web-a"]


def test_orphans_both_ways() -> None:
    servers = [Row("web-a", "UP"), Row("gone", "DOWN"), Row("static1", "UP")]
    instances = [inst("web-a"), inst("web-new", age=3), inst("web-dead", state="stopped")]
    plan = plan_heal(pool(servers=[{"name": "static1", "address": "10.0.0.1"}]), servers, instances, [], NOW)
    got = actions(plan)
    assert got["web-new"] == REGISTER
    assert got["gone"] == REMOVE_SERVER
    assert got["static1"] == KEEP
    assert got["web-dead"] == REPLACE
    assert plan.register == ["web-new"] and plan.remove_servers == ["gone"]


def test_hosts_a_scale_in_is_removing_are_left_alone() -> None:
    # Drained and deleted from the balancer, then the run died before destroying it: the
    # healer must not register it back, nor replace it when it is dead.
    servers = [Row("web-b", "UP"), Row("web-c", "DRAIN")]
    instances = [inst("web-a"), inst("web-b"), inst("web-c", state="stopped")]
    plan = plan_heal(pool(), servers, instances, [], NOW, leaving={"web-a", "web-c"})
    assert actions(plan) == {"web-a": KEEP, "web-b": KEEP, "web-c": KEEP}
    assert not plan.changes and "scale-in" in plan.decisions[0].reason


def test_max_replace_per_run_takes_the_longest_down_first() -> None:
    servers = [Row(f"web-{c}", "DOWN", lastchg=n) for n, c in enumerate("abc")] + [
        Row(f"web-{c}", "UP") for c in "defghij"
    ]
    instances = [inst(s.server) for s in servers]
    plan = plan_heal(pool(max_replace_per_run=2), servers, instances, [], NOW)
    assert plan.replace == ["web-b", "web-c"]
    assert actions(plan)["web-a"] == CAPPED


@pytest.mark.parametrize(
    ("down", "total", "threshold", "is_open"),
    [(1, 1, 0.5, True), (2, 2, 1.0, True), (1, 2, 0.5, False), (2, 3, 0.5, True), (2, 3, 0.7, False),
     (3, 3, 1.0, True), (0, 3, 0.0, False), (1, 4, 0.2, True)],
)
def test_circuit_breaker(down: int, total: int, threshold: float, is_open: bool) -> None:
    servers = [Row(f"web-{i}", "DOWN" if i < down else "UP") for i in range(total)]
    instances = [inst(s.server) for s in servers]
    plan = plan_heal(pool(circuit_threshold=threshold), servers, instances, [], NOW)
    assert plan.circuit_open is is_open
    if is_open:
        assert plan.replace == []
        tripped = sorted(n for n, a in actions(plan).items() if a == CIRCUIT_OPEN)
        assert tripped == [f"web-{i}" for i in range(down)]
        assert plan.circuit_reason


# --- the breaker counts live hosts; dead hosts are always replaced; max holds ---------------------


def test_every_host_dead_is_a_total_loss_not_a_partition() -> None:
    servers = [Row(f"web-{c}", "DOWN") for c in "abcd"]
    instances = [inst(s.server, state="stopped") for s in servers]
    plan = plan_heal(pool(max=6), servers, instances, [], NOW)
    assert not plan.circuit_open
    assert sorted(plan.replace) == ["web-a", "web-b", "web-c", "web-d"]
    assert all(d.dead and not d.destroy_first for d in plan.decisions)


def test_two_of_three_dead_are_replaced_in_one_run() -> None:
    servers = [Row("web-a", "DOWN"), Row("web-b", "DOWN"), Row("web-c", "UP")]
    instances = [inst("web-a", state="stopped"), inst("web-b", state="stopped"), inst("web-c")]
    plan = plan_heal(pool(max=6), servers, instances, [], NOW)
    assert not plan.circuit_open and sorted(plan.replace) == ["web-a", "web-b"]


def test_breaker_still_stops_when_every_live_host_is_down_but_dead_ones_are_replaced() -> None:
    servers = [Row("web-a", "DOWN"), Row("web-b", "DOWN"), Row("web-c", "DOWN")]
    instances = [inst("web-a"), inst("web-b"), inst("web-c", state="stopped")]
    plan = plan_heal(pool(max=6, max_replace_per_run=3), servers, instances, [], NOW)
    assert plan.circuit_open and "all 2 live server(s)" in plan.circuit_reason
    assert plan.replace == ["web-c"]
    assert actions(plan) == {"web-a": CIRCUIT_OPEN, "web-b": CIRCUIT_OPEN, "web-c": REPLACE}


def test_dead_hosts_have_their_own_cap() -> None:
    instances = [inst(f"web-{c}", state="stopped") for c in "abcd"]
    plan = plan_heal(pool(max_replace_dead_per_run=3), [], instances, [], NOW)
    assert plan.replace == ["web-a", "web-b", "web-c"] and actions(plan)["web-d"] == CAPPED


def test_a_live_down_host_at_max_is_destroyed_before_its_replacement_is_launched() -> None:
    servers = [Row("web-a", "DOWN"), Row("web-b", "UP"), Row("web-c", "UP")]
    instances = [inst("web-a"), inst("web-b"), inst("web-c")]
    at_max = plan_heal(pool(max=3), servers, instances, [], NOW)
    below = plan_heal(pool(max=4), servers, instances, [], NOW)
    assert at_max.replace == below.replace == ["web-a"]
    assert at_max.decisions[0].destroy_first and not below.decisions[0].destroy_first


def test_a_dead_host_that_cannot_be_replaced_under_max_is_cleaned() -> None:
    # max lowered below the pool's size: 3 live hosts, max 3, one dead instance
    instances = [inst("web-a"), inst("web-b"), inst("web-c"), inst("web-d", state="stopped")]
    servers = [Row(n, "UP") for n in ("web-a", "web-b", "web-c")]
    plan = plan_heal(pool(max=3), servers, instances, [], NOW)
    assert plan.replace == [] and plan.clean == ["web-d"] and plan.changes


def test_a_host_left_in_maint_beside_its_live_replacement_is_finished_off() -> None:
    # A run took web-a out (MAINT) after launching web-n, then failed before destroying web-a.
    history = [{"time": NOW - 60, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-a",
                "replacement": "web-n", "age": 600}]
    servers = [Row("web-a", "MAINT"), Row("web-b", "UP")]
    instances = [inst("web-a"), inst("web-b"), inst("web-n", age=50)]
    plan = plan_heal(pool(max=3), servers, instances, history, NOW)
    got = {d.name: d for d in plan.decisions}
    assert got["web-a"].action == REPLACE and got["web-a"].adopt and got["web-a"].replacement == "web-n"
    assert got["web-n"].action == REGISTER


def test_an_adopted_replacement_says_whether_the_fast_path_promoted_it() -> None:
    # The watcher's fast path took the warm host web-w into service for web-a (promote: true in
    # its replace_launch event); web-n was launched for web-c. Neither is promoted again.
    history = [{"time": NOW - 5, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-a",
                "replacement": "web-w", "age": 600, "promote": True, "by": "watcher"},
               {"time": NOW - 5, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-c",
                "replacement": "web-n", "age": 600, "by": "watcher"}]
    servers = [Row("web-a", "DOWN"), Row("web-b", "UP"), Row("web-c", "DOWN"), Row("web-w", "UP"),
               Row("web-n", "UP")]
    instances = [inst("web-a", state="stopped"), inst("web-b"), inst("web-c", state="stopped"),
                 inst("web-w", age=50), inst("web-n", age=4)]
    plan = plan_heal(pool(max=5, circuit_threshold=0.0), servers, instances, history, NOW)
    got = {d.name: d for d in plan.decisions}
    assert got["web-a"].adopt and got["web-a"].promoted and not got["web-a"].promote
    assert got["web-c"].adopt and not got["web-c"].promoted and not got["web-c"].promote
    assert got["web-a"].as_dict()["promoted"] is True


def test_a_host_that_came_back_up_beside_its_live_replacement_is_finished_off() -> None:
    history = [{"time": NOW - 60, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-a",
                "replacement": "web-n", "age": 600}]
    servers = [Row("web-a", "UP"), Row("web-b", "UP"), Row("web-n", "UP")]
    instances = [inst("web-a"), inst("web-b"), inst("web-n", age=50)]
    plan = plan_heal(pool(max=3, circuit_threshold=0.0), servers, instances, history, NOW)
    assert plan.replace == ["web-a"] and plan.decisions[0].adopt


def test_an_adopted_replacement_frees_its_place_before_a_dead_host_is_judged_against_max() -> None:
    # max 3: web-a (DOWN) has a live successor web-n from a killed run; web-0 is dead. Adopting
    # first takes web-a off the live count, so web-0 is replaced, not cleaned.
    history = [{"time": NOW - 60, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-a",
                "replacement": "web-n", "age": 600}]
    servers = [Row("web-0", "DOWN"), Row("web-a", "DOWN"), Row("web-b", "UP")]
    instances = [inst("web-0", state="stopped"), inst("web-a"), inst("web-b"), inst("web-n", age=50)]
    plan = plan_heal(pool(max=3), servers, instances, history, NOW)
    assert sorted(plan.replace) == ["web-0", "web-a"] and plan.clean == []


def test_settings_from_pool_and_heal_dict() -> None:
    s = HealSettings.from_pool({"name": "web", "grace_period": 5, "heal": {"grace_period": 7, "backoff": 2}})
    assert (s.grace_period, s.backoff, s.max_replace_per_run) == (7, 2, 1)
    with pytest.raises(InvalidArgumentError):
        HealSettings.from_pool({"name": "web", "circuit_threshold": 2})
    with pytest.raises(InvalidArgumentError):
        HealSettings.from_pool({"name": "web", "grace_period": "soon"})
    with pytest.raises(InvalidArgumentError):
        plan_heal({}, [], [], [], NOW)


# --- backoff -------------------------------------------------------------------------------------


def replace_event(old: str, new: str, t: float, age: float) -> dict[str, object]:
    return make_event(time=t, pool="web", action=REPLACE, instance=old, reason="DOWN", duration=5.0,
                      replacement=new, age=age)


def test_a_replacement_that_dies_at_once_is_backed_off_exponentially() -> None:
    cfg = pool(grace_period=10, backoff=60, flap_window=300)
    history = [replace_event("web-a", "web-b", NOW - 5, age=5000)]  # web-a lived long
    plan = plan_heal(cfg, [Row("web-b", "DOWN"), Row("web-x", "UP")],
                     [inst("web-b", age=20), inst("web-x")], history, NOW)
    d = next(d for d in plan.decisions if d.name == "web-b")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW - 20 + 10 + 60)
    # Once the backoff is over it is replaced.
    plan = plan_heal(cfg, [Row("web-b", "DOWN"), Row("web-x", "UP")],
                     [inst("web-b", age=71), inst("web-x")], history, NOW)
    assert plan.replace == ["web-b"]
    # web-b died early too: its replacement web-c waits twice as long.
    history.append(replace_event("web-b", "web-c", NOW - 2, age=71))
    assert early_failures("web-c", NOW - 20, now=NOW, history=history, pool="web", flap_window=300) == 2
    plan = plan_heal(cfg, [Row("web-c", "DOWN"), Row("web-x", "UP")],
                     [inst("web-c", age=100), inst("web-x")], history, NOW)
    assert actions(plan)["web-c"] == BACKOFF_SKIP
    plan = plan_heal(cfg, [Row("web-c", "DOWN"), Row("web-x", "UP")],
                     [inst("web-c", age=131), inst("web-x")], history, NOW)
    assert plan.replace == ["web-c"]


def test_a_replacement_that_lived_long_is_not_backed_off() -> None:
    history = [replace_event("web-a", "web-b", NOW - 1000, age=50)]
    plan = plan_heal(pool(flap_window=300), [Row("web-b", "DOWN"), Row("web-x", "UP")],
                     [inst("web-b", age=1000), inst("web-x")], history, NOW)
    assert plan.replace == ["web-b"]


def test_a_replace_launch_event_links_a_replacement_whose_run_failed_later() -> None:
    """The run that launched web-b failed before it could log ``replace`` (web-b died before it
    came UP): the ``replace_launch`` event written right after the launch still links web-b to
    web-a, so web-b dead at once is backed off, not relaunched."""
    cfg = pool(grace_period=10, backoff=60, flap_window=300)
    history = [make_event(time=NOW - 30, pool="web", action=REPLACE_LAUNCH, instance="web-a", reason="DOWN",
                          replacement="web-b", age=5000)]
    plan = plan_heal(cfg, [Row("web-x", "UP")], [inst("web-b", age=30, state="exited"), inst("web-x")],
                     history, NOW)
    d = next(d for d in plan.decisions if d.name == "web-b")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW - 30 + 10 + 60), d
    assert "1 replacement(s) in a row failed within 300 s of launch" in d.reason


def test_a_replacement_an_interrupted_run_launched_is_taken_not_launched_again() -> None:
    """A run launched web-b for web-a and was killed before it destroyed web-a: the next run
    replaces web-a with web-b (registered as a live host outside the balancer), no new launch."""
    cfg = pool(grace_period=10, backoff=60)
    history = [make_event(time=NOW - 20, pool="web", action=REPLACE_LAUNCH, instance="web-a", reason="DOWN",
                          replacement="web-b", age=5000)]
    hosts = [inst("web-a", age=5000, state="stopped"), inst("web-b", age=20), inst("web-x")]
    plan = plan_heal(cfg, [Row("web-a", "DOWN"), Row("web-x", "UP")], hosts, history, NOW)
    (d,) = [d for d in plan.decisions if d.name == "web-a"]
    assert d.action == REPLACE and d.replacement == "web-b" and "launched by an earlier run" in d.reason
    assert d.as_dict()["replacement"] == "web-b"
    assert actions(plan)["web-b"] == REGISTER
    # A replacement that died meanwhile is not taken: a new one is launched.
    hosts[1] = inst("web-b", age=20, state="stopped")
    plan = plan_heal(cfg, [Row("web-a", "DOWN"), Row("web-x", "UP")], hosts, history, NOW)
    (d,) = [d for d in plan.decisions if d.name == "web-a"]
    assert d.action == REPLACE and d.replacement is None
    # Other hosts' replacements are not taken.
    assert plan_heal(cfg, [Row("web-a", "DOWN"), Row("web-x", "UP")],
                     [inst("web-a", age=5000), inst("web-c", age=20), inst("web-x")], history,
                     NOW).decisions[0].replacement is None


def test_failed_attempts_to_replace_a_host_back_off_exponentially() -> None:
    """The replacement never launched (its image exits at once): the DOWN host stays, and each
    failed attempt doubles the wait before the next one, counted from the last attempt."""
    cfg = pool(grace_period=10, backoff=60, backoff_max=1000)
    rows = [Row("web-a", "DOWN"), Row("web-x", "UP"), Row("web-y", "UP")]
    hosts = [inst("web-a", age=5000), inst("web-x"), inst("web-y")]

    def failed(t: float, name: str = "web-a") -> dict[str, object]:
        return make_event(time=t, pool="web", action=REPLACE_FAILED, instance=name, reason="launch failed")

    assert plan_heal(cfg, rows, hosts, [], NOW).replace == ["web-a"]
    history = [failed(NOW - 59)]
    assert failed_attempts("web-a", history=history, pool="web") == (1, NOW - 59)
    d = next(d for d in plan_heal(cfg, rows, hosts, history, NOW).decisions if d.name == "web-a")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW + 1), d
    assert "1 attempt(s) to replace it failed" in d.reason
    assert plan_heal(cfg, rows, hosts, [failed(NOW - 61)], NOW).replace == ["web-a"]
    # Two failures: 120 s after the last; three: 240 s; other hosts' and pools' failures do not count.
    history = [failed(NOW - 500), failed(NOW - 100), failed(NOW - 10, "web-x"),
               {**failed(NOW - 10), "pool": "api"}]
    assert failed_attempts("web-a", history=history, pool="web") == (2, NOW - 100)
    d = next(d for d in plan_heal(cfg, rows, hosts, history, NOW).decisions if d.name == "web-a")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW + 20)
    history.append(failed(NOW - 200))
    d = next(d for d in plan_heal(cfg, rows, hosts, history, NOW).decisions if d.name == "web-a")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW - 100 + 240)


def test_early_failures_and_failed_attempts_add_up() -> None:
    """web-b, web-a's replacement, died at once; then the attempt to replace web-b failed too."""
    cfg = pool(grace_period=10, backoff=60)
    history = [replace_event("web-a", "web-b", NOW - 200, age=5000),
               make_event(time=NOW - 100, pool="web", action=REPLACE_FAILED, instance="web-b", reason="x")]
    plan = plan_heal(cfg, [Row("web-x", "UP")], [inst("web-b", age=200, state="exited"), inst("web-x")],
                     history, NOW)
    d = next(d for d in plan.decisions if d.name == "web-b")
    assert d.action == BACKOFF_SKIP and d.not_before == pytest.approx(NOW - 100 + 120), d


def test_backoff_delay_is_capped() -> None:
    s = HealSettings(backoff=10, backoff_max=100)
    assert [backoff_delay(n, s) for n in range(6)] == [0, 10, 20, 40, 80, 100]


# --- properties ----------------------------------------------------------------------------------

STATUSES = ["UP", "UP 1/3", "DOWN", "DOWN 1/2", "MAINT", "DRAIN", "NOLB", "no check", "MAINT (via a/b)"]

host = st.tuples(
    st.sampled_from([*STATUSES, None]),  # None: not in the balancer
    st.booleans(),  # has an instance
    st.booleans(),  # alive
    st.floats(min_value=0, max_value=5000),  # age
)


@settings(max_examples=300, deadline=None)
@given(
    hosts=st.lists(host, max_size=12),
    max_replace=st.integers(min_value=0, max_value=4),
    threshold=st.floats(min_value=0, max_value=1),
    grace=st.floats(min_value=0, max_value=1000),
)
def test_properties(hosts: list[tuple[str | None, bool, bool, float]], max_replace: int, threshold: float,
                    grace: float) -> None:
    servers, instances = [], []
    for i, (status, has_instance, alive, age) in enumerate(hosts):
        name = f"web-{i:06x}"
        if status is not None:
            servers.append(Row(name, status))
        if has_instance or status is None:
            instances.append(inst(name, age, "running" if alive else "stopped"))
    cfg = pool(max_replace_per_run=max_replace, circuit_threshold=threshold, grace_period=grace)
    plan = plan_heal(cfg, servers, instances, [], NOW)
    by_name = {i.name: i for i in instances}
    rows = {s.server: s for s in servers}
    live_replaced = [n for n in plan.replace if by_name[n].alive]
    # never more than max_replace_per_run live hosts, nor max_replace_dead_per_run dead ones
    assert len(live_replaced) <= max_replace
    assert len(plan.replace) - len(live_replaced) <= HealSettings.max_replace_dead_per_run
    # never a live host replaced with the circuit open; dead hosts are replaced all the same
    if plan.circuit_open:
        assert live_replaced == []
    dead = [n for n, i in by_name.items() if not i.alive]
    assert sorted(plan.replace) == sorted(
        set(live_replaced) | set(dead[: HealSettings.max_replace_dead_per_run]))
    # every live host's server DOWN -> open
    live_rows = [s for s in servers if s.server in by_name and by_name[s.server].alive]
    if live_rows and all(s.status_class == "DOWN" for s in live_rows):
        assert plan.circuit_open
    for name in plan.replace:
        instance = by_name[name]
        if instance.alive:
            # a live host is replaced only when DOWN (never MAINT/DRAIN/...) and past its grace
            assert rows[name].status_class == "DOWN"
            assert NOW - instance.created > grace
    # every host gets exactly one decision
    assert sorted(d.name for d in plan.decisions) == sorted(set(by_name) | set(rows))


# --- event log -----------------------------------------------------------------------------------


def test_event_log_round_trip_and_filters(tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "sub" / "events.jsonl")
    assert read_events(log) == []
    append_event(log, make_event(time=1, pool="web", action="replace", instance="web-a", reason="r",
                                 duration=1.23456, replacement="web-b", skipped=None))
    append_events(log, [make_event(time=5, pool="api", action="circuit_open"),
                        make_event(time=9, pool="web", action="backoff_skip", instance="web-b")])
    with open(log, "a") as fh:
        fh.write('{"torn": \n')
    events = read_events(log)
    assert [e["action"] for e in events] == ["replace", "circuit_open", "backoff_skip"]
    first = events[0]
    assert list(first)[:6] == ["time", "pool", "action", "instance", "reason", "duration"]
    assert first["duration"] == 1.235 and first["replacement"] == "web-b" and "skipped" not in first
    assert [e["time"] for e in read_events(log, pool="web")] == [1, 9]
    assert [e["time"] for e in read_events(log, since=5)] == [5, 9]
    assert [e["action"] for e in read_events(log, actions=("replace",))] == ["replace"]
    assert parse_events("x\n[1]\n" + json.dumps({"action": "a"})) == [{"action": "a"}]


def _append_many(log: str, worker: int) -> None:
    for i in range(200):
        append_event(log, make_event(time=i, pool="web", action="tick", instance=f"w{worker}",
                                     reason="x" * 300))


def test_concurrent_appends_never_tear_lines(tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "events.jsonl")
    procs = [multiprocessing.Process(target=_append_many, args=(log, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert len(read_events(log)) == 800
    assert len(pathlib.Path(log).read_text().splitlines()) == 800


# --- lease lock ----------------------------------------------------------------------------------


def test_lease_lock(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "heal.lock")
    first = acquire(path, "run-1", ttl=60, now=100)
    assert first.acquired and first.holder == "run-1"
    second = acquire(path, "run-2", ttl=60, now=110)
    assert not second.acquired and second.holder == "run-1" and second.expires == 160
    assert acquire(path, "run-1", ttl=60, now=120).acquired  # re-entrant for its owner
    assert not release(path, "run-2")
    assert release(path, "run-1")
    assert acquire(path, "run-2", ttl=60, now=130).acquired
    # an expired lease (a crashed run) is taken over
    third = acquire(path, "run-3", ttl=60, now=1000)
    assert third.acquired and third.stale_owner == "run-2"


def test_lease_of_a_dead_process_is_stale(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "heal.lock")
    proc = multiprocessing.Process(target=int)
    proc.start()
    proc.join()
    assert acquire(path, "run-1", ttl=600, now=100, holder_pid=proc.pid).acquired
    # run-1's process is gone: its lease does not block run-2, though it has not expired
    taken = acquire(path, "run-2", ttl=600, now=110, holder_pid=os.getpid())
    assert taken.acquired and taken.stale_owner == "run-1"
    assert not acquire(path, "run-3", ttl=600, now=120).acquired  # run-2 (this process) is alive
