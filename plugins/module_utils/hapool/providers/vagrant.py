"""The ``vagrant`` provider: each instance is a Vagrant machine, driven through python-vagrant.

The repository's ``Vagrantfile`` does not list machines: it reads them from a JSON state file
that this provider maintains, so a host is added or removed without editing the Vagrantfile
(the original design's "generate a new Vagrantfile for a fresh host", solved once). Layout of
``vagrant_dir`` (default ``<project>/.state/vagrant``)::

    machines.json            {"version": 1, "machines": {"<instance>": {pool, created, backend, ...}}}
    .vagrant/                Vagrant's own data (VAGRANT_DOTFILE_PATH), e.g.
                             .vagrant/machines/<instance>/docker/id = the container id
    logs/<instance>.log      output of vagrant up / destroy (quoted in errors)
    pools/<pool>/names       every name the pool ever used (never reused)
    .lock                    flock around changes of machines.json

Vagrant is run with ``VAGRANT_CWD`` = the Vagrantfile's directory, ``VAGRANT_DOTFILE_PATH``,
``HAPOOL_VAGRANT_STATE`` = machines.json, and the HashiCorp version/box checks disabled (no
network traffic). Backends (``backend`` setting, Vagrant's ``--provider``):

- ``docker`` (default, works here): the container runs the pool's image with
  ``has_ssh = false`` and nginx in the foreground, on the ``hapool`` network. Its address is
  read with ``docker inspect`` of the id Vagrant stores in
  ``.vagrant/machines/<instance>/docker/id``; port 80. The image must exist locally (checked
  first: Vagrant's ``docker run`` would otherwise try to pull it).
- ``libvirt`` / ``virtualbox``: a VM from ``box`` with a static private-network address
  allocated from ``vm_network`` (default 192.168.56.0/24, from .10 up), provisioned with
  nginx by the Vagrantfile; port 80.

Launch templates (``hapool.baking``, ``bake_kind`` ``"docker"``): with the docker backend a pool
bakes the same kind of artefact as a docker pool - a build container from the base image on the
same engine, provisioned by nginx_web and committed to ``hapool/<pool>:<version>-<scope>``
(``scope``: this deployment's, in ``bake/docker-scope``) - and a machine launched from a
template runs that image with its own command (the start script the bake wrote): machines.json
records ``image`` and ``template`` (the version, also the container's ``io.hapool.template``
label). VM backends have no baked template (an error).

CPU usage (:meth:`VagrantProvider.cpu_seconds`): for the docker backend, the container's
cgroup counter read exactly as the docker provider does (:func:`.containers.containers_cpu_seconds`:
``/sys/fs/cgroup`` by container id, else the engine's stats API through the Docker SDK when it
is installed); VM backends are not supported yet (``None``: the guest's CPU time would need
libvirt's or VirtualBox's own counters, or a command run over SSH).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import pathlib
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ImageNotFoundError, OrphanError, ProviderError, ProviderUnavailableError
from . import containers
from .base import DESTROYED, MISSING, RUNNING, STOPPED, Instance, LaunchSpec, Provider, sort_instances
from .docker import DockerProvider
from .names import instance_name, validate_pool
from .net import wait_tcp
from .state import default_project_dir, file_lock, read_json, write_json_atomic

BACKENDS = ("docker", "libvirt", "virtualbox")
STATE_VERSION = 1
WEB_PORT = 80
VM_FIRST_HOST = 10  # leave .1 (host side of a host-only network) and a few more alone


def container_name(pool: str, name: str) -> str:
    return f"hapool-vg-{pool}-{name}"


def memory_mb(memory: int | str | None) -> int | None:
    """VM memory in MiB from bytes (int) or a Docker-style string (``512m``, ``1g``)."""
    if memory is None:
        return None
    if isinstance(memory, int):
        return max(1, memory // (1 << 20))
    text = str(memory).strip().lower()
    factor = {"b": 1 / (1 << 20), "k": 1 / 1024, "m": 1, "g": 1024}
    if text and text[-1] in factor and text[:-1].isdigit():
        return max(1, int(int(text[:-1]) * factor[text[-1]]))
    if text.isdigit():
        return max(1, int(text) // (1 << 20))
    raise ProviderError(f"invalid memory {memory!r}: use bytes or a number with b, k, m or g")


def allocate_vm_address(network: str, used: set[str]) -> str:
    """Lowest free host address of ``network`` from .10 up (static private-network IPs)."""
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError as exc:
        raise ProviderError(f"invalid vm_network {network!r}: {exc}") from exc
    for index, address in enumerate(net.hosts(), start=1):
        if index >= VM_FIRST_HOST and str(address) not in used:
            return str(address)
    raise ProviderError(f"no free address left in vm_network {network}")


def _import_sdk() -> Any:
    try:
        import vagrant  # noqa: PLC0415 - the provider's own dependency
    except ImportError as exc:
        raise ProviderUnavailableError(
            "the vagrant provider needs python-vagrant in the interpreter that runs it "
            f"({exc}); install it with 'pip install python-vagrant' (requirements/runtime.txt pins it)"
        ) from exc
    return vagrant


def _tail(path: pathlib.Path, lines: int = 6) -> str:
    """The gist of a vagrant log: its error lines first (Docker's "Error response from
    daemon", Vagrant's own errors), then the last lines, and where the whole log is."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in kept if "error" in line.lower() and not line.startswith("Command:")]
    gist = errors[-2:] if errors else kept[-lines:]
    return " | ".join(gist) + f" (full log: {path})"


class _LazyEngine:
    """A Docker SDK client made on first use (only when a container's cgroup is not readable
    here) from the provider's environment, closed on exit. Without the SDK — the vagrant
    provider itself does not need it — CPU usage is ``None``."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self.environment = dict(environment)
        self._lock = threading.Lock()
        self._made = False
        self._sdk: Any = None
        self._client: Any = None

    def _get(self) -> tuple[Any, Any]:
        with self._lock:
            if not self._made:
                self._made = True
                try:
                    self._sdk = containers.import_docker_sdk()
                except ProviderUnavailableError:
                    return None, None
                try:
                    self._client = self._sdk.from_env(environment=self.environment)
                except Exception as exc:
                    raise ProviderUnavailableError(
                        f"cannot connect to the Docker engine for container stats: {exc}"
                    ) from exc
            return self._sdk, self._client

    def cpu_seconds(self, container_id: str) -> float | None:
        sdk, client = self._get()
        if client is None:
            return None
        return containers.engine_cpu_seconds(sdk, client, container_id)

    def __enter__(self) -> _LazyEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


class VagrantProvider(Provider):
    """Vagrant machines described by a JSON state file that the Vagrantfile reads."""

    name = "vagrant"
    state_dir_setting: ClassVar[str] = "vagrant_dir"
    OPTIONS: ClassVar[dict[str, str]] = {
        "vagrant_dir": "vagrant_dir",
        "vagrantfile": "vagrantfile",
        "vagrant_backend": "backend",
        "image": "image",
        "network": "network",
        "box": "box",
        "vm_network": "vm_network",
        "start_timeout": "start_timeout",
    }

    def __init__(
        self,
        vagrant_dir: str | os.PathLike[str],
        *,
        vagrantfile: str | os.PathLike[str] | None = None,
        vagrant_exe: str = "vagrant",
        docker_exe: str = "docker",
        backend: str = "docker",
        image: str = containers.DEFAULT_IMAGE,
        network: str = containers.DEFAULT_NETWORK,
        box: str | None = None,
        vm_network: str = "192.168.56.0/24",
        env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ProviderError(f"unknown vagrant backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        super().__init__(vagrant_dir, clock=clock, rng=rng)
        self.vagrant_dir = self.state_dir
        self.vagrantfile = pathlib.Path(
            vagrantfile if vagrantfile is not None else default_project_dir() / "Vagrantfile"
        ).absolute()
        self.vagrant_exe = vagrant_exe
        self.docker_exe = docker_exe
        self.backend = backend
        self.image = image
        self.network = network
        self.box = box
        self.vm_network = vm_network
        self.extra_env = dict(env or {})
        self.start_timeout = float(start_timeout)
        self._images: DockerProvider | None = None

    @classmethod
    def settings_from_options(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """:attr:`OPTIONS`, and ``docker_host`` as ``DOCKER_HOST`` of the docker backend."""
        settings = super().settings_from_options(params)
        if params.get("docker_host"):
            settings["env"] = {"DOCKER_HOST": str(params["docker_host"])}
        return settings

    # -- paths and environment

    @property
    def state_file(self) -> pathlib.Path:
        return self.vagrant_dir / "machines.json"

    @property
    def dotfile_path(self) -> pathlib.Path:
        return self.vagrant_dir / ".vagrant"

    def log_file(self, name: str) -> pathlib.Path:
        return self.vagrant_dir / "logs" / f"{name}.log"

    def environment(self) -> dict[str, str]:
        """Environment of every vagrant / docker command this provider runs."""
        env = dict(os.environ)
        env.update(
            {
                "VAGRANT_CWD": str(self.vagrantfile.parent),
                "VAGRANT_VAGRANTFILE": self.vagrantfile.name,
                "VAGRANT_DOTFILE_PATH": str(self.dotfile_path),
                "HAPOOL_VAGRANT_STATE": str(self.state_file),
                "VAGRANT_CHECKPOINT_DISABLE": "1",
                "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _which(self, exe: str) -> str | None:
        return shutil.which(exe, path=self.environment().get("PATH", os.defpath))

    # -- state file

    def read_state(self) -> dict[str, Any]:
        data = read_json(self.state_file, default=None)
        if data is None:
            return {"version": STATE_VERSION, "machines": {}}
        if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
            raise ProviderError(f"state file {self.state_file} has no 'machines' object")
        return data

    def _update_state(self, change: Callable[[dict[str, Any]], None]) -> None:
        with file_lock(self.vagrant_dir / ".lock"):
            data = self.read_state()
            change(data["machines"])
            data["version"] = STATE_VERSION
            write_json_atomic(self.state_file, data)

    # -- engines

    def _vagrant(self, log: pathlib.Path) -> Any:
        """A python-vagrant ``Vagrant`` whose output goes to ``log``."""
        sdk = _import_sdk()
        exe = self._which(self.vagrant_exe)
        if exe is None:
            raise ProviderUnavailableError(
                f"the vagrant provider needs the {self.vagrant_exe!r} executable, which is not on "
                f"PATH ({self.environment().get('PATH', '')}); install it with "
                "'apt-get install --no-install-recommends vagrant' (make setup does)"
            )
        if not self.vagrantfile.is_file():
            raise ProviderUnavailableError(
                f"no Vagrantfile at {self.vagrantfile} (set the 'vagrantfile' setting)"
            )
        log.parent.mkdir(parents=True, exist_ok=True)
        self.vagrant_dir.mkdir(parents=True, exist_ok=True)
        v = sdk.Vagrant(
            root=str(self.vagrant_dir),
            env=self.environment(),
            out_cm=sdk.make_file_cm(str(log)),
            err_cm=sdk.make_file_cm(str(log)),
        )
        # python-vagrant looks the executable up on *this process's* PATH; use the one we checked.
        v._vagrant_exe = exe
        return v

    def _docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = self._which(self.docker_exe)
        if exe is None:
            raise ProviderUnavailableError(
                f"the vagrant provider's docker backend needs the {self.docker_exe!r} CLI, "
                "which is not on PATH"
            )
        return subprocess.run(
            [exe, *args], capture_output=True, text=True, env=self.environment(), timeout=60, check=False
        )

    def _docker_checked(self, action: str, *args: str) -> str:
        proc = self._docker(*args)
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if "Cannot connect to the Docker daemon" in err or "permission denied" in err.lower():
                raise ProviderUnavailableError(f"the Docker engine does not answer ({action}): {err}")
            raise ProviderError(f"docker could not {action}: {err}")
        return proc.stdout

    def _check_image(self, image: str) -> None:
        proc = self._docker("image", "inspect", "--format", "{{.Id}}", image)
        if proc.returncode == 0:
            return
        err = proc.stderr.strip()
        if "No such image" in err or "No such object" in err:
            raise ImageNotFoundError(
                f"image {image!r} is not on the Docker engine; hapool never pulls images (Vagrant's "
                "docker provider would try to): build it with scripts/build-base-image.sh (make setup)"
            )
        if "Cannot connect to the Docker daemon" in err:
            raise ProviderUnavailableError(f"the Docker engine does not answer: {err}")
        raise ProviderError(f"docker could not inspect image {image!r}: {err}")

    def _ensure_network(self) -> None:
        if self._docker("network", "inspect", self.network).returncode == 0:
            return
        proc = self._docker(
            "network", "create", "--driver", "bridge", "--label", "io.hapool.managed=true", self.network
        )
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise ProviderError(f"docker could not create network {self.network!r}: {proc.stderr.strip()}")

    # -- reading state

    def _container_id(self, name: str) -> str | None:
        with contextlib.suppress(OSError):
            text = (
                (self.dotfile_path / "machines" / name / "docker" / "id").read_text(encoding="utf-8").strip()
            )
            return text or None
        return None

    def _inspect(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """``docker inspect`` of the containers that exist among ``ids``, by full id."""
        if not ids:
            return {}
        proc = self._docker("container", "inspect", *ids)
        # Exit status 1 when some do not exist: the others are still printed.
        try:
            found = json.loads(proc.stdout or "[]")
        except ValueError as exc:
            raise ProviderError(f"cannot parse docker inspect output: {exc}") from exc
        if not found and proc.returncode != 0 and "No such" not in proc.stderr:
            self._docker_checked("inspect containers", "container", "inspect", *ids)
        return {c["Id"]: c for c in found}

    def _vm_states(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        v = self._vagrant(self.vagrant_dir / "logs" / "status.log")
        try:
            statuses = v.status()
        except subprocess.CalledProcessError as exc:
            raise ProviderError(
                f"vagrant status failed ({exc}): {_tail(self.vagrant_dir / 'logs' / 'status.log')}"
            ) from exc
        return {s.name: s.state for s in statuses if s.name in names}

    def _instances(self, machines: Mapping[str, Mapping[str, Any]]) -> list[Instance]:
        docker_names = [n for n, m in machines.items() if m.get("backend", "docker") == "docker"]
        ids = {n: self._container_id(n) for n in docker_names}
        inspected = self._inspect([i for i in ids.values() if i]) if docker_names else {}
        vm_states = self._vm_states([n for n in machines if n not in docker_names])
        found: list[Instance] = []
        for name, m in machines.items():
            extra: dict[str, Any] = {
                "backend": m.get("backend", "docker"),
                "vagrant_dir": str(self.vagrant_dir),
                "vagrantfile": str(self.vagrantfile),
                "machine": name,
                "template": m.get("template") if isinstance(m.get("template"), str) else None,
            }
            address, state = "", MISSING
            if name in docker_names:
                cid = ids.get(name)
                info = inspected.get(cid) if cid else None
                extra.update(
                    {"container": m.get("container", ""), "container_id": cid, "network": m.get("network")}
                )
                if info is not None:
                    running = bool((info.get("State") or {}).get("Running"))
                    state = RUNNING if running else STOPPED
                    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
                    net: dict[str, Any] = networks.get(m.get("network") or "") or next(
                        iter(networks.values()), {}
                    )
                    address = str((net or {}).get("IPAddress") or "") if running else ""
                    extra["container"] = str(info.get("Name", "")).lstrip("/") or extra["container"]
            else:
                vstate = vm_states.get(name, "not_created")
                state = RUNNING if vstate == "running" else MISSING if vstate == "not_created" else STOPPED
                address = str(m.get("ip", "")) if state == RUNNING else ""
                extra.update(
                    {
                        "ip": m.get("ip"),
                        "vagrant_state": vstate,
                        "private_key": str(
                            self.dotfile_path / "machines" / name / extra["backend"] / "private_key"
                        ),
                    }
                )
            found.append(
                Instance(
                    name=name,
                    pool=str(m.get("pool", "")),
                    provider=self.name,
                    address=address,
                    port=WEB_PORT,
                    created=float(m.get("created", 0.0)),
                    state=state,
                    extra=extra,
                )
            )
        return sort_instances(found)

    def list(self, pool: str | None = None) -> list[Instance]:
        if pool is not None:
            validate_pool(pool)
        machines = {
            n: m for n, m in self.read_state()["machines"].items() if pool is None or m.get("pool") == pool
        }
        return self._instances(machines)

    def get(self, pool: str, name: str) -> Instance | None:
        name = instance_name(name)
        m = self.read_state()["machines"].get(name)
        if m is None or m.get("pool") != validate_pool(pool):
            return None
        return self._instances({name: m})[0]

    # -- CPU usage

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        """CPU seconds of each running docker-backend machine (its container's cgroup counter,
        as the docker provider reads it); ``None`` for stopped or unknown machines and, not
        supported yet, for VM backends. Costs one ``docker inspect``."""
        validate_pool(pool)
        result: dict[str, float | None] = dict.fromkeys((instance_name(n) for n in names), None)
        machines = self.read_state()["machines"]
        ids: dict[str, str] = {}
        for name in result:
            m = machines.get(name)
            if m is None or m.get("pool") != pool or m.get("backend", "docker") != "docker":
                continue  # VM backends: not supported yet
            cid = self._container_id(name)
            if cid:
                ids[name] = cid
        if not ids:
            return result
        inspected = self._inspect(sorted(set(ids.values())))
        running: dict[str, str] = {}
        for name, cid in ids.items():
            info = inspected.get(cid)
            if info is not None and (info.get("State") or {}).get("Running"):
                running[name] = str(info.get("Id", cid))
        with _LazyEngine(self.environment()) as engine:
            result.update(containers.containers_cpu_seconds(running, engine.cpu_seconds))
        return result

    # -- launch templates (docker backend: the image is baked on the same engine)

    @property
    def bake_kind(self) -> str | None:
        return "docker" if self.backend == "docker" else None

    @property
    def base_url(self) -> str | None:
        """The Docker engine of the docker backend: ``DOCKER_HOST`` of this provider's environment
        (None: the default socket)."""
        return self.extra_env.get("DOCKER_HOST") or None

    def _engine(self) -> DockerProvider:
        """The docker provider that bakes this deployment's images on the backend's engine (its
        state - the docker scope of the images' tags - in ``<vagrant_dir>/bake``)."""
        if self.backend != "docker":
            raise ProviderError(
                f"the vagrant {self.backend} backend does not launch from baked templates "
                "(the docker backend does): set template.enabled false"
            )
        if self._images is None:
            self._images = DockerProvider(
                self.vagrant_dir / "bake",
                base_url=self.base_url,
                network=self.network,
                image=self.image,
                start_timeout=self.start_timeout,
            )
        return self._images

    def close(self) -> None:
        if self._images is not None:
            try:
                self._images.close()
            finally:
                self._images = None

    def scope(self, *, create: bool = False) -> str | None:
        return self._engine().scope(create=create)

    def template_base(self, spec: LaunchSpec | None = None) -> str:
        return self._engine().template_base(spec)

    def artifact_exists(self, artifact: str) -> bool:
        return self._engine().artifact_exists(artifact)

    def build_containers(self, pool: str) -> Sequence[tuple[str, str]]:
        return self._engine().build_containers(pool)

    def start_build(self, pool: str, version: str, base_image: str) -> str:
        return self._engine().start_build(pool, version, base_image)

    def commit_build(
        self,
        name: str,
        repository: str,
        tag: str,
        *,
        files: dict[str, tuple[str, int]],
        changes: Sequence[str],
    ) -> str:
        return self._engine().commit_build(name, repository, tag, files=files, changes=changes)

    def remove_build(self, name: str) -> None:
        self._engine().remove_build(name)

    def remove_image(self, reference: str) -> bool:
        return self._engine().remove_image(reference)

    # -- launch

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        spec = spec or LaunchSpec()
        validate_pool(pool)
        template = spec.template
        image = template.artifact if template is not None else (spec.image or self.image)
        self._vagrant(self.vagrant_dir / "logs" / "preflight.log")  # vagrant, SDK and Vagrantfile present
        if template is not None and not self.artifact_exists(image):  # a VM backend: an error here
            raise ImageNotFoundError(
                f"the image {image} of pool {pool}'s template version {template.version} is not on the "
                "Docker engine (deleted?): bake the pool's template again - ansible-playbook "
                "playbooks/bake.yml (or site.yml) bakes a version whose artefact is gone"
            )
        if self.backend == "docker":
            if template is None:  # a template's image was just found on the engine
                self._check_image(image)
            self._ensure_network()
        elif not (spec.box or self.box):
            raise ProviderError(
                f"the vagrant {self.backend} backend needs a box (set 'box' in the settings or spec)"
            )

        entry: dict[str, Any] = {"pool": pool, "backend": self.backend}

        def add(machines: dict[str, Any]) -> None:
            live = [n for n, m in machines.items() if m.get("pool") == pool]
            name = self.ledger.reserve(pool, self.rng, spec.name, live)
            entry.update({"name": name, "created": self.clock()})
            if self.backend == "docker":
                entry.update(
                    {
                        "image": image,
                        "template": template.version if template is not None else None,
                        "network": self.network,
                        "container": container_name(pool, name),
                        "cpus": spec.cpus,
                        "memory": spec.memory,
                    }
                )
            else:
                used = {str(m.get("ip")) for m in machines.values() if m.get("ip")}
                entry.update(
                    {
                        "box": spec.box or self.box,
                        "ip": allocate_vm_address(self.vm_network, used),
                        "cpus": int(spec.cpus) if spec.cpus else None,
                        "memory_mb": memory_mb(spec.memory),
                    }
                )
            machines[name] = {k: v for k, v in entry.items() if k != "name" and v is not None}

        self._update_state(add)
        name = str(entry["name"])
        log = self.log_file(name)
        try:
            v = self._vagrant(log)
            try:
                v.up(vm_name=name, provider=self.backend)
            except subprocess.CalledProcessError as exc:
                raise ProviderError(f"vagrant up {name} failed ({exc.returncode}): {_tail(log)}") from exc
            return self._wait_ready(pool, name)
        except BaseException as exc:
            self._cleanup_failed(pool, name, exc)
            raise

    def _wait_ready(self, pool: str, name: str) -> Instance:
        deadline = time.monotonic() + self.start_timeout
        instance = self.get(pool, name)
        while time.monotonic() < deadline:
            # wait_tcp with a deadline already reached: one try (the instance is read again).
            alive = instance is not None and instance.alive and instance.address
            if alive and instance is not None and wait_tcp(instance.address, instance.port, time.monotonic()):
                return instance
            time.sleep(0.1)
            instance = self.get(pool, name)
        state = instance.state if instance else MISSING
        raise ProviderError(
            f"vagrant machine {name} is up but not serving on port {WEB_PORT} after "
            f"{self.start_timeout:g} s (state {state}, address {instance.address if instance else ''!r})"
        )

    def _cleanup_failed(self, pool: str, name: str, cause: BaseException) -> None:
        try:
            self._destroy_machine(name)
        except Exception as exc:
            raise OrphanError(
                f"launch of {name} failed ({cause}) and 'vagrant destroy -f {name}' failed too ({exc}); "
                f"it stays in {self.state_file} and is listed as not alive: destroy it again with the "
                "pool_instance module (state=absent)",
                orphan=name,
            ) from cause

    # -- destroy

    def _destroy_machine(self, name: str) -> None:
        log = self.log_file(name)
        v = self._vagrant(log)
        try:
            v.destroy(vm_name=name)
        except subprocess.CalledProcessError as exc:
            raise ProviderError(f"vagrant destroy -f {name} failed ({exc.returncode}): {_tail(log)}") from exc

        def remove(machines: dict[str, Any]) -> None:
            machines.pop(name, None)

        self._update_state(remove)
        shutil.rmtree(self.dotfile_path / "machines" / name, ignore_errors=True)

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        before = self.get(pool, instance_name(instance))
        if before is None:
            return None
        self._destroy_machine(before.name)
        return dataclasses.replace(before, state=DESTROYED)

