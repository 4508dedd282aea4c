"""The ``docker`` provider: each instance is a container, driven through the Docker SDK.

Containers are named ``hapool-<pool>-<instance>``, run the pool's image (default the local
base image ``hapool/base:bookworm``, whose CMD runs nginx in the foreground), join the user
bridge network ``hapool`` (created when missing) and carry the labels

    io.hapool.managed=true  io.hapool.provider=docker  io.hapool.pool=<pool>
    io.hapool.instance=<instance>  io.hapool.created=<epoch seconds>  io.hapool.network=<network>
    io.hapool.scope=<scope>  io.hapool.template=<version> (launched from a baked template)

Listing asks the engine for those labels, so any process finds the containers again. The
scope is a random id kept in ``<state_dir>/docker-scope`` (written by the first launch): one
engine can serve several deployments (checkouts, state roots) with the same pool names, and
each lists, counts and destroys only its own containers. The
address is the container's IP on the network, the port 80. Images are never pulled: a
missing image is an :class:`ImageNotFoundError`. The SDK is imported when the provider is
first used, not when this module is imported.

CPU usage (:meth:`DockerProvider.cpu_seconds`, shared with the vagrant provider's docker
backend through :func:`.containers.containers_cpu_seconds`): the container's cgroup counter, read from
``/sys/fs/cgroup`` by container id when the engine runs on this machine (microseconds; cgroup
v1 ``cpuacct.usage`` or v2 ``cpu.stat`` ``usage_usec``, for the ``cgroupfs`` and ``systemd``
cgroup drivers), else the engine's stats API (``stats(stream=False, one_shot=True)`` →
``cpu_stats.cpu_usage.total_usage`` ns). The cgroup file is what the engine's stats read too,
but costs microseconds, where the stats call took up to 1 s per container on Docker 20.10
(its stats collector answers on its 1-s tick, one_shot or not).
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..errors import ImageNotFoundError, OrphanError, ProviderError, ProviderUnavailableError
from . import containers
from .base import DESTROYED, RUNNING, STOPPED, Instance, LaunchSpec, Provider, sort_instances
from .names import instance_name, validate_pool
from .net import wait_tcp
from .state import file_lock

LABEL_MANAGED = "io.hapool.managed"
LABEL_PROVIDER = "io.hapool.provider"
LABEL_POOL = "io.hapool.pool"
LABEL_INSTANCE = "io.hapool.instance"
LABEL_CREATED = "io.hapool.created"
LABEL_NETWORK = "io.hapool.network"
LABEL_SCOPE = "io.hapool.scope"
LABEL_TEMPLATE = "io.hapool.template"
SCOPE_FILE = "docker-scope"

WEB_PORT = 80


def container_name(pool: str, name: str) -> str:
    return f"hapool-{pool}-{name}"


def parse_memory(memory: int | str | None) -> int | str | None:
    """Bytes as an int, or Docker's ``<number>[b|k|m|g]`` string, validated here for a clear error."""
    if memory is None or isinstance(memory, int):
        return memory
    text = str(memory).strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in "bkmg" else (text, "")
    if not number.isdigit():
        raise ProviderError(f"invalid memory limit {memory!r}: use bytes or a number with b, k, m or g")
    return f"{number}{unit}" if unit else int(number)


class DockerProvider(Provider):
    """Containers on a Docker engine (local socket by default, or ``base_url``)."""

    name = "docker"
    OPTIONS: ClassVar[dict[str, str]] = {
        "docker_host": "base_url",
        "network": "network",
        "image": "image",
        "start_timeout": "start_timeout",
    }

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        base_url: str | None = None,
        network: str = containers.DEFAULT_NETWORK,
        image: str = containers.DEFAULT_IMAGE,
        timeout: float = 30.0,
        start_timeout: float = 20.0,
        stop_timeout: int = 10,
        wait_port: bool = True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(state_dir, clock=clock, rng=rng)
        self.base_url = base_url
        self.network = network
        self.image = image
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = int(stop_timeout)
        self.wait_port = wait_port
        self._client: Any = None
        self._sdk: Any = None
        self._scope: str | None = None

    # -- engine

    def _engine_label(self) -> str:
        return self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def client(self) -> Any:
        """The connected ``docker.DockerClient`` (made and pinged on first use)."""
        if self._client is not None:
            return self._client
        docker = self._sdk = containers.import_docker_sdk()
        try:
            if self.base_url:
                client = docker.DockerClient(base_url=self.base_url, timeout=int(self.timeout))
            else:
                client = docker.from_env(timeout=int(self.timeout))
            client.ping()
        except Exception as exc:  # DockerException, requests' ConnectionError, ...
            raise ProviderUnavailableError(
                f"the Docker engine at {self._engine_label()} does not answer: {exc}. "
                "Is dockerd running (scripts/setup.sh starts it) and is base_url / DOCKER_HOST right?"
            ) from exc
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _api_error(self, action: str, exc: Exception) -> ProviderError:
        sdk = self._sdk
        if sdk is not None and isinstance(exc, sdk.errors.APIError):
            explanation = getattr(exc, "explanation", None) or str(exc)
            return ProviderError(f"Docker engine refused to {action}: {explanation}")
        if sdk is not None and isinstance(exc, sdk.errors.DockerException):
            return ProviderError(f"could not {action}: {exc}")
        return ProviderUnavailableError(
            f"lost the Docker engine at {self._engine_label()} while trying to {action}: {exc}"
        )

    # -- scope

    def scope(self, *, create: bool = False) -> str | None:
        """This deployment's scope id (``<state_dir>/docker-scope``); ``None`` when no launch
        has written it yet (then no container can be this deployment's)."""
        if self._scope is not None:
            return self._scope
        path = self.state_dir / SCOPE_FILE
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            token = f"{random.SystemRandom().getrandbits(48):012x}\n"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass  # a concurrent launch wrote it: use theirs
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(token)
        try:
            scope = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProviderError(f"cannot read the docker scope file {path}: {exc}") from exc
        if not re.fullmatch(r"[0-9a-f]{12}", scope):
            raise ProviderError(
                f"{path} should hold this deployment's docker scope (12 hex digits), not {scope[:40]!r}; "
                "restore it (the containers carry it in their io.hapool.scope label)"
            )
        self._scope = scope
        return scope

    # -- reading state

    def _to_instance(self, container: Any) -> Instance:
        labels: dict[str, str] = container.labels or {}
        attrs: dict[str, Any] = container.attrs or {}
        network = labels.get(LABEL_NETWORK, self.network)
        networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        address = (networks.get(network) or {}).get("IPAddress") or ""
        status = str(container.status)
        try:
            created = float(labels.get(LABEL_CREATED, "0"))
        except ValueError:
            created = 0.0
        return Instance(
            name=labels.get(LABEL_INSTANCE, container.name),
            pool=labels.get(LABEL_POOL, ""),
            provider=self.name,
            address=address if status == "running" else "",
            port=WEB_PORT,
            created=created,
            state=RUNNING if status == "running" else STOPPED,
            extra={
                "container": container.name,
                "container_id": container.id,
                "image": (attrs.get("Config") or {}).get("Image", ""),
                "network": network,
                "status": status,
                "docker_host": self.base_url,
                "template": labels.get(LABEL_TEMPLATE) or None,
            },
        )

    def _containers(self, pool: str | None = None, name: str | None = None) -> list[Any]:
        scope = self.scope()
        if scope is None:
            self.client()  # an engine that does not answer is still an error
            return []
        filters = [f"{LABEL_MANAGED}=true", f"{LABEL_PROVIDER}={self.name}", f"{LABEL_SCOPE}={scope}"]
        if pool is not None:
            filters.append(f"{LABEL_POOL}={validate_pool(pool)}")
        if name is not None:
            filters.append(f"{LABEL_INSTANCE}={name}")
        client = self.client()
        try:
            # ignore_removed: the SDK inspects each container it listed, and one removed in between
            # (a scale-in or heal destroying it meanwhile) is gone, not an engine error.
            found: list[Any] = client.containers.list(
                all=True, filters={"label": filters}, ignore_removed=True
            )
        except Exception as exc:
            raise self._api_error("list containers", exc) from exc
        return found

    def list(self, pool: str | None = None) -> list[Instance]:
        return sort_instances([self._to_instance(c) for c in self._containers(pool)])

    def get(self, pool: str, name: str) -> Instance | None:
        found = self._containers(pool, instance_name(name))
        return self._to_instance(found[0]) if found else None

    # -- CPU usage

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        """CPU seconds of each running container (cgroup counter, else the stats API); ``None``
        for a stopped or unknown one. One list call to the engine, then files in /sys/fs/cgroup."""
        validate_pool(pool)
        result: dict[str, float | None] = dict.fromkeys((instance_name(n) for n in names), None)
        if not result:
            return result
        running: dict[str, str] = {}
        for container in self._containers(pool):
            name = (container.labels or {}).get(LABEL_INSTANCE, "")
            if name in result and container.status == "running":
                running[name] = str(container.id)
        result.update(containers.containers_cpu_seconds(running, self._engine_cpu_seconds))
        return result

    def _engine_cpu_seconds(self, container_id: str) -> float | None:
        client = self.client()
        return containers.engine_cpu_seconds(self._sdk, client, container_id)

    # -- launch

    def _check_image(self, image: str) -> None:
        sdk, client = self._sdk, self.client()
        try:
            client.images.get(image)
        except sdk.errors.ImageNotFound as exc:
            raise ImageNotFoundError(
                f"image {image!r} is not on the Docker engine at {self._engine_label()}; hapool never "
                "pulls images: build the base image with scripts/build-base-image.sh (make setup) "
                "or set the pool's image to one that exists locally"
            ) from exc
        except Exception as exc:
            raise self._api_error(f"inspect image {image!r}", exc) from exc

    def ensure_network(self) -> Any:
        """The project network (a user bridge), created when missing."""
        sdk, client = self._sdk, self.client()
        try:
            for net in client.networks.list(names=[self.network]):
                if net.name == self.network:  # the engine's name filter also matches substrings
                    return net
            return client.networks.create(
                self.network, driver="bridge", labels={LABEL_MANAGED: "true"}, check_duplicate=True
            )
        except sdk.errors.APIError as exc:
            if exc.status_code == 409:  # created meanwhile by a concurrent launch
                return client.networks.get(self.network)
            raise self._api_error(f"create network {self.network!r}", exc) from exc
        except Exception as exc:
            raise self._api_error(f"create network {self.network!r}", exc) from exc

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        spec = spec or LaunchSpec()
        validate_pool(pool)
        image = spec.template.artifact if spec.template is not None else (spec.image or self.image)
        memory = parse_memory(spec.memory)
        self.client()
        if spec.template is not None and not self.artifact_exists(image):
            raise ImageNotFoundError(
                f"the image {image} of pool {pool}'s template version {spec.template.version} is not on "
                f"the Docker engine at {self._engine_label()} (deleted?): bake the pool's template again - "
                "ansible-playbook playbooks/bake.yml (or site.yml) bakes a version whose artefact is gone"
            )
        self._check_image(image)
        self.ensure_network()
        scope = self.scope(create=True)
        with file_lock(self.state_dir / ".lock"):
            live = [i.name for i in self.list(pool)]
            name = self.ledger.reserve(pool, self.rng, spec.name, live)
        created = self.clock()
        labels = {
            LABEL_MANAGED: "true",
            LABEL_PROVIDER: self.name,
            LABEL_SCOPE: str(scope),
            LABEL_POOL: pool,
            LABEL_INSTANCE: name,
            LABEL_CREATED: repr(created),
            LABEL_NETWORK: self.network,
        }
        if spec.template is not None:
            labels[LABEL_TEMPLATE] = spec.template.version
        kwargs: dict[str, Any] = {
            "name": container_name(pool, name),
            "hostname": name,
            "labels": labels,
            "network": self.network,
            "detach": True,
        }
        if spec.cpus is not None:
            kwargs["nano_cpus"] = int(float(spec.cpus) * 1e9)
        if memory is not None:
            kwargs["mem_limit"] = memory
        client = self.client()
        try:
            # create(), not run(): run() pulls a missing image, and hapool never pulls.
            container = client.containers.create(image, **kwargs)
        except Exception as exc:
            self._remove_leftover(container_name(pool, name), labels[LABEL_CREATED], exc)
            raise self._api_error(f"create container {container_name(pool, name)}", exc) from exc
        try:
            container.start()
            return self._wait_running(container, pool, name)
        except BaseException as exc:
            self._remove_leftover(container_name(pool, name), labels[LABEL_CREATED], exc)
            if isinstance(exc, ProviderError):
                raise
            if isinstance(exc, Exception):
                raise self._api_error(f"start container {container.name}", exc) from exc
            raise

    @staticmethod
    def _raise_if_exited(container: Any, instance: Instance) -> None:
        if instance.extra["status"] in ("exited", "dead"):
            logs = container.logs(tail=5).decode("utf-8", "replace").strip()
            raise ProviderError(f"container {container.name} exited right after start: {logs or 'no output'}")

    def _wait_running(self, container: Any, pool: str, name: str) -> Instance:
        deadline = time.monotonic() + self.start_timeout
        instance = self._to_instance(container)
        while time.monotonic() < deadline:
            container.reload()
            instance = self._to_instance(container)
            self._raise_if_exited(container, instance)
            if instance.alive and instance.address:
                break
            time.sleep(0.1)
        else:
            raise ProviderError(
                f"container {container.name} is not running with an address on network "
                f"{self.network!r} after {self.start_timeout:g} s (status {instance.extra['status']})"
            )
        if self.wait_port and not wait_tcp(instance.address, instance.port, deadline):
            # It may have run for a moment and exited since (a crash-looping image on a busy host).
            container.reload()
            self._raise_if_exited(container, self._to_instance(container))
            raise ProviderError(
                f"container {container.name} runs but nothing answers on {instance.endpoint} after "
                f"{self.start_timeout:g} s (does the image start a web server on port {WEB_PORT}?)"
            )
        return instance

    def _remove_leftover(self, cname: str, created: str, cause: BaseException) -> None:
        """Remove the container this launch made (matched by its ``created`` label, so a
        same-named container of someone else is never touched); if that fails, say so."""
        sdk, client = self._sdk, self._client
        if client is None:
            return
        try:
            container = client.containers.get(cname)
            if (container.labels or {}).get(LABEL_CREATED) != created:
                return
            container.remove(force=True, v=True)
        except sdk.errors.NotFound:
            return
        except Exception as exc:
            raise OrphanError(
                f"launch failed ({cause}) and container {cname} could not be removed ({exc}); "
                f"remove it with 'docker rm -f {cname}'",
                orphan=cname,
            ) from cause

    # -- launch templates (hapool.baking drives these)

    @property
    def bake_kind(self) -> str | None:
        return "docker"

    def template_base(self, spec: LaunchSpec | None = None) -> str:
        """The base of a pool's template: the id (``sha256:...``) of the image its hosts would
        run without a template (``spec.image`` or the provider's). A missing image is an error."""
        image = (spec.image if spec is not None else None) or self.image
        self.client()
        self._check_image(image)
        try:
            return str(self.client().images.get(image).id)
        except Exception as exc:
            raise self._api_error(f"inspect image {image!r}", exc) from exc

    def artifact_exists(self, artifact: str) -> bool:
        """A baked image is on the engine (``docker image inspect``); an engine error is raised."""
        sdk, client = self._sdk, self.client()
        try:
            client.images.get(artifact)
        except sdk.errors.ImageNotFound:
            return False
        except Exception as exc:
            raise self._api_error(f"inspect image {artifact!r}", exc) from exc
        return True

    def build_containers(self, pool: str) -> Sequence[tuple[str, str]]:
        """(name, version) of every build container of ``pool`` in this deployment's scope."""
        scope = self.scope()
        if scope is None:
            return []
        prefix = f"hapool-bake-{scope}-{validate_pool(pool)}-"
        try:
            found = self.client().containers.list(all=True, filters={"name": prefix}, ignore_removed=True)
        except Exception as exc:
            raise self._api_error(f"list the build containers of pool {pool}", exc) from exc
        builds: set[tuple[str, str]] = set()
        for container in found:
            name = str(container.name).lstrip("/")
            version = name[len(prefix) :] if name.startswith(prefix) else ""
            if re.fullmatch(r"[0-9a-f]{12}", version):
                builds.add((name, version))
        return sorted(builds)

    def build_container_name(self, pool: str, version: str) -> str:
        scope = self.scope(create=True)
        return f"hapool-bake-{scope}-{validate_pool(pool)}-{version}"

    def start_build(self, pool: str, version: str, base_image: str) -> str:
        """Start the build container of a bake (the base image as it runs, nginx in the
        foreground) and return its name. A build container of the same bake left by a killed run
        is removed first: bakes of one deployment run under its pool lock."""
        self._check_image(base_image)
        name = self.build_container_name(pool, version)
        self.remove_build(name)
        # No label: a commit keeps the container's labels in the image, and every host launched
        # from it would carry them. The name (scope, pool, version) is what finds it again.
        client = self.client()
        try:
            container = client.containers.create(
                base_image, name=name, hostname=f"bake-{version}", detach=True
            )
            container.start()
        except Exception as exc:
            self.remove_build(name)
            raise self._api_error(f"start the build container {name}", exc) from exc
        self._wait_build_running(container, name)
        return name

    def _wait_build_running(self, container: Any, name: str) -> None:
        """The build container runs (an image whose command exits at once would leave the role
        nothing to connect to); otherwise it is removed and the error says why."""
        deadline = time.monotonic() + self.start_timeout
        status = ""
        try:
            while True:
                container.reload()
                status = str(container.status)
                if status == "running":
                    return
                if status in ("exited", "dead") or time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
            logs = container.logs(tail=5).decode("utf-8", "replace").strip()
        except Exception as exc:
            self.remove_build(name)
            raise self._api_error(f"start the build container {name}", exc) from exc
        self.remove_build(name)
        raise ProviderError(
            f"the build container {name} is {status or 'gone'} right after its start, not running: "
            f"{logs or 'no output'} (does the base image run nginx in the foreground?)"
        )

    def commit_build(
        self,
        name: str,
        repository: str,
        tag: str,
        *,
        files: dict[str, tuple[str, int]],
        changes: Sequence[str],
    ) -> str:
        """Write ``files`` (path -> (text, mode)) into the build container ``name``, commit it as
        ``repository:tag`` with the Dockerfile ``changes`` (CMD, LABEL), and return the image id."""
        client = self.client()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path, (text, mode) in sorted(files.items()):
                data = text.encode("utf-8")
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, int(self.clock())
                tar.addfile(info, io.BytesIO(data))
        try:
            container = client.containers.get(name)
            if not container.put_archive("/", buffer.getvalue()):
                raise ProviderError(f"the engine refused the files of the build container {name}")
            image = container.commit(repository=repository, tag=tag, changes=list(changes))
        except ProviderError:
            raise
        except Exception as exc:
            raise self._api_error(f"commit the build container {name} as {repository}:{tag}", exc) from exc
        return str(image.id)

    def remove_build(self, name: str) -> None:
        """Remove a build container (gone already: nothing to do)."""
        client = self.client()
        sdk = self._sdk
        try:
            client.containers.get(name).remove(force=True, v=True)
        except sdk.errors.NotFound:
            return
        except Exception as exc:
            raise self._api_error(f"remove the build container {name}", exc) from exc

    def remove_image(self, reference: str) -> bool:
        """Remove a baked image; False when a container still uses it (kept), True when it is gone."""
        client = self.client()
        sdk = self._sdk
        try:
            client.images.remove(reference, noprune=False)
        except sdk.errors.ImageNotFound:
            return True
        except sdk.errors.APIError as exc:
            if exc.status_code == 409:  # a container (of any deployment) runs it
                return False
            raise self._api_error(f"remove image {reference}", exc) from exc
        except Exception as exc:
            raise self._api_error(f"remove image {reference}", exc) from exc
        return True

    # -- destroy

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        name = instance_name(instance)
        found = self._containers(pool, name)
        if not found:
            return None
        container = found[0]
        before = self._to_instance(container)
        sdk = self._sdk
        try:
            # A paused container (`docker pause`) or one whose main process is stopped (a hung
            # host) would not act on the SIGTERM of `stop` and be killed only after
            # stop_timeout: remove it at once (force: SIGKILL, which the engine delivers to a
            # paused container too - measured with Docker 20.10: 0.15 s).
            if container.status == "running" and not self._stopped(container):
                container.stop(timeout=self.stop_timeout)
            container.remove(force=True, v=True)
        except sdk.errors.NotFound:
            pass  # removed meanwhile
        except Exception as exc:
            raise self._api_error(f"remove container {container.name}", exc) from exc
        return dataclasses.replace(before, state=DESTROYED)

    @staticmethod
    def _stopped(container: Any) -> bool:
        state = ((container.attrs or {}).get("State") or {})
        try:
            pid = int(state.get("Pid") or 0)
        except (TypeError, ValueError):
            return False
        return containers.main_process_stopped(str(container.id or ""), pid)

    def remove_network(self) -> bool:
        """Remove the project network if no container uses it (teardown). True if removed."""
        sdk, client = self._sdk, self.client()
        try:
            net = client.networks.get(self.network)
            net.reload()
            if net.attrs.get("Containers"):
                return False
            net.remove()
        except sdk.errors.NotFound:
            return False
        except Exception as exc:
            raise self._api_error(f"remove network {self.network!r}", exc) from exc
        return True

