"""hapool.refresh: the pure planner of an instance refresh - its bounds, its batches (checked
step by step in a simulation of a pool for every size from 0 to 12 and the usual percentages),
checkpoints, rollback, skip matching, the state read from events, and bad settings."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.refresh import (
    ACT,
    DONE,
    FAILED,
    PAUSED,
    REFRESH_CHECKPOINT,
    REFRESH_DONE,
    REFRESH_LAUNCH,
    REFRESH_RESUME,
    REFRESH_ROLLBACK,
    REFRESH_START,
    ROLLBACK,
    WAIT,
    RefreshHost,
    RefreshSettings,
    RefreshState,
    bounds,
    plan_refresh,
    refresh_state,
)

NOW = 1_000_000.0


def up(name: str, version: str, created: float = NOW - 3600) -> RefreshHost:
    return RefreshHost(name, version, created, alive=True, status="UP", up_for=3600.0)


@pytest.mark.parametrize(
    ("desired", "low", "high", "expected"),
    [
        (6, 90, 110, (6, 7)),  # ceil(5.4), floor(6.6)
        (2, 90, 110, (2, 3)),  # 2 and 2: surge first
        (1, 90, 110, (1, 2)),
        (10, 90, 110, (9, 11)),
        (10, 50, 150, (5, 15)),
        (4, 100, 100, (4, 5)),
        (0, 90, 110, (0, 1)),
        (3, 0, 100, (0, 3)),
    ],
)
def test_the_floor_rounds_up_the_ceiling_down_and_leaves_room_for_one(
    desired: int, low: int, high: int, expected: tuple[int, int]
) -> None:
    settings = RefreshSettings(min_healthy_percentage=low, max_healthy_percentage=high)
    assert bounds(desired, settings) == expected


def _simulate(desired: int, settings: RefreshSettings) -> int:
    """Run a refresh of a pool of ``desired`` hosts of v1 to v2 to its end: each step acts on
    the plan (terminations, then launches), then the new hosts come UP. Checks the floor and the
    ceiling at every step; returns the number of steps."""
    hosts = {f"old{i}": up(f"old{i}", "v1") for i in range(desired)}
    state = RefreshState(refresh="r1", started=NOW, target="v2", previous="v1")
    floor, ceiling = bounds(desired, settings)
    for step in range(1, 4 * desired + 10):
        plan = plan_refresh("web", list(hosts.values()), desired, "v2", settings, state, NOW + step)
        if plan.outcome == DONE:
            assert sorted(h.version for h in hosts.values()) == ["v2"] * desired
            return step
        assert plan.outcome in {ACT, WAIT}, plan
        serving_before = sum(1 for h in hosts.values() if h.status == "UP")
        for name in plan.terminate:
            del hosts[name]
        serving = sum(1 for h in hosts.values() if h.status == "UP")
        assert serving >= min(floor, serving_before), (step, plan)
        for i in range(plan.launch):
            name = f"new{step}-{i}"
            hosts[name] = RefreshHost(name, "v2", NOW + step, alive=True, status=None)
            state = replace(state, launched=(*state.launched, name))
        assert len(hosts) <= ceiling, (step, plan)
        # before the next plan the new hosts pass their checks
        hosts = {n: h if h.status == "UP" else replace(h, status="UP", up_for=1.0) for n, h in hosts.items()}
    raise AssertionError(f"no end after {4 * desired + 10} steps")


PERCENTAGES = [(low, high) for low, high in itertools.product((0, 50, 90, 100), (100, 110, 150, 200))
               if high - low <= 100]


@pytest.mark.parametrize(("low", "high"), PERCENTAGES)
def test_every_pool_size_is_rolled_within_the_floor_and_the_ceiling(low: int, high: int) -> None:
    settings = RefreshSettings(min_healthy_percentage=low, max_healthy_percentage=high)
    for desired in range(13):
        steps = _simulate(desired, settings)
        assert steps <= 2 * desired + 2


def test_a_pool_of_six_at_the_defaults_rolls_one_host_at_a_time_launch_first() -> None:
    hosts = [up(f"old{i}", "v1", NOW - 100 + i) for i in range(6)]
    state = RefreshState(refresh="r1", started=NOW, target="v2", previous="v1")
    plan = plan_refresh("web", hosts, 6, "v2", RefreshSettings(), state, NOW)
    assert (plan.outcome, plan.terminate, plan.launch, plan.floor, plan.ceiling) == (ACT, (), 1, 6, 7)
    booting = RefreshHost("n1", "v2", NOW, status=None)
    state = replace(state, launched=("n1",))
    plan = plan_refresh("web", [*hosts, booting], 6, "v2", RefreshSettings(), state, NOW + 1)
    assert (plan.outcome, plan.waiting) == (WAIT, ("n1",))
    # UP but in its warmup: still waiting
    warming = replace(booting, status="UP", up_for=2.0)
    plan = plan_refresh("web", [*hosts, warming], 6, "v2", RefreshSettings(warmup=5), state, NOW + 3)
    assert plan.outcome == WAIT
    plan = plan_refresh("web", [*hosts, replace(warming, up_for=6.0)], 6, "v2", RefreshSettings(warmup=5),
                        state, NOW + 7)
    assert (plan.outcome, plan.terminate, plan.launch) == (ACT, ("old0",), 1)  # the oldest first


def test_old_hosts_that_do_not_serve_go_first_and_do_not_count_against_the_floor() -> None:
    hosts = [up("a", "v1"), RefreshHost("b", "v1", NOW - 50, status="DOWN"), up("c", "v1")]
    plan = plan_refresh("web", hosts, 3, "v2", RefreshSettings(), None, NOW)
    # floor 3, ceiling 4: b goes at once, and two hosts are launched (2 live, 2 serving: below the floor)
    assert (plan.terminate, plan.launch, plan.serving) == (("b",), 2, 2)


def test_skip_matching_leaves_hosts_on_the_target_version_alone_unless_it_is_off() -> None:
    hosts = [up("a", "v2"), up("b", "v1")]
    plan = plan_refresh("web", hosts, 2, "v2", RefreshSettings(), None, NOW)
    assert plan.old == ("b",)
    plan = plan_refresh("web", hosts, 2, "v2", RefreshSettings(skip_matching=False), None, NOW)
    assert sorted(plan.old) == ["a", "b"]
    current = [up("a", "v2"), up("b", "v2")]
    assert plan_refresh("web", current, 2, "v2", RefreshSettings(), None, NOW).outcome == DONE


def test_a_checkpoint_pauses_the_refresh_until_it_is_resumed() -> None:
    settings = RefreshSettings(checkpoints=(50,))
    state = RefreshState(refresh="r1", started=NOW, target="v2", previous="v1", launched=("n1", "n2"))
    hosts = [up("old0", "v1"), up("old1", "v1"), up("n1", "v2", NOW), up("n2", "v2", NOW), up("old2", "v1")]
    plan = plan_refresh("web", hosts, 4, "v2", settings, state, NOW + 60)
    # 2 of 4 serve v2: 50 %; the batch's old host beyond 4 goes, nothing is launched
    assert (plan.outcome, plan.checkpoint, plan.launch, plan.terminate) == (PAUSED, 50, 0, ("old0",))
    paused = replace(state, checkpoints_passed=(50,), paused_at=50)
    plan = plan_refresh("web", hosts[1:], 4, "v2", settings, paused, NOW + 61)
    assert (plan.outcome, plan.launch, plan.terminate) == (PAUSED, 0, ())
    resumed = replace(paused, paused_at=None)
    plan = plan_refresh("web", hosts[1:], 4, "v2", settings, resumed, NOW + 62)
    assert plan.outcome == ACT and plan.launch == 1


def test_a_new_host_that_never_serves_rolls_the_refresh_back_once() -> None:
    state = RefreshState(refresh="r1", started=NOW, target="v2", previous="v1", launched=("n1",))
    hosts = [up("a", "v1"), up("b", "v1"), RefreshHost("n1", "v2", NOW, status="DOWN")]
    settings = RefreshSettings(grace_period=30)
    assert plan_refresh("web", hosts, 2, "v2", settings, state, NOW + 10).outcome == WAIT
    plan = plan_refresh("web", hosts, 2, "v2", settings, state, NOW + 31)
    assert (plan.outcome, plan.failed, plan.terminate) == (ROLLBACK, ("n1",), ("n1",))
    dead = [hosts[0], hosts[1], RefreshHost("n1", "v2", NOW, alive=False)]
    assert plan_refresh("web", dead, 2, "v2", settings, state, NOW + 5).outcome == ROLLBACK
    assert plan_refresh("web", hosts, 2, "v2", replace(settings, auto_rollback=False), state,
                        NOW + 31).outcome == FAILED
    # a host of v2 the refresh did not launch (heal's) is not the refresh's to judge
    other = RefreshState(refresh="r1", started=NOW, target="v2", previous="v1")
    assert plan_refresh("web", hosts, 2, "v2", settings, other, NOW + 31).outcome != ROLLBACK
    # rolling back, a failure again stops the refresh
    back = replace(state, target="v1", previous="v2", rolled_back=True, launched=("n1", "m1"))
    again = [up("a", "v1"), RefreshHost("m1", "v1", NOW, alive=False)]
    assert plan_refresh("web", again, 2, "v1", settings, back, NOW + 40).outcome == FAILED


def _event(action: str, t: float, **fields: object) -> dict[str, object]:
    return {"action": action, "pool": "web", "time": t, **fields}


def test_the_refresh_in_progress_is_read_from_the_events() -> None:
    history = [
        _event(REFRESH_START, 1, refresh="r0", version="v1", previous="v0"),
        _event(REFRESH_DONE, 2, refresh="r0"),
        _event(REFRESH_START, 3, refresh="r1", version="v2", previous="v1"),
        _event(REFRESH_LAUNCH, 4, refresh="r1", replacement="n1"),
        {"action": REFRESH_LAUNCH, "pool": "api", "time": 4.5, "refresh": "r1", "replacement": "x"},
        _event(REFRESH_CHECKPOINT, 5, refresh="r1", percentage=50),
    ]
    state = refresh_state(history, "web")
    assert state is not None
    assert (state.refresh, state.started, state.target, state.previous) == ("r1", 3.0, "v2", "v1")
    assert (state.launched, state.checkpoints_passed, state.paused_at) == (("n1",), (50,), 50)
    state = refresh_state([*history, _event(REFRESH_RESUME, 6, refresh="r1")], "web")
    assert state is not None and state.paused_at is None
    rollback = _event(REFRESH_ROLLBACK, 7, refresh="r1", version="v2", to="v1")
    rolled = refresh_state([*history, rollback], "web")
    assert rolled is not None
    assert (rolled.target, rolled.previous, rolled.rolled_back) == ("v1", "v2", True)
    assert rolled.failed_versions == ("v2",)
    assert refresh_state([*history, _event(REFRESH_DONE, 8, refresh="r1")], "web") is None
    assert refresh_state(history, "api") is None


@pytest.mark.parametrize(
    ("refresh", "message"),
    [
        ({"min_healthy_percentage": 101}, "from 0 to 100"),
        ({"max_healthy_percentage": 99}, "from 100 to 200"),
        ({"min_healthy_percentage": 50, "max_healthy_percentage": 200}, "100 at most"),
        ({"checkpoints": [50, 20]}, "increasing"),
        ({"checkpoints": [0]}, "from 1"),
        ({"checkpoints": "50"}, "list of percentages"),
        ({"skip_matching": "yes"}, "true or false"),
        ({"warmup": -1}, "warmup"),
        ({"min_healty_percentage": 90}, "unknown settings min_healty_percentage"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(refresh: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        RefreshSettings.from_pool({"name": "web", "refresh": refresh})


def test_settings_from_a_pool_entry() -> None:
    s = RefreshSettings.from_pool({"grace_period": 12, "refresh": {"checkpoints": [25, 50], "warmup": 3}})
    assert (s.checkpoints, s.warmup, s.grace_period, s.min_healthy_percentage) == ((25, 50), 3.0, 12.0, 90)
