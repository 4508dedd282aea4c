"""Launch templates end to end, local and docker (real nginx, HAProxy, Docker engine, Ansible).

A pool with ``template.enabled``: site.yml bakes its template (a local template tree, a docker image
``hapool/web:<version>``), checks it on a throw-away host, and launches every host from it, so no
host is provisioned; an unchanged site.yml bakes nothing; heal.yml replaces a killed host from the
current version; a changed nginx_web variable makes a new version that the next launch uses while
the older hosts stay behind; a bake whose nginx configuration nginx -t refuses is recorded as
failed, fails the run and leaves the current version and the serving hosts alone.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.heal import deployments, events, instances, kill_hard, pool
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def index(dep: Deployment) -> dict[str, object]:
    return json.loads((dep.root / "templates" / "web" / "index.json").read_text())


def versions(dep: Deployment, provider: str) -> dict[str, object]:
    return {i.name: i.extra.get("template") for i in instances(dep, provider) if i.alive}


def actions(dep: Deployment, action: str) -> list[dict[str, object]]:
    return [e for e in events(dep) if e["action"] == action]


def ok(run: object) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", ["local", "docker"])
def test_bake_launch_reuse_heal_new_version_and_failed_bake(
    deploy: Callable[..., Deployment], provider: str
) -> None:
    dep = deploy(provider, template={"enabled": True})

    # site.yml baked one version, checked it, and launched every host from it
    first = index(dep)["current"]
    assert isinstance(first, str) and len(first) == 12
    bakes = actions(dep, "bake")
    assert [b["version"] for b in bakes] == [first], bakes
    assert bakes[0]["checked"] and bakes[0]["duration"] > 0
    assert set(versions(dep, provider).values()) == {first}
    pages = dep.hosts_answering(2)
    assert pages == {f"Hello {name}!" for name in versions(dep, provider)}, pages
    if provider == "docker":
        assert all(i.extra["image"] == f"hapool/web:{first}" for i in instances(dep, provider))

    # an unchanged site.yml reuses the version: no bake, no build host
    again = dep.play("site.yml")
    ok(again)
    assert f"template {first} - reuse" in " ".join(again.stdout.split())  # the callback wraps long lines
    assert "hapool-bake-web" not in again.stdout
    assert len(actions(dep, "bake")) == 1

    # heal.yml replaces a killed host with one launched from the current version, not provisioned
    victim = next(i for i in instances(dep, provider) if i.alive)
    kill_hard(victim)
    heal = dep.play("heal.yml")
    ok(heal)
    replaced = actions(dep, "replace")
    assert [e["instance"] for e in replaced] == [victim.name] and replaced[0]["serving"] is True, replaced
    now = versions(dep, provider)
    assert replaced[0]["replacement"] in now and now[replaced[0]["replacement"]] == first
    assert "nginx_web : " not in heal.stdout  # no role task ran: the replacement was not provisioned
    # registered in the balancer's runtime right after its launch: UP before the run's re-render
    assert replaced[0]["template"] == first
    assert 0 < replaced[0]["serving_seconds"] < replaced[0]["duration"], replaced

    # scale.yml launches from the current version too, registered at runtime, not provisioned
    grown = dep.play("scale.yml", hapool_pools=[pool(provider, template={"enabled": True}, desired=3)])
    ok(grown)
    launched = actions(dep, "scale_launch")
    assert len(launched) == 1 and launched[0]["template"] == first, launched
    assert 0 < launched[0]["serving_seconds"] < launched[0]["duration"], launched
    assert "nginx_web : " not in grown.stdout
    assert set(versions(dep, provider).values()) == {first} and len(versions(dep, provider)) == 3

    # a changed nginx_web variable makes a new version; the next launch runs it, the others stay behind
    changed = dep.play("site.yml", nginx_web_index_content="Release two on {{ nginx_web_hostname }}\n")
    ok(changed)
    second = index(dep)["current"]
    assert second != first and [b["version"] for b in actions(dep, "bake")] == [first, second]
    assert set(versions(dep, provider).values()) == {first}  # launched before: behind, untouched
    victim = next(i for i in instances(dep, provider) if i.alive)
    kill_hard(victim)
    ok(dep.play("heal.yml", nginx_web_index_content="Release two on {{ nginx_web_hostname }}\n"))
    now = versions(dep, provider)
    newest = [name for name, version in now.items() if version == second]
    assert len(newest) == 1, now
    assert f"Release two on {newest[0]}" in dep.hosts_answering(2, tries=60)

    # a bake that nginx -t refuses: recorded, the run fails, current and the serving hosts stay
    broken = dep.play("site.yml", nginx_web_worker_connections="many")
    assert broken.returncode != 0
    assert "bake failed" in broken.stdout + broken.stderr
    failed = actions(dep, "bake_failed")
    assert len(failed) == 1 and failed[0]["current"] == second, failed
    record = next(v for v in index(dep)["versions"] if v["version"] == failed[0]["version"])  # type: ignore[union-attr]
    assert record["usable"] is False and record["reason"]
    assert index(dep)["current"] == second
    assert len(dep.hosts_answering(2)) >= 2
    if provider == "docker":
        scope = (dep.root / "docker" / "docker-scope").read_text().strip()
        left = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"name=hapool-bake-{scope}-", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert left == [], "a failed bake left its build container"
    else:
        assert not list((dep.root / "templates" / "web").glob("build-*")), (
            "a failed bake left its build directory"
        )

    # teardown.yml removes what site.yml made, the baked versions too
    ok(dep.play("teardown.yml"))
    assert not (dep.root / "templates" / "web" / "index.json").exists()
    if provider == "docker":
        images = subprocess.run(
            ["docker", "images", "-q", "hapool/web"], capture_output=True, text=True, check=True
        )
        left_images = {
            ref
            for ref in (f"hapool/web:{first}", f"hapool/web:{second}")
            if subprocess.run(
                ["docker", "image", "inspect", ref], capture_output=True, check=False
            ).returncode
            == 0
        }
        assert left_images == set(), (left_images, images.stdout)
    else:
        assert not (dep.root / "templates" / "web" / str(first)).exists()
        assert not (dep.root / "templates" / "web" / str(second)).exists()
