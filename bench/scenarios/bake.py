"""Bake of a new launch template version, the same bake.yml again with nothing changed, and a
launch from the new version -> UP in HAProxy (issue 16: a bake in 60 s or less on docker, a
second run in seconds).

Per provider (local, docker), one pool of 2 hosts with `template: {enabled: true}` (`site.yml`
bakes the first version and launches the hosts from it; `flap_window 0`). Then ``repeat``
times, each repetition a new release of the page (`nginx_web_index_content` is
"Hello <host>! (bench release N)", so the template's version changes):

* **new version**: `playbooks/bake.yml` with the changed variable - its wall time (a whole
  `ansible-playbook` run: start, validation, pool lock, plan, build host, nginx_web on it, the
  artefact, its check on a throw-away host, the record and the clean-up of old versions) and
  the bake's own duration (the `bake` event: the build host made -> the version recorded);
* **unchanged**: the same `bake.yml` run again - its wall time, after checking that nothing
  was baked: same current version, same index record, no new `bake` event, the artefacts
  untouched (docker: the same image ids; local: the same version trees);
* **launch -> UP**: a host running an older version is killed hard and `heal.yml` replaces it
  from the new version (registered in the balancer's runtime at once): the `replace` event's
  `serving_seconds` (start of the replacement -> HAProxy reports it UP); the new host must
  serve the new page.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

from helpers.chaos import view
from helpers.heal import deployments, events, instances, kill_hard
from helpers.procs import wait_until
from helpers.site import Deployment

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "bake"
TITLE = "Launch templates: bake of a new version, an unchanged bake.yml, a launch from it → UP"
DESIRED = 2
GOAL_S = 60.0  # issue 16: a bake of a new version within a minute on docker
RELEASE = "Hello {{{{ nginx_web_hostname }}}}! (bench release {n})\n"
VERSION_RE = re.compile(r"^[0-9a-f]{12}$")


def _index(dep: Deployment) -> dict[str, Any]:
    path = dep.root / "templates" / "web" / "index.json"
    if not path.exists():
        raise BenchError(f"no template index at {path}: was the pool's template baked?")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _record(index: dict[str, Any], version: str) -> dict[str, Any]:
    for record in index.get("versions") or []:
        if record.get("version") == version:
            return dict(record)
    raise BenchError(f"version {version} is not in the pool's template index: {index}")


def _current(dep: Deployment) -> str:
    current = _index(dep).get("current")
    if not isinstance(current, str) or not VERSION_RE.match(current):
        raise BenchError(f"the pool has no usable current template version: {current!r}")
    return current


def _actions(dep: Deployment, action: str) -> list[dict[str, Any]]:
    return [dict(e) for e in events(dep) if e.get("action") == action]


def artefacts(dep: Deployment, provider: str) -> dict[str, str]:
    """Every artefact of the deployment's pool and its identity: docker, image tag -> image id
    (only the deployment's scope); local, version tree -> inode and modification time."""
    if provider == "docker":
        scope = (dep.root / "docker" / "docker-scope").read_text().strip()
        out = subprocess.run(
            ["docker", "image", "ls", "--no-trunc", "--format", "{{.Tag}} {{.ID}}", "hapool/web"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            raise BenchError(f"docker image ls failed: {out.stderr.strip()}")
        pairs = (line.split() for line in out.stdout.splitlines() if line.strip())
        return {tag: image for tag, image in pairs if tag.endswith(f"-{scope}")}
    found = {}
    for entry in (dep.root / "templates" / "web").iterdir():
        if entry.is_dir() and VERSION_RE.match(entry.name):
            stat = entry.stat()
            found[entry.name] = f"{stat.st_ino}:{stat.st_mtime_ns}"
    return found


def timed_play(dep: Deployment, playbook: str, what: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    run = dep.play(playbook)
    seconds = time.monotonic() - t0
    if run.returncode != 0:
        raise BenchError(
            f"{playbook} ({what}) exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-1500:]}"
        )
    return seconds, run


def whole(dep: Deployment, provider: str, timeout: float = 240) -> None:
    wait_until(
        lambda: view(dep, provider).converged_to == DESIRED,
        timeout,
        f"{DESIRED} live hosts, all UP ({provider})",
        interval=0.5,
    )


def new_page(dep: Deployment, marker: str, deadline_s: float = 30) -> bool:
    """Whether a request through the balancer gets the page of the new release (round robin)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, body = dep.get()
        if status == 200 and marker in body:
            return True
        time.sleep(0.1)
    return False


def one_release(dep: Deployment, provider: str, n: int) -> dict[str, Any]:
    """Release ``n``: a new version baked by bake.yml, the same run again, a launch from it."""
    before = _current(dep)
    bakes_before = len(_actions(dep, "bake"))
    dep.extra_vars["nginx_web_index_content"] = RELEASE.format(n=n)

    # a new version: bake.yml with the changed page
    bake_s, _ = timed_play(dep, "bake.yml", f"release {n}: a new version")
    version = _current(dep)
    if version == before:
        raise BenchError(
            f"release {n}: bake.yml left the current version at {before}: the changed "
            "nginx_web_index_content did not make a new version"
        )
    baked = [e for e in _actions(dep, "bake")[bakes_before:] if e.get("version") == version]
    if len(baked) != 1:
        raise BenchError(f"release {n}: expected one bake event for {version}, got {baked}")
    record = _record(_index(dep), version)
    kept = artefacts(dep, provider)

    # the same bake.yml again, nothing changed: the version is reused, nothing is rebuilt
    again_s, again = timed_play(dep, "bake.yml", f"release {n}: unchanged")
    problems = []
    if _current(dep) != version:
        problems.append(f"current version {_current(dep)} instead of {version}")
    if _record(_index(dep), version) != record:
        problems.append(f"the index record changed: {record} -> {_record(_index(dep), version)}")
    if len(_actions(dep, "bake")) != bakes_before + 1:
        problems.append(f"a new bake event: {_actions(dep, 'bake')[bakes_before + 1 :]}")
    if artefacts(dep, provider) != kept:
        problems.append(f"the artefacts changed: {kept} -> {artefacts(dep, provider)}")
    if f"template {version} - reuse" not in " ".join(again.stdout.split()):
        problems.append("its plan does not say 'reuse'")
    if "hapool-bake-web" in again.stdout:
        problems.append("it made a build host")
    if problems:
        raise BenchError(f"release {n}: the unchanged bake.yml rebuilt: " + "; ".join(problems))

    # a launch from the new version: an older host killed, heal.yml replaces it from the template
    whole(dep, provider)
    older = sorted(
        (i for i in instances(dep, provider) if i.alive and i.extra.get("template") != version),
        key=lambda i: i.name,
    )
    if not older:
        raise BenchError(f"release {n}: no host runs an older version than {version}")
    victim = older[0]
    kill_hard(victim)
    heal_s, _ = timed_play(dep, "heal.yml", f"release {n}: replace {victim.name}")
    replaced = [e for e in _actions(dep, "replace") if e.get("instance") == victim.name]
    if len(replaced) != 1 or replaced[0].get("template") != version:
        raise BenchError(
            f"release {n}: expected one replace event of {victim.name} from {version}, got {replaced}"
        )
    serving = replaced[0].get("serving_seconds")
    whole(dep, provider)
    marker = f"(bench release {n})"
    if not new_page(dep, marker):
        raise BenchError(f"release {n}: the host launched from {version} does not serve {marker!r}")
    return {
        "release": n,
        "version": version,
        "previous": before,
        "artifact": record.get("artifact"),
        "image_id": kept.get(str(record.get("artifact", "")).rpartition(":")[2])
        if provider == "docker"
        else None,
        "new_bake_s": round(bake_s, 3),
        "bake_event_s": float(baked[0]["duration"]),
        "unchanged_bake_s": round(again_s, 3),
        "reused": True,
        "replacement": replaced[0].get("replacement"),
        "launch_up_s": None if serving is None else float(serving),
        "replace_s": float(replaced[0]["duration"]),
        "heal_s": round(heal_s, 3),
    }


def run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"providers": {}, "repeat": ctx.repeat, "desired": DESIRED, "goal_s": GOAL_S}
    for provider in ctx.providers:
        made = deployments(ctx.dir(f"bake-{provider}"))
        make = next(made)
        try:
            t0 = time.monotonic()
            dep = make(provider, desired=DESIRED, max=3, flap_window=0, template={"enabled": True})
            site_s = time.monotonic() - t0
            first = _actions(dep, "bake")
            if len(first) != 1:
                raise BenchError(f"site.yml should have baked one version, its bake events: {first}")
            ctx.log(
                f"bake/{provider}: site.yml {site_s:.0f} s (first bake {float(first[0]['duration']):.1f} s)"
            )
            releases = []
            for n in range(1, ctx.repeat + 1):
                r = one_release(dep, provider, n)
                ctx.log(
                    f"bake/{provider} #{n}: {r['previous']} -> {r['version']}: bake.yml "
                    f"{r['new_bake_s']:.1f} s (bake {r['bake_event_s']:.1f} s), unchanged "
                    f"{r['unchanged_bake_s']:.1f} s (reused), launch -> UP {r['launch_up_s']} s "
                    f"(heal.yml {r['heal_s']:.1f} s)"
                )
                releases.append(r)
            out["providers"][provider] = {
                "site_s": round(site_s, 3),
                "first_bake_s": float(first[0]["duration"]),
                "releases": releases,
                "new_bake_s": summary([r["new_bake_s"] for r in releases]),
                "bake_event_s": summary([r["bake_event_s"] for r in releases]),
                "unchanged_bake_s": summary([r["unchanged_bake_s"] for r in releases]),
                "launch_up_s": summary([r["launch_up_s"] for r in releases]),
                "replace_s": summary([r["replace_s"] for r in releases]),
                "heal_s": summary([r["heal_s"] for r in releases]),
            }
        finally:
            for _ in made:  # teardown.yml, then destroy whatever it left
                pass
    return out


def markdown(r: dict[str, Any]) -> str:
    intro = " ".join(
        [
            f"Per provider, one pool of {r['desired']} hosts with `template: {{enabled: true}}` (site.yml",
            "baked its first version). Each repetition is a new release of the page",
            '(`nginx_web_index_content` "Hello <host>! (bench release N)", so a new template version):',
            "**new version** = wall time of `playbooks/bake.yml` (the whole `ansible-playbook` run: lock,",
            "plan, build host, nginx_web on it, artefact - a docker image or a local tree -, its check on",
            "a throw-away host, record, old versions removed); **bake** = the bake's own duration (the",
            "`bake` event: build host made → version recorded); **unchanged** = the same bake.yml again",
            "right after, checked to rebuild nothing (same version and index record, no `bake` event,",
            "same docker image ids / version trees); **launch → UP** = a host of an older version killed",
            "hard, `heal.yml` replaces it from the new version, registered in HAProxy's runtime at once:",
            "the `replace` event's start of the replacement → HAProxy reports it UP (to within a second:",
            "HAProxy's `lastchg` has whole seconds), and the heal.yml run's wall time; the new host then",
            f"serves the new page. Median (range) of {r['repeat']} releases per row. Goal (issue 16):",
            f"a bake of a new version within {r['goal_s']:.0f} s on docker, an unchanged run in seconds.",
        ]
    )
    lines = [
        intro,
        "",
        "| provider | new version: bake.yml | of which the bake | unchanged: bake.yml | launch → UP "
        "| heal.yml (kill → replaced) | first bake (site.yml) |",
        "|---|---|---|---|---|---|---|",
    ]
    for provider, m in r["providers"].items():
        lines.append(
            f"| {provider} | **{fmt_summary(m['new_bake_s'], 's')}** | {fmt_summary(m['bake_event_s'], 's')} "
            f"| **{fmt_summary(m['unchanged_bake_s'], 's')}** | {fmt_summary(m['launch_up_s'], 's')} "
            f"| {fmt_summary(m['heal_s'], 's')} | {m['first_bake_s']:.1f} s |"
        )
    docker = (r["providers"].get("docker") or {}).get("new_bake_s", {}).get("max")
    if docker is not None:
        verdict = "within" if docker <= r["goal_s"] else "over"
        lines += [
            "",
            f"Docker: the slowest new-version bake.yml run took {docker:.1f} s, {verdict} the "
            f"{r['goal_s']:.0f} s goal.",
        ]
    return "\n".join(lines)
