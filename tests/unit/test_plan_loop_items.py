"""The plan modules' `todo` lists (healing.loop_items, scaling.loop_items, site_plan's): ready to
loop over, each entry with its pool, and several pools' lists joined by
`map(attribute=...) | flatten(levels=1)` as the playbooks do."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType
from typing import Any

import pytest
from ansible.module_utils.hapool import healing, scaling
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.providers.options import pool_params

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _library(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hapool_library_{name}", ROOT / "library" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


heal_plan = _library("heal_plan")
scale_plan = _library("scale_plan")
site_plan = _library("site_plan")


def _join(results: list[dict[str, Any]], key: str) -> list[Any]:
    """What the playbooks write: results | map(attribute='todo.<key>') | flatten(levels=1)."""
    return [entry for result in results for entry in result["todo"][key]]


def _decision(name: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "action": action, "reason": f"{name} {action}", **extra}


def test_heal_plan_todo_sorts_the_decisions_and_adds_the_pool() -> None:
    plan = {"pool": "web", "decisions": [
        _decision("web-a", "replace", replacement="web-x"), _decision("web-b", "keep"),
        _decision("web-c", "clean"), _decision("web-d", "remove_server"), _decision("web-e", "register"),
        _decision("web-f", "backoff_skip"), _decision("web-g", "circuit_open"),
    ]}
    todo = healing.loop_items(plan)
    assert [(d["pool"], d["name"], d["action"]) for d in todo["replace"]] == [
        ("web", "web-a", "replace"), ("web", "web-c", "clean")]
    assert todo["replace"][0]["replacement"] == "web-x"  # the whole decision is kept
    assert [d["name"] for d in todo["remove_servers"]] == ["web-d"]
    assert [d["name"] for d in todo["register"]] == ["web-e"]
    assert all(d["pool"] == "web" for key in todo for d in todo[key])
    assert "pool" not in plan["decisions"][0]  # the plan itself is left as it was


def test_heal_plan_todo_of_several_pools_flattens_to_one_list_in_pool_order() -> None:
    results = [{"todo": healing.loop_items({"pool": pool, "decisions": decisions})} for pool, decisions in (
        ("web", [_decision("web-a", "replace"), _decision("web-b", "register")]),
        ("api", []),
        ("img", [_decision("img-a", "clean"), _decision("img-b", "replace")]),
    )]
    assert [(d["pool"], d["name"]) for d in _join(results, "replace")] == [
        ("web", "web-a"), ("img", "img-a"), ("img", "img-b")]
    assert [(d["pool"], d["name"]) for d in _join(results, "register")] == [("web", "web-b")]
    assert _join(results, "remove_servers") == []


def _scale(pool: str, action: str, *, launch: int = 0, drain: tuple[str, ...] = (),
           leaving: tuple[str, ...] = (), hosts: tuple[tuple[str, str | None], ...] = ()) -> dict[str, Any]:
    return {"pool": pool, "action": action, "launch": launch, "drain": list(drain),
            "remove": [*leaving, *drain], "hosts": [{"name": n, "status": s} for n, s in hosts],
            "settings": {"drain_timeout": 45.0}, "reasons": ["because"]}


def test_scale_plan_todo_removes_launches_and_decisions() -> None:
    plan = _scale("web", "scale_in", drain=("web-b",), leaving=("web-a",),
                  hosts=(("web-a", None), ("web-b", "UP"), ("web-c", "UP")))
    todo = scaling.loop_items(plan, {"name": "web", "provider": "local"})
    assert todo["remove"] == [
        {"pool": "web", "name": "web-a", "new": False, "in_balancer": False, "drain_timeout": 45.0},
        {"pool": "web", "name": "web-b", "new": True, "in_balancer": True, "drain_timeout": 45.0},
    ]
    assert todo["launch"] == [] and todo["scale_out"] == [] and todo["scale_in"] == [plan]

    out = _scale("web", "scale_out", launch=2)
    todo = scaling.loop_items(out, {"name": "web", "provider": "local"})
    assert todo["launch"] == [{"name": "web", "provider": "local"}] * 2
    assert todo["scale_out"] == [out] and todo["scale_in"] == [] and todo["remove"] == []


def test_scale_plan_todo_takes_a_host_the_plan_does_not_list_as_in_the_balancer() -> None:
    todo = scaling.loop_items(_scale("web", "none", leaving=("web-z",)), {"name": "web"})
    assert todo["remove"][0]["in_balancer"] is True


def test_scale_plan_todo_of_several_pools_flattens() -> None:
    results = [{"todo": scaling.loop_items(_scale(p, "scale_out", launch=n), {"name": p})}
               for p, n in (("web", 1), ("api", 0), ("img", 2))]
    assert [p["name"] for p in _join(results, "launch")] == ["web", "img", "img"]
    assert [p["pool"] for p in _join(results, "scale_out")] == ["web", "api", "img"]


def test_site_plan_todo() -> None:
    results = [{"todo": site_plan.loop_items({"pool": p, "clean": clean, "launch": n})}
               for p, clean, n in (("web", ["web-a"], 2), ("api", [], 0), ("img", ["img-a", "img-b"], 1))]
    assert _join(results, "clean") == [
        {"pool": "web", "name": "web-a"}, {"pool": "img", "name": "img-a"}, {"pool": "img", "name": "img-b"}]
    assert _join(results, "launch") == [{"pool": "web"}, {"pool": "web"}, {"pool": "img"}]


def test_site_plan_takes_desired_max_and_the_provider_from_the_pool_entry() -> None:
    base = {"provider": None, "desired": None, "max": None, "image": None, "network": None,
            "vagrant_backend": None, "state_dir": "/tmp/x"}
    entry = {"name": "web", "provider": "docker", "desired": 3, "max": 6,
             "launch": {"image": "hapool/base:bookworm", "network": "net"}}
    params = site_plan.pool_params({**base, "pool": entry})
    assert (params["pool"], params["provider"], params["desired"], params["max"]) == ("web", "docker", 3, 6)
    launch = (params["image"], params["network"], params["vagrant_backend"])
    assert launch == ("hapool/base:bookworm", "net", None)
    # What the task gives wins; a bare name needs desired and max.
    given = site_plan.pool_params({**base, "pool": entry, "desired": 1, "image": "other"})
    assert (given["desired"], given["image"], given["max"]) == (1, "other", 6)
    named = site_plan.pool_params({**base, "pool": "web", "desired": "2", "max": 4})
    assert (named["pool"], named["provider"], named["desired"], named["max"]) == ("web", "local", 2, 4)
    with pytest.raises(InvalidArgumentError, match="max is required"):
        site_plan.pool_params({**base, "pool": "web", "desired": 2})


def test_heal_and_scale_plan_take_the_provider_options_from_the_pool() -> None:
    """They resolve them through options.pool_params (tests/unit/test_pool_entry_options.py)."""
    for module in (heal_plan, scale_plan):
        assert module.pool_params is pool_params
        assert not hasattr(module, "pool_provider_params")  # no copy of it
