"""What every provider whose hosts are Docker containers shares (the docker provider, the vagrant
provider's docker backend, and any further engine): the Docker SDK import, a container's CPU
counter (its cgroup, else the engine's stats API), and whether its main process is stopped.

The SDK is imported when first needed (:func:`import_docker_sdk`), never at module import.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ProviderError, ProviderUnavailableError
from .procfs import pid_stopped

#: The pools' default image (hapool never pulls it: scripts/build-base-image.sh builds it) and
#: the user bridge network the containers join.
DEFAULT_IMAGE = "hapool/base:bookworm"
DEFAULT_NETWORK = "hapool"

# --- CPU usage -------------------------------------------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"
CONTAINER_ID_RE = re.compile(r"^[0-9a-f]{64}$")
STATS_WORKERS = 8  # engine stats calls made at once (each may wait for the engine's 1-s tick)


def _cgroup_dirs(container_id: str) -> list[str]:
    """Where the engine puts a container's cgroup: the cgroupfs driver, then the systemd one."""
    return [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]


def parse_cgroup_v2_usage(text: str) -> float | None:
    """Seconds from a cgroup v2 ``cpu.stat`` (its ``usage_usec`` line); ``None`` if absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def cgroup_cpu_seconds(container_id: str, root: str | os.PathLike[str] | None = None) -> float | None:
    """CPU seconds of a container from its cgroup under ``root`` (default :data:`CGROUP_ROOT`,
    looked up at call time), or ``None`` when no cgroup of that (full, 64-hex) id is readable
    here (a remote engine, another layout, a container that is gone).

    cgroup v1 first (``<root>/cpuacct/.../cpuacct.usage``, ns — also under ``cpu,cpuacct``),
    then v2 (``<root>/.../cpu.stat`` ``usage_usec``; ``<root>/unified/...`` on hybrid hosts).
    The full id makes a stranger's cgroup impossible to hit.
    """
    if not CONTAINER_ID_RE.match(container_id):
        return None
    base = pathlib.Path(CGROUP_ROOT if root is None else root)
    dirs = _cgroup_dirs(container_id)
    for controller in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
        for d in dirs:
            try:
                text = (base / controller / d / "cpuacct.usage").read_text(encoding="ascii").strip()
            except (OSError, UnicodeError):
                continue
            if text.isdigit():
                return int(text) / 1e9
    for v2 in (base, base / "unified"):
        for d in dirs:
            try:
                seconds = parse_cgroup_v2_usage((v2 / d / "cpu.stat").read_text(encoding="ascii"))
            except (OSError, UnicodeError):
                continue
            if seconds is not None:
                return seconds
    return None


def stats_cpu_seconds(stats: Mapping[str, Any]) -> float | None:
    """Seconds from the engine's stats JSON (``cpu_stats.cpu_usage.total_usage``, ns); ``None``
    for a container that does not run (the engine then answers zeros read at year 1)."""
    if str(stats.get("read", "")).startswith("0001-"):
        return None
    try:
        total = stats["cpu_stats"]["cpu_usage"]["total_usage"]
    except (KeyError, TypeError):
        return None
    if isinstance(total, bool) or not isinstance(total, int | float):
        return None
    return float(total) / 1e9


def engine_cpu_seconds(sdk: Any, client: Any, container_id: str) -> float | None:
    """Seconds from the engine's stats API (one_shot: no second sample for ``precpu``).
    ``None`` if the container is gone; other engine errors raise :class:`ProviderError`."""
    try:
        stats = client.api.stats(container_id, stream=False, one_shot=True)
    except sdk.errors.NotFound:
        return None
    except sdk.errors.APIError as exc:
        raise ProviderError(
            f"Docker engine refused the stats of container {container_id[:12]}: "
            f"{getattr(exc, 'explanation', None) or exc}"
        ) from exc
    except Exception as exc:
        raise ProviderUnavailableError(f"lost the Docker engine reading container stats: {exc}") from exc
    return stats_cpu_seconds(stats) if isinstance(stats, Mapping) else None


def containers_cpu_seconds(
    container_ids: Mapping[str, str],
    stats: Callable[[str], float | None],
    cgroup_root: str | os.PathLike[str] | None = None,
) -> dict[str, float | None]:
    """CPU seconds of running containers, ``{instance name: container id}`` → ``{name: seconds}``.

    The cgroup counter when readable here (:func:`cgroup_cpu_seconds`, fast), else
    ``stats(container_id)`` — the engine's API — for the rest, a few at a time.
    """
    result: dict[str, float | None] = {}
    fallback: dict[str, str] = {}
    for name, cid in container_ids.items():
        result[name] = cgroup_cpu_seconds(cid, cgroup_root)
        if result[name] is None:
            fallback[name] = cid
    if len(fallback) == 1:
        ((name, cid),) = fallback.items()
        result[name] = stats(cid)
    elif fallback:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(STATS_WORKERS, len(fallback))) as pool:
            futures = {name: pool.submit(stats, cid) for name, cid in fallback.items()}
            for name, future in futures.items():
                result[name] = future.result()
    return result


def main_process_stopped(container_id: str, pid: int, proc: str = "/proc") -> bool:
    """The container's main process (``State.Pid``) is stopped (SIGSTOP inside the container:
    a hung host), as ``/proc`` on this machine shows it. Only when that pid's cgroup names the
    container: an engine on another machine (``base_url``, ``DOCKER_HOST``) gives a pid of its
    own, which is not this machine's process; then False."""
    if pid <= 0 or not container_id:
        return False
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            if container_id not in fh.read():
                return False
    except OSError:
        return False
    return pid_stopped(pid, proc)


def import_docker_sdk() -> Any:
    """The ``docker`` Python SDK, imported now; :class:`ProviderUnavailableError` without it."""
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 - the provider's own dependency
    except ImportError as exc:
        raise ProviderUnavailableError(
            "the docker provider needs the Python Docker SDK in the interpreter that runs it "
            f"({exc}); install it with 'pip install docker' (requirements/runtime.txt pins it)"
        ) from exc
    return docker
