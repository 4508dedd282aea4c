"""The watcher's fast path (``hapool.fastheal``) against a real HAProxy and real nginx hosts of the
local provider launched from a template tree (made by hand as a bake leaves it; no Ansible run).

A killed host is replaced at once: the replacement is launched from the pool's current version,
added to the balancer at runtime and taken into service after its good checks; the link to the
killed host is logged first (``replace_launch``); a second call leaves the adopted pair to
heal.yml; a held pool lock, a pool without a baked version and a bad fast-path file are refused
with nothing launched. Every host is destroyed at the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool import baking
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.events import read_events
from ansible.module_utils.hapool.fastheal import FastConfig, fast_heal, provider_for, runtime_server_params
from ansible.module_utils.hapool.haproxy import RuntimeClient
from ansible.module_utils.hapool.lock import acquire
from ansible.module_utils.hapool.providers import LaunchSpec, LaunchTemplate, Provider
from ansible.module_utils.hapool.warm import read_warm, refill
from helpers.heal import kill_hard
from helpers.procs import HAProxy, wait_until
from test_local_template_launch import get, template_tree

pytestmark = pytest.mark.integration

VERSION = "fa57fa57fa57"
SERVER_CHECKS = "inter 300ms fastinter 100ms rise 2 fall 2"
CHECKS = {"enabled": True, "inter": "300ms", "fastinter": "100ms", "rise": 2, "fall": 2, "slowstart": ""}


def entry(**over: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "provider": "local",
        "desired": 2,
        "min": 1,
        "max": 4,
        "grace_period": 0,
        "template": {"enabled": True},
        **over,
    }


class Setup:
    def __init__(self, root: Path, provider: Provider, lb: HAProxy, hosts: list[Any]) -> None:
        self.root, self.provider, self.lb, self.hosts = root, provider, lb, hosts
        self.client = RuntimeClient(str(lb.admin_socket), timeout=5)

    def config(self, **over: Any) -> FastConfig:
        data = {
            "version": 1,
            "socket": str(self.lb.admin_socket),
            "state_root": str(self.root),
            "event_log": str(self.root / "heal" / "events.jsonl"),
            "lock_file": str(self.root / "heal" / "heal.lock"),
            "check_defaults": CHECKS,
            "pools": [entry()],
            **over,
        }
        return FastConfig.from_dict(data)

    def status(self, name: str) -> str | None:
        rows = [r for r in self.client.show_stat("web") if r.is_server and r.server == name]
        return rows[0].status if rows else None


@pytest.fixture
def setup(tmp_path: Path, haproxy_factory: Callable[..., HAProxy]) -> Iterator[Setup]:
    yield from make_setup(tmp_path, haproxy_factory)


def make_setup(tmp_path: Path, haproxy_factory: Callable[..., HAProxy]) -> Iterator[Setup]:
    """A balancer and 2 hosts of a template pool (test_fast_scale.py uses it too); every host
    is destroyed at the end."""
    root = tmp_path / "state"
    (root / "heal").mkdir(parents=True)
    provider = provider_for(entry(), str(root))
    tree = template_tree(Path(baking.artifact_name("local", str(root), "web", VERSION)), provider.user)  # type: ignore[attr-defined]
    baking.record(str(root), "web", VERSION, str(tree), time.time(), usable=True)
    template = LaunchTemplate(str(tree), VERSION)
    hosts = [provider.launch("web", LaunchSpec(template=template)) for _ in range(2)]
    try:
        lb = haproxy_factory(
            {
                "web": [
                    f"server {h.name} {h.endpoint} check inter 300ms fastinter 100ms rise 2 fall 2"
                    for h in hosts
                ]
            }
        )
        s = Setup(root, provider, lb, hosts)
        for h in hosts:
            wait_until(lambda h=h: s.status(h.name) == "UP", 10, f"{h.name} UP")
        yield s
    finally:
        for inst in provider.list("web"):
            provider.destroy("web", inst)
        provider.close()


def test_a_killed_host_is_replaced_from_the_template_and_serves_before_any_playbook(setup: Setup) -> None:
    victim = setup.hosts[0]
    kill_hard(victim)
    wait_until(lambda: not setup.provider.get("web", victim.name).alive, 10, "the provider sees it dead")  # type: ignore[union-attr]

    started = time.monotonic()
    result = fast_heal(setup.config())
    assert result.locked is None and not result.errors, result
    assert len(result.replaced) == 1, result
    item = result.replaced[0]
    assert item.name == victim.name and item.error is None and item.template == VERSION, item
    assert item.registered is not None and item.launched is not None
    wait_until(lambda: setup.status(item.replacement) == "UP", 10, "the replacement UP")
    up = time.monotonic() - started
    print(f"\nfast path: launch + add server {item.registered - item.started:.2f} s; UP after {up:.2f} s")

    new = setup.provider.get("web", item.replacement)
    assert new is not None and new.alive and new.extra["template"] == VERSION
    pages = set()
    for _ in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{setup.lb.frontend_port}/", timeout=5) as resp:
            pages.add(resp.read().decode())
    assert f"<h1>Hello {item.replacement}!</h1>\n" in pages, pages

    # the link to the killed host was logged before the launch, with who launched it
    log = read_events(str(setup.root / "heal" / "events.jsonl"), pool="web")
    launch = [e for e in log if e["action"] == "replace_launch"]
    assert len(launch) == 1 and launch[0]["instance"] == victim.name, launch
    assert launch[0]["replacement"] == item.replacement and launch[0]["by"] == "watcher", launch

    # a second call finds the pair a heal run must finish (adopt): it launches nothing
    again = fast_heal(setup.config())
    assert again.replaced == [] and "left to heal.yml" in again.skipped.get("web", ""), again
    assert len([i for i in setup.provider.list("web") if i.alive]) == 2


def test_a_held_pool_lock_wins_and_nothing_is_launched(setup: Setup) -> None:
    config = setup.config()
    taken = acquire(config.lock_file, "heal-someone", 60, time.time(), holder_pid=os.getpid())
    assert taken.acquired
    kill_hard(setup.hosts[1])
    wait_until(lambda: not setup.provider.get("web", setup.hosts[1].name).alive, 10, "dead")  # type: ignore[union-attr]
    result = fast_heal(config)
    assert result.locked == "heal-someone" and result.replaced == [], result
    assert len(setup.provider.list("web")) == 2  # the dead one and the live one; nothing new
    assert not (setup.root / "heal" / "events.jsonl").exists()


def test_a_pool_without_a_baked_version_is_left_to_heal_yml(setup: Setup) -> None:
    kill_hard(setup.hosts[1])
    bare = entry(template={"enabled": False})
    result = fast_heal(setup.config(pools=[bare]))
    assert result.replaced == [] and "no baked template" in result.skipped["web"], result


def test_the_server_is_added_checked_like_the_configuration(setup: Setup) -> None:
    params = runtime_server_params(entry(check={"rise": 3}, weight=50), CHECKS, setup.hosts[0])
    assert params["rise"] == 3 and params["fall"] == 2 and params["weight"] == 50
    assert params["inter"] == "300ms" and params["downinter"] == "100ms"  # DOWN checks at fastinter
    assert params["slowstart"] is None and params["check"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version 2"),
        ({"socket": ""}, "socket must be"),
        ({"pools": {"web": {}}}, "pools must be a list"),
        ({"pools": [{"provider": "local"}]}, "pools must be a list"),
        ({"timeout": 0}, "timeout must be"),
        ({"check_defaults": []}, "check_defaults must be"),
    ],
)
def test_a_bad_fast_path_file_is_refused_naming_what(
    setup: Setup, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        setup.config(**change)


def test_an_unreadable_fast_path_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "fastpath.json"
    path.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match=str(path)):
        FastConfig.load(str(path))
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(InvalidArgumentError, match="socket must be"):
        FastConfig.load(str(path))


def test_a_warm_host_takes_no_traffic_and_is_promoted_in_milliseconds(setup: Setup) -> None:
    warm_entry = entry(warm={"size": 1})
    template = LaunchTemplate(str(baking.artifact_name("local", str(setup.root), "web", VERSION)), VERSION)

    def refill_now() -> Any:
        return refill(
            warm_entry,
            setup.provider,
            setup.client,
            state_root=str(setup.root),
            check_defaults=CHECKS,
            template=template,
            grace_period=0,
            now=time.time(),
            clock=time.time,
        )

    filled = refill_now()
    assert filled.error is None and len(filled.launched) == 1, filled
    warm_name = filled.launched[0]["name"]
    assert list(read_warm(str(setup.root), "web")) == [warm_name]
    wait_until(lambda: setup.status(warm_name) == "UP", 10, "the warm host UP")
    row = next(r for r in setup.client.show_stat("web") if r.server == warm_name)
    assert row.weight == 0
    pages = {get(f"http://127.0.0.1:{setup.lb.frontend_port}/") for _ in range(30)}
    assert f"<h1>Hello {warm_name}!</h1>\n" not in pages, "a warm host took traffic"
    assert refill_now().launched == []  # full: nothing more

    victim = setup.hosts[0]
    kill_hard(victim)
    wait_until(lambda: not setup.provider.get("web", victim.name).alive, 10, "dead")  # type: ignore[union-attr]
    result = fast_heal(setup.config(pools=[warm_entry]))
    assert len(result.replaced) == 1, result
    item = result.replaced[0]
    assert item.promoted and item.replacement == warm_name and item.error is None, item
    assert item.registered is not None and item.registered - item.started < 0.5, item
    assert read_warm(str(setup.root), "web") == {}
    row = next(r for r in setup.client.show_stat("web") if r.server == warm_name)
    assert row.weight == 1 and row.status == "UP"
    wait_until(
        lambda: f"<h1>Hello {warm_name}!</h1>\n" == get(f"http://127.0.0.1:{setup.lb.frontend_port}/"),
        5,
        "the promoted host answering",
        interval=0.05,
    )
    log = read_events(str(setup.root / "heal" / "events.jsonl"), pool="web")
    assert [e["action"] for e in log] == ["replace_launch", "warm_promote"], log
    assert log[0]["replacement"] == warm_name and log[0]["promote"] is True

    # the next refill launches a new warm host in its place
    again = refill_now()
    assert len(again.launched) == 1 and again.launched[0]["name"] != warm_name, again
