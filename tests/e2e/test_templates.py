"""Launch templates end to end, local and docker (real nginx, HAProxy, Docker engine, Ansible).

A pool with ``template.enabled``: site.yml bakes its template (a local template tree, a docker image
``hapool/web:<version>-<scope>``, the deployment's docker scope), checks it on a throw-away host,
and launches every host from it, so no host is provisioned; an unchanged site.yml bakes nothing;
heal.yml replaces a killed host from the current version; a changed nginx_web variable makes a new
version that the next launch uses while the older hosts stay behind; a bake whose variables the
role's argument_specs refuse, and one whose nginx configuration nginx -t refuses, are recorded as
failed, fail the run and leave the current version and the serving hosts alone. A version whose
artefact was deleted under a running pool (`docker image rm -f`, `rm -rf` of the tree) makes
pool_instance fail saying to bake again; the next bake.yml bakes it again (sweeping what dead bakes
left) and heal.yml launches from it. A build container removed in the middle of the role (docker) is
a failed bake, recorded, with the pool lock given back and nothing left behind. A vagrant pool
(docker backend) bakes a docker image on the same engine and its machines run it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.heal import deployments, events, instances, kill_hard, pool
from helpers.modules import run_module
from helpers.site import BIN, ROOT, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def image(dep: Deployment, version: object) -> str:
    """The docker image of a baked version: tagged with the deployment's docker scope."""
    scope = (dep.root / "docker" / "docker-scope").read_text().strip()
    return f"hapool/web:{version}-{scope}"


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
        assert all(i.extra["image"] == image(dep, first) for i in instances(dep, provider))

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
    assert 0 <= replaced[0]["serving_seconds"] < replaced[0]["duration"], replaced

    # scale.yml launches from the current version too, registered at runtime, not provisioned
    grown = dep.play("scale.yml", hapool_pools=[pool(provider, template={"enabled": True}, desired=3)])
    ok(grown)
    launched = actions(dep, "scale_launch")
    assert len(launched) == 1 and launched[0]["template"] == first, launched
    assert 0 <= launched[0]["serving_seconds"] < launched[0]["duration"], launched
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

    # a bake whose variables the role's argument_specs refuse: recorded, the run fails, current
    # and the serving hosts stay
    broken = dep.play("site.yml", nginx_web_worker_connections="many")
    assert broken.returncode != 0
    assert "bake failed" in broken.stdout + broken.stderr
    failed = actions(dep, "bake_failed")
    assert len(failed) == 1 and failed[0]["current"] == second, failed
    record = next(v for v in index(dep)["versions"] if v["version"] == failed[0]["version"])  # type: ignore[union-attr]
    assert record["usable"] is False and record["reason"]
    assert index(dep)["current"] == second
    assert len(dep.hosts_answering(2)) >= 2

    # one that passes argument_specs (worker_processes is a string) but renders a configuration
    # nginx -t refuses on the build host ("worker_processes many;"): the same
    refused = dep.play("site.yml", nginx_web_worker_processes="many")
    assert refused.returncode != 0 and "bake failed" in refused.stdout + refused.stderr
    failed = actions(dep, "bake_failed")
    assert len(failed) == 2 and failed[1]["current"] == second, failed
    assert "Write nginx.conf (validated with nginx -t" in str(failed[1]["reason"]), failed[1]
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

    if provider == "docker":  # a base image's entry point cannot wrap the start script
        entrypoint = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image(dep, second)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert entrypoint in ("null", "[]"), entrypoint

    # teardown.yml removes what site.yml made, the baked versions too
    ok(dep.play("teardown.yml"))
    assert not (dep.root / "templates" / "web" / "index.json").exists()
    if provider == "docker":
        images = subprocess.run(
            ["docker", "images", "-q", "hapool/web"], capture_output=True, text=True, check=True
        )
        left_images = {
            ref
            for ref in (image(dep, first), image(dep, second))
            if subprocess.run(
                ["docker", "image", "inspect", ref], capture_output=True, check=False
            ).returncode
            == 0
        }
        assert left_images == set(), (left_images, images.stdout)
    else:
        assert not (dep.root / "templates" / "web" / str(first)).exists()
        assert not (dep.root / "templates" / "web" / str(second)).exists()


def docker_scope(dep: Deployment) -> str:
    return (dep.root / "docker" / "docker-scope").read_text().strip()


def build_containers(dep: Deployment) -> list[str]:
    return subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"name=hapool-bake-{docker_scope(dep)}-",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("provider", ["local", "docker"])
def test_a_deleted_artefact_is_baked_again_and_heal_launches_from_it(
    deploy: Callable[..., Deployment], provider: str
) -> None:
    # A version of its own: docker images are named hapool/<pool>:<version> on the shared engine,
    # and deleting the one a parallel test's deployment runs would make it bake again.
    template = {"enabled": True, "variables": {"nginx_web_json_path": f"/hello-{secrets.token_hex(4)}.json"}}
    dep = deploy(provider, template=template)
    first = str(index(dep)["current"])
    entry = pool(provider, template=template)

    # the artefact goes under a running pool (its hosts keep running)
    if provider == "docker":
        subprocess.run(["docker", "image", "rm", "-f", image(dep, first)], capture_output=True, check=True)
    else:
        shutil.rmtree(dep.root / "templates" / "web" / first)
    assert len(dep.hosts_answering(2)) == 2

    # a launch from it fails saying what to do, and leaves no host
    before = {i.name for i in instances(dep, provider)}
    launch = run_module("pool_instance", {"pool": entry, "state_dir": str(dep.root)})
    assert launch["failed"] and "(deleted?)" in launch["msg"], launch
    assert (
        "bake the pool's template again - ansible-playbook playbooks/bake.yml (or site.yml)" in launch["msg"]
    )
    assert {i.name for i in instances(dep, provider)} == before

    # what dead bakes left (their run gone): swept by the next bake
    tdir = dep.root / "templates" / "web"
    dead_build = tdir / f"build-{first}-{dead_pid()}-1"
    (dead_build / "conf").mkdir(parents=True)
    if provider == "docker":
        orphan = f"hapool-bake-{docker_scope(dep)}-web-{'0' * 12}"
        subprocess.run(
            ["docker", "create", "--name", orphan, "hapool/base:bookworm"], capture_output=True, check=True
        )
        assert orphan in build_containers(dep)

    # bake.yml bakes the same version again, saying why
    again = dep.play("bake.yml")
    ok(again)
    bakes = actions(dep, "bake")
    assert [b["version"] for b in bakes] == [first, first], bakes
    assert f"the artefact {image(dep, first) if provider == 'docker' else tdir / first}" in str(
        bakes[1]["reason"]
    )
    assert str(bakes[1]["reason"]).endswith("is missing"), bakes[1]
    assert index(dep)["current"] == first
    assert not dead_build.exists()
    if provider == "docker":
        assert build_containers(dep) == []
        assert (
            subprocess.run(
                ["docker", "image", "inspect", image(dep, first)], capture_output=True, check=False
            ).returncode
            == 0
        )
    else:
        assert (tdir / first / "conf" / "nginx.conf").is_file()
    # nothing to bake now
    assert "reuse" in " ".join(dep.play("bake.yml").stdout.split())

    # heal.yml replaces a killed host from it
    victim = next(i for i in instances(dep, provider) if i.alive)
    kill_hard(victim)
    ok(dep.play("heal.yml"))
    replaced = actions(dep, "replace")
    assert [e["instance"] for e in replaced] == [victim.name], replaced
    assert versions(dep, provider)[str(replaced[0]["replacement"])] == first
    assert len(dep.hosts_answering(2, tries=60)) == 2


def test_a_build_container_removed_mid_bake_is_a_recorded_failure_and_the_lock_is_given_back(
    deploy: Callable[..., Deployment],
) -> None:
    dep = deploy("docker", template={"enabled": True})
    first = str(index(dep)["current"])
    extra = {**dep.extra_vars, "nginx_web_index_content": "Release two on {{ nginx_web_hostname }}\n"}
    command = [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / "bake.yml"),
               "-e", json.dumps(extra)]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, env=dep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as run:
        removed = None
        deadline = time.monotonic() + 240
        while removed is None and run.poll() is None and time.monotonic() < deadline:
            for name in build_containers(dep):
                subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
                removed = name
            time.sleep(0.1)
        output, _ = run.communicate(timeout=600)
    assert removed is not None, "the build container was never seen:\n" + output[-4000:]
    assert run.returncode != 0 and "bake failed" in output, output[-6000:]
    failed = actions(dep, "bake_failed")
    assert len(failed) == 1 and failed[0]["current"] == first, failed
    assert index(dep)["current"] == first
    record = next(v for v in index(dep)["versions"] if v["version"] == failed[0]["version"])  # type: ignore[union-attr]
    assert record["usable"] is False and "could not be reached" in record["reason"], record
    # nothing left behind, and the pool lock was given back: the next run is not "locked"
    assert build_containers(dep) == []
    assert not list((dep.root / "templates" / "web").glob("build-*"))
    heal = dep.play("heal.yml")
    ok(heal)
    assert "locked:" not in heal.stdout, heal.stdout[-3000:]
    assert len(dep.hosts_answering(2)) == 2


def test_two_bakes_at_once_bake_the_new_version_once(deploy: Callable[..., Deployment]) -> None:
    """Two bake.yml runs started together for the same new version: the second waits for the
    pool lock, then finds the version baked and reuses it - one bake, one artefact, no failure.
    Then status.yml with an unreadable template record says so. Local provider, no Docker."""
    dep = deploy("local", template={"enabled": True})
    first = str(index(dep)["current"])
    extra = {**dep.extra_vars, "nginx_web_index_content": "Release two on {{ nginx_web_hostname }}\n"}
    command = [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / "bake.yml"),
               "-e", json.dumps(extra)]  # fmt: skip
    runs = [subprocess.Popen(command, cwd=ROOT, env=dep.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-6000:]
    new = str(index(dep)["current"])
    assert new != first
    baked = [e for e in actions(dep, "bake") if e.get("version") == new]
    assert len(baked) == 1, actions(dep, "bake")
    assert actions(dep, "bake_failed") == []
    reused = [bool(re.search(rf"web: template {new} - reuse ", " ".join(out.split()))) for out in outputs]
    assert sorted(reused) == [False, True], [o[-3000:] for o in outputs]
    usable = [v for v in index(dep)["versions"] if v["version"] == new]  # type: ignore[union-attr]
    assert len(usable) == 1 and usable[0]["usable"] is True, usable
    assert not list((dep.root / "templates" / "web").glob("build-*"))

    # status.yml says so when the pool's template record cannot be read, naming the file
    record = dep.root / "templates" / "web" / "index.json"
    saved = record.read_text()
    record.write_text("{not json")
    try:
        status = dep.play("status.yml")
        ok(status)
        folded = " ".join(status.stdout.split())
        unknown = r"web template unknown: the template index \S*index\.json is not JSON"
        assert re.search(unknown, folded), folded[-3000:]
    finally:
        record.write_text(saved)


def test_an_unreachable_build_host_is_a_recorded_failure_and_the_controller_play_goes_on(
    tmp_path: Path,
) -> None:
    """plays/bake.yml with a build host nothing can reach (ssh to a closed port): its tasks are
    ignored as unreachable, the controller's play still runs - the bake is recorded failed with
    the reason, the build directory removed - instead of the playbook ending there (which left
    the pool lock held and no record). Local provider, no Docker."""
    state = tmp_path / "state"
    entry = pool("local", template={"enabled": True})
    planned = run_module(
        "pool_template",
        {
            "pool": entry,
            "variables": {},
            "role_dir": str(ROOT / "roles" / "nginx_web"),
            "state_dir": str(state),
        },
    )
    assert planned["action"] == "bake" and "build" in planned, planned
    build = planned["build"]
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {"localhost": {"ansible_connection": "local"}},
                    "children": {
                        "hapool_bake": {
                            "hosts": {
                                "hapool-bake-web": {
                                    "ansible_connection": "ssh",
                                    "ansible_host": "127.0.0.1",
                                    "ansible_port": closed,
                                    "hapool_bake_variables": planned["variables"],
                                }
                            }
                        }
                    },
                }
            }
        )
    )
    extra = {
        "hapool_state_root": str(state),
        "_hapool_locked": False,
        "_hapool_bakes": [{"item": entry, "version": planned["version"], "build": build}],
    }
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / "plays" / "bake.yml"),
         "-e", json.dumps(extra)],
        cwd=ROOT, env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert "Commit, check on a throw-away host, record" in output, output[-6000:]  # the controller's play ran
    assert "BAKE FAILED" in output, output[-6000:]
    (record,) = json.loads((state / "templates" / "web" / "index.json").read_text())["versions"]
    assert (record["version"], record["usable"]) == (planned["version"], False)
    assert "could not be reached" in record["reason"], record
    (failed,) = [e for e in map(json.loads, (state / "heal" / "events.jsonl").read_text().splitlines())]
    assert failed["action"] == "bake_failed" and failed["reason"] == record["reason"], failed
    assert not Path(build["dir"]).exists(), "the build directory was left"


@pytest.mark.vagrant
def test_a_vagrant_docker_pool_bakes_an_image_and_its_machines_launch_from_it(
    deploy: Callable[..., Deployment],
) -> None:
    """Vagrant's docker backend: site.yml bakes the pool's template into a docker image (a build
    container on the engine the machines run on, tagged with the deployment's own scope), checks
    it on a throw-away machine, and every machine runs that image with its own start script (no
    provisioning); heal.yml replaces a killed machine from it; teardown.yml deletes the image."""
    dep = deploy("vagrant", template={"enabled": True})
    first = str(index(dep)["current"])
    bakes = actions(dep, "bake")
    assert [b["version"] for b in bakes] == [first] and bakes[0]["checked"], bakes
    scope = (dep.root / "vagrant" / "bake" / "docker-scope").read_text().strip()
    artefact = f"hapool/web:{first}-{scope}"
    machines = json.loads((dep.root / "vagrant" / "machines.json").read_text())["machines"]
    assert len(machines) == 2 and {m["image"] for m in machines.values()} == {artefact}, machines
    assert {m["template"] for m in machines.values()} == {first}
    assert set(versions(dep, "vagrant").values()) == {first}
    labels = subprocess.run(
        ["docker", "inspect", "--format", '{{index .Config.Labels "io.hapool.template"}}',
         *(i.extra["container"] for i in instances(dep, "vagrant"))],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert labels == [first, first], labels
    assert dep.hosts_answering(2) == {f"Hello {name}!" for name in machines}

    victim = next(i for i in instances(dep, "vagrant") if i.alive)
    kill_hard(victim)
    heal = dep.play("heal.yml")
    ok(heal)
    assert "nginx_web : " not in heal.stdout  # launched from the image, not provisioned
    replaced = actions(dep, "replace")
    assert [e["instance"] for e in replaced] == [victim.name] and replaced[0]["serving"] is True, replaced
    assert replaced[0]["template"] == first
    assert versions(dep, "vagrant")[str(replaced[0]["replacement"])] == first
    assert len(dep.hosts_answering(2, tries=60)) == 2

    ok(dep.play("teardown.yml"))
    gone = subprocess.run(["docker", "image", "inspect", artefact], capture_output=True, check=False)
    assert gone.returncode != 0, "teardown.yml left the baked image"
