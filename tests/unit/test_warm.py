"""Warm pools, the pure half (hapool.warm): the warm file, the refill plan, which warm hosts a
promotion may take and how the heal plan names them, the pool key's validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.healing import Decision
from ansible.module_utils.hapool.pools import validate_pool
from ansible.module_utils.hapool.warm import (
    WarmError,
    assign_warm,
    plan_refill,
    read_warm,
    ready_warm,
    split_rows,
    split_warm,
    warm_path,
    warm_size,
    write_warm,
)

V1, V2 = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


@dataclass(frozen=True)
class Inst:
    name: str
    alive: bool = True
    created: float = 0.0
    extra: dict[str, Any] = field(default_factory=lambda: {"template": V1})


@dataclass(frozen=True)
class Row:
    server: str
    status_class: str = "UP"


def test_the_warm_file_round_trips_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    assert read_warm(tmp_path, "web") == {}
    write_warm(tmp_path, "web", {"web-000001": {"since": 1.0, "template": V1}})
    assert read_warm(tmp_path, "web") == {"web-000001": {"since": 1.0, "template": V1}}
    data = json.loads(Path(warm_path(tmp_path, "web")).read_text())
    assert data["version"] == 1 and data["pool"] == "web"


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", json.dumps({"version": 2, "hosts": {}}), json.dumps({"version": 1, "hosts": []})],
)
def test_a_warm_file_that_is_not_ours_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = Path(warm_path(tmp_path, "web"))
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(WarmError, match=str(path)):
        read_warm(tmp_path, "web")


def test_refill_launches_up_to_the_size_and_removes_what_cannot_serve() -> None:
    instances = [
        Inst("web-a", created=10),
        Inst("web-dead", alive=False),
        Inst("web-down", created=0),
        Inst("web-booting", created=95),
        Inst("web-old", extra={"template": V2}),
        Inst("web-member"),  # not warm: never touched
    ]
    rows = [Row("web-a"), Row("web-down", "DOWN"), Row("web-booting", "DOWN"), Row("web-old")]
    warm = {n: {} for n in ("web-a", "web-dead", "web-down", "web-booting", "web-old", "web-gone")}
    plan = plan_refill("web", 3, warm, instances, rows, version=V1, now=100.0, grace_period=30.0)
    assert plan.remove == {
        "web-dead": "dead",
        "web-down": "DOWN past its grace period (30 s)",
        "web-old": f"behind the current version {V1} (runs {V2})",
    }
    assert plan.prune == ("web-gone",)
    assert plan.launch == 1  # web-a and web-booting stay


def test_refill_without_a_baked_version_launches_nothing_and_a_smaller_size_removes_the_newest() -> None:
    instances = [Inst("web-a", created=1), Inst("web-b", created=2), Inst("web-c", created=3)]
    warm = {n: {} for n in ("web-a", "web-b", "web-c")}
    plan = plan_refill("web", 1, warm, instances, [], version=None, now=10.0, grace_period=30.0)
    assert plan.launch == 0
    assert set(plan.remove) == {"web-c", "web-b"}, plan.remove
    empty = plan_refill("web", 2, {}, [], [], version=None, now=10.0, grace_period=30.0)
    assert empty.launch == 0 and empty.remove == {}


def test_a_promotion_takes_live_warm_hosts_up_in_haproxy_oldest_first() -> None:
    instances = [
        Inst("web-new", created=5),
        Inst("web-old", created=1),
        Inst("web-dead", alive=False, created=0),
    ]
    rows = [Row("web-new"), Row("web-old"), Row("web-dead")]
    assert ready_warm(instances, rows) == ["web-old", "web-new"]
    assert ready_warm(instances, [Row("web-new", "DOWN"), Row("web-old")]) == ["web-old"]
    assert ready_warm(instances, rows, version=V2) == []


def test_the_heal_plan_names_warm_hosts_as_replacements_not_adopted_ones() -> None:
    decisions = [
        Decision("keep", "web-1", "UP"),
        Decision("replace", "web-2", "dead"),
        Decision("replace", "web-3", "adopt", replacement="web-9", adopt=True),
        Decision("replace", "web-4", "DOWN"),
    ]
    out = assign_warm(decisions, ["web-w1"])
    assert [(d.name, d.replacement, d.promote) for d in out] == [
        ("web-1", None, False),
        ("web-2", "web-w1", True),
        ("web-3", "web-9", False),
        ("web-4", None, False),  # no warm host left: launched
    ]


def test_split_keeps_members_and_warm_hosts_apart() -> None:
    members, warm = split_warm([Inst("a"), Inst("b")], {"b": {}})
    assert [i.name for i in members] == ["a"] and [i.name for i in warm] == ["b"]
    rows, warm_rows = split_rows([Row("a"), Row("b")], {"b"}, key=lambda r: r.server)
    assert [r.server for r in rows] == ["a"] and [r.server for r in warm_rows] == ["b"]


@pytest.mark.parametrize(
    ("warm", "message"),
    [
        ({"size": -1}, "warm.size"),
        ({"size": "two"}, "warm.size"),
        ({"sise": 1}, "unknown key"),
        ("1", "warm"),
    ],
)
def test_a_bad_warm_key_is_refused(warm: Any, message: str) -> None:
    entry = {"name": "web", "provider": "local", "template": {"enabled": True}, "warm": warm}
    with pytest.raises(InvalidArgumentError, match=message):
        validate_pool(entry)


def test_a_warm_pool_needs_a_template() -> None:
    with pytest.raises(InvalidArgumentError, match=r"template\.enabled"):
        validate_pool({"name": "web", "provider": "local", "warm": {"size": 1}})
    ok = validate_pool(
        {"name": "web", "provider": "local", "template": {"enabled": True}, "warm": {"size": 2}}
    )
    assert ok["warm"] == {"size": 2} and warm_size(ok) == 2
    assert warm_size({"name": "web"}) == 0
    assert validate_pool({"name": "web", "provider": "local", "warm": {"size": 0}})["warm"] == {"size": 0}
