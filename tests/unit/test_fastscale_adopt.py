"""Which hosts scale.yml adopts from the watcher's scale-out fast path (``fastscale.to_adopt``):
the alive hosts of a ``scale_register`` event without a later ``scale_launch``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible.module_utils.hapool.fastscale import to_adopt


@dataclass
class Inst:
    name: str
    alive: bool = True


def ev(t: float, action: str, name: str, pool: str = "web", **extra: Any) -> dict[str, Any]:
    return {"time": t, "pool": pool, "action": action, "instance": name, **extra}


def names(history: list[dict[str, Any]], instances: list[Inst]) -> list[str]:
    return [a["name"] for a in to_adopt(history, instances, "web")]  # type: ignore[arg-type]


def test_a_registered_host_is_adopted_until_its_scale_launch_event() -> None:
    registered = ev(10, "scale_register", "web-a", started=9.0, launched=9.5, promoted=None)
    assert to_adopt([registered], [Inst("web-a")], "web") == [  # type: ignore[arg-type]
        {"pool": "web", "name": "web-a", "started": 9.0, "launched": 9.5, "promoted": False, "adopted": True}
    ]
    assert names([registered, ev(20, "scale_launch", "web-a")], [Inst("web-a")]) == []


def test_dead_or_gone_hosts_other_pools_and_older_launch_events_are_left_out() -> None:
    history = [
        ev(5, "scale_launch", "web-c"),  # an older event of the same name does not count
        ev(10, "scale_register", "web-a"),
        ev(10, "scale_register", "web-b"),
        ev(10, "scale_register", "web-c"),
        ev(10, "scale_register", "api-x", pool="api"),
    ]
    instances = [Inst("web-a", alive=False), Inst("web-c"), Inst("api-x")]
    assert names(history, instances) == ["web-c"]


def test_a_promoted_warm_host_keeps_its_promotion_time_as_its_launch() -> None:
    promoted = ev(10, "scale_register", "web-w", started=9.9, launched=10.0, promoted=True)
    [item] = to_adopt([promoted], [Inst("web-w")], "web")  # type: ignore[arg-type]
    assert item["promoted"] is True and item["launched"] == 10.0
