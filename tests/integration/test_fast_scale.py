"""The watcher's scale-out fast path (``hapool.fastscale``) against a real HAProxy and real nginx
hosts of the local provider launched from a template tree (made by hand as a bake leaves it; no
Ansible run; the fixture is test_fast_heal's).

A pool whose policy asks for more hosts grows at once: the new hosts are launched from the
current version, named in the ``scale_out`` event before their launch, added to the balancer at
runtime (health-gated) and serve after their first good checks; each is a ``scale_register``
event that scale.yml's plan then lists to adopt, until a ``scale_launch`` event logs it. Ready
warm hosts are taken first. A second call within the cooldown does nothing; a held lock, a pool
without a policy, a cpu policy or no baked version leave everything as it was.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.baking import current_template
from ansible.module_utils.hapool.events import append_event, make_event, read_events
from ansible.module_utils.hapool.fastscale import fast_scale, observe_scale
from ansible.module_utils.hapool.lock import acquire
from ansible.module_utils.hapool.warm import read_warm, refill
from helpers.procs import HAProxy, wait_until
from test_fast_heal import CHECKS, VERSION, Setup, entry, make_setup

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path: Path, haproxy_factory: Callable[..., HAProxy]) -> Iterator[Setup]:
    yield from make_setup(tmp_path, haproxy_factory)


def scaled(tmp: Path, count: int | None, **scale: Any) -> dict[str, Any]:
    """The pool entry with a file policy asking for ``count`` hosts (None: no policy)."""
    path = tmp / "desired"
    if count is not None:
        path.write_text(f"{count}\n")
    policies = [{"type": "file", "path": str(path)}] if count is not None else []
    settings = {"policies": policies, "scale_out_cooldown": 60, "warmup": 0, **scale}
    return entry(scale=settings)


def alive(s: Setup) -> set[str]:
    return {i.name for i in s.provider.list("web") if i.alive}


def log(s: Setup) -> list[dict[str, Any]]:
    return read_events(str(s.root / "heal" / "events.jsonl"), pool="web")


def adopt(s: Setup, pool: dict[str, Any]) -> list[str]:
    seen = observe_scale(pool, s.client, s.provider, str(s.root / "heal" / "events.jsonl"), time.time(),
                         state_root=str(s.root))
    return sorted(str(a["name"]) for a in seen.todo["adopt"])


def test_a_scale_out_launches_from_the_template_registers_at_once_and_is_left_to_adopt(
    setup: Setup, tmp_path: Path
) -> None:
    pool = scaled(tmp_path, 4)
    before = alive(setup)
    started = time.monotonic()
    result = fast_scale(setup.config(pools=[pool]))
    assert result.locked is None and not result.errors and result.plans == {"web": "2 -> 4"}, result
    assert len(result.launched) == 2 and all(i.error is None for i in result.launched), result
    new = {i.name for i in result.launched}
    assert alive(setup) == before | new
    for name in new:
        wait_until(lambda name=name: setup.status(name) == "UP", 10, f"{name} UP")
    print(f"\nfast scale-out: 2 hosts launched, added and UP after {time.monotonic() - started:.2f} s")
    for name in new:
        inst = setup.provider.get("web", name)
        assert inst is not None and inst.extra["template"] == VERSION
    pages = set()
    for _ in range(30):
        with urllib.request.urlopen(f"http://127.0.0.1:{setup.lb.frontend_port}/", timeout=5) as resp:
            pages.add(resp.read().decode())
    assert {f"<h1>Hello {n}!</h1>\n" for n in new} <= pages, pages

    events = log(setup)
    out = [e for e in events if e["action"] == "scale_out"]
    assert len(out) == 1 and out[0]["by"] == "watcher" and sorted(out[0]["hosts"]) == sorted(new), out
    assert out[0]["from"] == 2 and out[0]["to"] == 4, out
    registered = [e for e in events if e["action"] == "scale_register"]
    assert sorted(e["instance"] for e in registered) == sorted(new), registered
    assert all(e["registered"] is True and e["template"] == VERSION for e in registered), registered
    assert all(e["time"] >= out[0]["time"] for e in registered)
    assert [e for e in events if e["action"] == "scale_recommendation"], "the new recommendation is logged"

    # scale.yml's plan lists them to adopt until a scale_launch event logs each
    assert adopt(setup, pool) == sorted(new)
    first = sorted(new)[0]
    served = make_event(time=time.time(), pool="web", action="scale_launch", instance=first, reason="serving")
    append_event(str(setup.root / "heal" / "events.jsonl"), served)
    assert adopt(setup, pool) == sorted(new - {first})

    # at its size (and in the cooldown): a second call does nothing
    again = fast_scale(setup.config(pools=[pool]))
    assert again.launched == [] and again.plans == {} and again.locked is None, again
    assert alive(setup) == before | new


def test_within_the_cooldown_a_higher_count_waits(setup: Setup, tmp_path: Path) -> None:
    pool = scaled(tmp_path, 3)
    assert len(fast_scale(setup.config(pools=[pool])).launched) == 1
    (tmp_path / "desired").write_text("4\n")
    held = fast_scale(setup.config(pools=[pool]))
    assert held.launched == [] and held.plans == {}, held
    assert len(alive(setup)) == 3


def test_a_ready_warm_host_is_taken_before_any_launch(setup: Setup, tmp_path: Path) -> None:
    warm_pool = {**scaled(tmp_path, 3), "warm": {"size": 1}}
    template = current_template(warm_pool, str(setup.root))
    filled = refill(warm_pool, setup.provider, setup.client, state_root=str(setup.root),
                    check_defaults=CHECKS, template=template, grace_period=30, now=time.time(),
                    clock=time.time)
    assert filled.error is None and len(filled.launched) == 1, filled
    warm = filled.launched[0]["name"]
    wait_until(lambda: setup.status(warm) == "UP", 10, "the warm host UP")

    result = fast_scale(setup.config(pools=[warm_pool]))
    assert [(i.name, i.promoted, i.error) for i in result.launched] == [(warm, True, None)], result
    assert read_warm(str(setup.root), "web") == {}
    weights = {r.server: r.weight for r in setup.client.show_stat("web") if r.is_server}
    assert weights[warm] > 0, weights
    registered = [e for e in log(setup) if e["action"] == "scale_register"]
    assert [(e["instance"], e.get("promoted")) for e in registered] == [(warm, True)], registered
    assert [e["instance"] for e in log(setup) if e["action"] == "warm_promote"] == [warm]
    assert adopt(setup, warm_pool) == [warm]
    assert len(alive(setup)) == 3


def test_a_held_lock_or_a_pool_it_cannot_scale_changes_nothing(setup: Setup, tmp_path: Path) -> None:
    before = alive(setup)
    lock = str(setup.root / "heal" / "heal.lock")
    assert acquire(lock, "scale-run", 60, time.time()).acquired
    locked = fast_scale(setup.config(pools=[scaled(tmp_path, 4)]))
    assert locked.locked == "scale-run" and locked.launched == [], locked

    none = fast_scale(setup.config(pools=[scaled(tmp_path, None)]))
    assert none.skipped == {"web": "no scaling policy"} and none.launched == [], none
    cpu = {**entry(), "scale": {"policies": [{"type": "target", "metric": "cpu", "target": 50}]}}
    skipped = fast_scale(setup.config(pools=[cpu]))
    assert "cpu policy" in skipped.skipped["web"], skipped
    unbaked = {**scaled(tmp_path, 4), "name": "api"}
    missing = fast_scale(setup.config(pools=[unbaked]))
    assert "no baked template version" in missing.skipped["api"], missing
    assert alive(setup) == before
    assert [e for e in log(setup) if e["action"] in ("scale_out", "scale_register")] == []
