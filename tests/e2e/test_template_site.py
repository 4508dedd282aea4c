"""site.yml and the hosts launched from a launch template, end to end on the local provider
(real nginx, HAProxy and Ansible; no mocks).

While a pool has ``template.enabled``, site.yml leaves its template hosts alone (one meta step
each, end_host, which the recap does not count; no nginx_web run), bakes nothing when nothing
changed and lists the hosts behind the pool's current version; once ``template.enabled`` is
false, site.yml provisions those same hosts with nginx_web like any other host, and they stay
members of the pool serving the new configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from helpers.heal import deployments, events, instances, pool, server_status
from helpers.procs import wait_until
from helpers.site import Deployment, recap

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def index_file(dep: Deployment) -> Path:
    return dep.root / "templates" / "web" / "index.json"


def versions(dep: Deployment) -> dict[str, object]:
    return {i.name: i.extra.get("template") for i in instances(dep, "local") if i.alive}


def bakes(dep: Deployment) -> list[dict[str, object]]:
    return [e for e in events(dep) if e["action"] in ("bake", "bake_failed")]


def web_recap(output: str, hosts: Iterable[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters of ``hosts``, and of any other host that is neither the balancer nor
    a build host. A host whose only step was a meta task (``end_host``) has no line in the recap
    (Ansible does not count meta tasks): it counts as ok=0 changed=0."""
    found = recap(output)
    web = {h: c for h, c in found.items() if h != "localhost" and not h.startswith("hapool-bake-")}
    idle = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0}
    return {**dict.fromkeys(hosts, idle), **web}


def flat(output: str) -> str:
    return " ".join(output.split())  # the callback wraps long lines


def ok(run: object) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]  # type: ignore[attr-defined]


def test_template_hosts_left_alone_while_enabled_and_provisioned_once_disabled(
    deploy: Callable[..., Deployment],
) -> None:
    dep = deploy("local", template={"enabled": True})
    first = json.loads(index_file(dep).read_text())["current"]
    hosts = versions(dep)
    assert len(hosts) == 2 and set(hosts.values()) == {first}, hosts
    assert len(bakes(dep)) == 1

    # An unchanged site.yml: nothing baked, the index untouched, no nginx_web run on the template
    # hosts (absent from the recap: one end_host step each, nothing changed), and the report
    # says that every host runs the current version.
    before = index_file(dep).read_bytes(), index_file(dep).stat().st_mtime_ns
    again = dep.play("site.yml")
    ok(again)
    web = web_recap(again.stdout, hosts)
    assert set(web) == set(hosts), web
    for host, counters in web.items():
        assert counters["changed"] == 0 and counters["failed"] == 0, (host, counters)
        assert counters["ok"] + counters["skipped"] == 0, (host, counters)  # its one step: end_host
    assert "nginx_web : " not in again.stdout
    assert "hapool-bake-web" not in again.stdout
    assert len(bakes(dep)) == 1
    assert (index_file(dep).read_bytes(), index_file(dep).stat().st_mtime_ns) == before
    assert f"web: template {first}; every host runs it" in flat(again.stdout)
    assert versions(dep) == hosts

    # A changed nginx_web variable, templates still enabled: a new version is baked, the hosts
    # launched from the first one stay as they are and are listed as behind it.
    two = "Release two on {{ nginx_web_hostname }}\n"
    changed = dep.play("site.yml", nginx_web_index_content=two)
    ok(changed)
    second = json.loads(index_file(dep).read_text())["current"]
    assert second != first and [b["version"] for b in bakes(dep)] == [first, second]
    assert versions(dep) == hosts
    web = web_recap(changed.stdout, hosts)  # nginx_web ran on the build host only
    assert set(web) == set(hosts), web
    assert all(c["changed"] == 0 and c["ok"] + c["skipped"] == 0 for c in web.values()), web
    report = flat(changed.stdout)
    behind = ", ".join(f"{name} ({first})" for name in sorted(hosts))
    assert f"web: template {second}; 2 host(s) behind: {behind}" in report, report[-3000:]
    assert "updated only by replacement" in report and "instance refresh" in report
    assert all(body.startswith("Hello ") for body in dep.hosts_answering(2))

    # Templates disabled, with another nginx_web variable: site.yml bakes nothing and provisions
    # the template hosts with nginx_web like bare ones; the same hosts serve the new page and stay
    # members of the pool (UP in HAProxy).
    dep.extra_vars["hapool_pools"] = [pool("local", template={"enabled": False})]
    three = "Release three on {{ nginx_web_hostname }}\n"
    disabled = dep.play("site.yml", nginx_web_index_content=three)
    ok(disabled)
    assert len(bakes(dep)) == 2 and "hapool-bake-web" not in disabled.stdout
    web = web_recap(disabled.stdout, hosts)
    assert set(web) == set(hosts), web
    assert all(c["changed"] > 0 and c["failed"] == 0 for c in web.values()), web
    assert "nginx_web : " in disabled.stdout
    assert versions(dep) == hosts  # the same instances: provisioned in place, not replaced
    assert dep.hosts_answering(2) == {f"Release three on {name}" for name in hosts}
    wait_until(
        lambda: server_status(dep, "local") == dict.fromkeys(hosts, "UP"),
        30,
        f"{sorted(hosts)} UP in HAProxy, and no other server",
    )
    assert "host(s) behind" not in flat(disabled.stdout)  # no template: nothing is behind
