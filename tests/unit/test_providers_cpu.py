"""CPU usage from the providers, without engines: percent arithmetic, sampling with a fake clock,
the base-class default, /proc and cgroup parsing, and each provider's mapping of names."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from ansible.module_utils.hapool.providers import (
    Instance,
    InvalidNameError,
    LaunchSpec,
    Provider,
    ProviderError,
    ProviderUnavailableError,
    cpu_percent,
    get_provider,
    sample_cpu_percent,
)
from ansible.module_utils.hapool.providers import containers as containers_mod
from ansible.module_utils.hapool.providers.containers import (
    cgroup_cpu_seconds,
    containers_cpu_seconds,
    engine_cpu_seconds,
    parse_cgroup_v2_usage,
    stats_cpu_seconds,
)
from ansible.module_utils.hapool.providers.docker import DockerProvider
from ansible.module_utils.hapool.providers.local import LocalProvider
from ansible.module_utils.hapool.providers.procfs import (
    ProcStat,
    parse_proc_stat,
    proc_table,
    tree_cpu_ticks,
)
from ansible.module_utils.hapool.providers.vagrant import VagrantProvider

CID = "a" * 64
CID2 = "b" * 64


# --- cpu_percent -----------------------------------------------------------------------------------


def test_percent_of_one_core():
    before = {"web-1": 10.0, "web-2": 5.0, "web-3": 0.0}
    after = {"web-1": 11.0, "web-2": 5.5, "web-3": 4.0}
    assert cpu_percent(before, after, 2.0) == {"web-1": 50.0, "web-2": 25.0, "web-3": 200.0}


def test_idle_host_is_zero_percent():
    assert cpu_percent({"a": 3.25}, {"a": 3.25}, 1.0) == {"a": 0.0}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, 1.0),  # first sample unreadable
        (1.0, None),  # host gone / stopped meanwhile
        (5.0, 1.0),  # counter went backwards: restarted or replaced
        (math.nan, 1.0),
        (1.0, math.inf),
    ],
)
def test_percent_is_none_when_a_sample_is_unusable(before, after):
    assert cpu_percent({"a": before}, {"a": after}, 1.0) == {"a": None}


def test_names_of_either_sample_are_kept_in_order():
    out = cpu_percent({"b": 1.0, "a": 1.0}, {"a": 2.0, "c": 1.0}, 1.0)
    assert list(out) == ["b", "a", "c"]
    assert out == {"b": None, "a": 100.0, "c": None}


@pytest.mark.parametrize("seconds", [0, -1.0, math.nan, math.inf])
def test_percent_needs_a_positive_finite_duration(seconds):
    with pytest.raises(ProviderError, match="positive, finite"):
        cpu_percent({"a": 1.0}, {"a": 2.0}, seconds)


# --- sample_cpu_percent with fake providers and clocks ------------------------------------------


class Scripted(Provider):
    """A provider whose cpu_seconds answers from a script, recording its calls."""

    name = "scripted"

    def __init__(self, samples: list[dict[str, float | None]]) -> None:
        super().__init__("/nonexistent/hapool-state")  # never written: no launch
        self.samples = samples
        self.calls: list[tuple[str, list[str]]] = []

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        self.calls.append((pool, list(names)))
        return self.samples.pop(0)

    def list(self, pool: str | None = None) -> list[Instance]:
        return []

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        raise NotImplementedError

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        return None


def fake_clock(*readings: float):
    it = iter(readings)
    return lambda: next(it)


def test_sample_sleeps_the_interval_and_divides_by_the_measured_time():
    provider = Scripted([{"a": 1.0, "b": None}, {"a": 2.5, "b": 3.0}])
    slept: list[float] = []
    # sample 1 from t=10 to 10.2 (middle 10.1), sample 2 from 12.9 to 13.1 (middle 13.0): 2.9 s
    out = sample_cpu_percent(
        provider, "web", ["a", "b"], 2.5, sleep=slept.append, clock=fake_clock(10.0, 10.2, 12.9, 13.1)
    )
    assert slept == [2.5]
    assert provider.calls == [("web", ["a", "b"]), ("web", ["a", "b"])]
    assert out["b"] is None
    assert out["a"] == pytest.approx(1.5 / 2.9 * 100)


def test_sample_does_not_sleep_when_nothing_can_be_read():
    provider = Scripted([{"a": None, "b": None}])
    slept: list[float] = []
    out = sample_cpu_percent(provider, "web", ["a", "b"], 5, sleep=slept.append, clock=fake_clock(0, 0))
    assert out == {"a": None, "b": None} and slept == [] and len(provider.calls) == 1


@pytest.mark.parametrize("interval", [0, -1, math.nan])
def test_sample_needs_a_positive_interval(interval):
    with pytest.raises(ProviderError, match="sampling interval"):
        sample_cpu_percent(Scripted([]), "web", ["a"], interval, sleep=lambda s: None)


def test_sample_with_a_clock_that_does_not_advance_is_an_error():
    provider = Scripted([{"a": 1.0}, {"a": 1.0}])
    with pytest.raises(ProviderError, match="clock did not advance"):
        sample_cpu_percent(provider, "web", ["a"], 1, sleep=lambda s: None, clock=fake_clock(5, 5, 5, 5))


def test_sample_with_the_real_clock():
    """By default the sampler sleeps with time.sleep and measures with time.monotonic: the
    interval is slept once, between the two samples, and the measured span covers it (a usage
    of 0.01 s of CPU over at least 0.1 s is at most 10 %)."""
    defaults = inspect.signature(sample_cpu_percent).parameters
    assert defaults["sleep"].default is time.sleep and defaults["clock"].default is time.monotonic
    provider = Scripted([{"a": 0.0}, {"a": 0.01}])
    slept: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        slept.append((seconds, len(provider.calls)))
        time.sleep(seconds)

    out = sample_cpu_percent(provider, "web", ["a"], 0.1, sleep=sleep)
    assert slept == [(0.1, 1)] and len(provider.calls) == 2  # slept once, after the first sample
    assert out["a"] is not None and 0 < out["a"] <= 10.0


# --- base class default -------------------------------------------------------------------------


class Minimal(Provider):
    name = "minimal"

    def __init__(self) -> None:
        super().__init__("/nonexistent/hapool-state")  # never written: no launch

    def list(self, pool: str | None = None) -> list[Instance]:
        return []

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        raise NotImplementedError

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        return None


def test_base_class_default_cannot_tell():
    assert Minimal().cpu_seconds("web", ["web-000001", "web-000002"]) == {
        "web-000001": None,
        "web-000002": None,
    }
    assert Minimal().cpu_seconds("web", []) == {}


def test_base_class_default_validates_names():
    with pytest.raises(InvalidNameError):
        Minimal().cpu_seconds("Web", ["web-000001"])
    with pytest.raises(InvalidNameError):
        Minimal().cpu_seconds("web", ["../etc"])


def test_sampling_a_provider_that_cannot_tell_gives_none_without_sleeping():
    out = sample_cpu_percent(Minimal(), "web", ["web-1"], 10, sleep=lambda s: pytest.fail("slept"))
    assert out == {"web-1": None}


# --- local: /proc parsing -------------------------------------------------------------------------

STAT = (
    "4242 ({comm}) S 4200 4242 4242 0 -1 4194624 3000 0 0 0 "
    "{utime} {stime} {cutime} {cstime} 20 0 1 0 123456 9000000 700 18446744073709551615"
)


def stat_text(comm="nginx", utime=7, stime=3, cutime=0, cstime=0) -> str:
    return STAT.format(comm=comm, utime=utime, stime=stime, cutime=cutime, cstime=cstime)


def test_parse_proc_stat_fields():
    st = parse_proc_stat(stat_text(utime=120, stime=45, cutime=9, cstime=1) + "\n")
    assert st == ProcStat(
        pid=4242, comm="nginx", state="S", ppid=4200, utime=120, stime=45, cutime=9, cstime=1,
        starttime=123456,
    )


@pytest.mark.parametrize("comm", ["nginx: worker process", "a) S 1 2 (b", "((", ")) 9 9", "x y) R 77 (z"])
def test_parse_proc_stat_comm_with_spaces_and_parentheses(comm):
    st = parse_proc_stat(stat_text(comm=comm, utime=5, stime=6))
    assert st.comm == comm and st.state == "S" and st.ppid == 4200 and (st.utime, st.stime) == (5, 6)


@pytest.mark.parametrize(
    "text", ["", "garbage", "12 (x) S 1 2 3", "x (nginx) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14"]
)
def test_parse_proc_stat_rejects_other_text(text):
    with pytest.raises(ProviderError, match="unexpected /proc"):
        parse_proc_stat(text)


def test_parse_proc_stat_of_this_process():
    st = parse_proc_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert st.pid == os.getpid() and st.ppid == os.getppid()


def stat(pid: int, ppid: int, utime: int, stime: int, *, cutime: int = 0, cstime: int = 0) -> ProcStat:
    return ProcStat(pid, "nginx", "S", ppid, utime, stime, cutime, cstime)


def test_tree_ticks_sum_master_descendants_and_reaped_children():
    table = {
        1: stat(1, 0, 1000, 1000),  # init: not counted
        10: stat(10, 1, 5, 2, cutime=30, cstime=10),  # master; reaped workers used 40 ticks
        11: stat(11, 10, 100, 20),  # worker
        12: stat(12, 10, 50, 5),  # worker
        13: stat(13, 12, 3, 1),  # grandchild
        20: stat(20, 1, 999, 999),  # unrelated
        21: stat(21, 20, 999, 999),
    }
    assert tree_cpu_ticks(10, table) == 7 + 40 + 120 + 55 + 4
    assert tree_cpu_ticks(11, table) == 120
    assert tree_cpu_ticks(99, table) is None


def test_proc_table_reads_a_proc_directory_and_skips_what_vanished_or_is_garbage(tmp_path):
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "stat").write_text(stat_text(comm="nginx: master (x)", utime=1, stime=2))
    (tmp_path / "11").mkdir()  # exited between listdir and open: no stat file
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "stat").write_text("not a stat line")
    (tmp_path / "self").mkdir()
    table = proc_table(str(tmp_path))
    assert list(table) == [10] and table[10].comm == "nginx: master (x)"


def test_proc_table_of_missing_directory_is_a_provider_error(tmp_path):
    with pytest.raises(ProviderError, match="cannot list"):
        proc_table(str(tmp_path / "nope"))


# --- local provider, with stand-in processes --------------------------------------------------------


def test_local_cpu_seconds_of_unknown_and_stopped_hosts_is_none(tmp_path):
    provider = LocalProvider(tmp_path)
    prefix = provider.prefix("web", "web-00000a")
    (prefix / "logs").mkdir(parents=True)
    (prefix / "logs" / "nginx.pid").write_text("999999999\n")  # no such process
    assert provider.cpu_seconds("web", ["web-00000a", "web-00000b"]) == {
        "web-00000a": None,
        "web-00000b": None,
    }
    (prefix / "logs" / "nginx.pid").write_text(f"{os.getpid()}\n")  # alive, but not this prefix's nginx
    assert provider.cpu_seconds("web", ["web-00000a"]) == {"web-00000a": None}
    with pytest.raises(InvalidNameError):
        provider.cpu_seconds("web", ["Bad Name"])


BURNER = """
import subprocess, sys, time
if sys.argv[1] == "master":
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[2], "worker", sys.argv[3]])
    print(worker.pid, flush=True)
    worker.wait()
    time.sleep(60)
else:
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass
    print("burnt", flush=True)
    time.sleep(60)
"""


def test_local_cpu_seconds_counts_the_workers_of_the_master(tmp_path):
    """A stand-in 'master' (its command line names the prefix, like nginx's) whose child burns
    0.4 s of CPU: the host's counter includes the child's time."""
    provider = LocalProvider(tmp_path)
    prefix = provider.prefix("web", "web-00000c")
    (prefix / "logs").mkdir(parents=True)
    master = subprocess.Popen(
        [sys.executable, "-c", BURNER, "master", BURNER, str(prefix)], stdout=subprocess.PIPE, text=True
    )
    pids = [master.pid]
    try:
        (prefix / "logs" / "nginx.pid").write_text(f"{master.pid}\n")
        assert master.stdout is not None
        pids.append(int(master.stdout.readline()))  # the worker
        deadline = time.monotonic() + 10
        seconds = provider.cpu_seconds("web", ["web-00000c"])["web-00000c"]
        while (seconds or 0) < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
            seconds = provider.cpu_seconds("web", ["web-00000c"])["web-00000c"]
        assert seconds is not None and 0.35 <= seconds < 5
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        master.wait(10)


# --- docker: cgroup files, stats JSON, fallbacks ------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


V2_STAT = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n"


def test_parse_cgroup_v2_usage():
    assert parse_cgroup_v2_usage(V2_STAT) == 2.5
    assert parse_cgroup_v2_usage("user_usec 1\n") is None
    assert parse_cgroup_v2_usage("") is None


@pytest.mark.parametrize(
    ("relative", "text", "seconds"),
    [
        (f"cpuacct/docker/{CID}/cpuacct.usage", "1500000000\n", 1.5),  # v1, cgroupfs driver
        (f"cpu,cpuacct/docker/{CID}/cpuacct.usage", "1500000000\n", 1.5),  # v1, joint mount
        (f"cpuacct/system.slice/docker-{CID}.scope/cpuacct.usage", "1500000000\n", 1.5),  # v1, systemd
        (f"docker/{CID}/cpu.stat", V2_STAT, 2.5),  # v2, cgroupfs driver
        (f"system.slice/docker-{CID}.scope/cpu.stat", V2_STAT, 2.5),  # v2, systemd driver
        (f"unified/docker/{CID}/cpu.stat", V2_STAT, 2.5),  # hybrid host
    ],
)
def test_cgroup_layouts(tmp_path, relative, text, seconds):
    write(tmp_path / relative, text)
    assert cgroup_cpu_seconds(CID, tmp_path) == seconds
    assert cgroup_cpu_seconds(CID2, tmp_path) is None


def test_cgroup_v1_is_preferred_on_a_hybrid_host(tmp_path):
    write(tmp_path / f"cpuacct/docker/{CID}/cpuacct.usage", "1000000000")
    write(tmp_path / f"unified/docker/{CID}/cpu.stat", V2_STAT)
    assert cgroup_cpu_seconds(CID, tmp_path) == 1.0


def test_cgroup_ignores_unreadable_files_and_ids_that_are_not_full_ids(tmp_path):
    write(tmp_path / f"cpuacct/docker/{CID}/cpuacct.usage", "garbage")
    write(tmp_path / f"docker/{CID}/cpu.stat", V2_STAT)
    assert cgroup_cpu_seconds(CID, tmp_path) == 2.5  # falls through to v2
    write(tmp_path / "docker/abc/cpu.stat", V2_STAT)
    for bad in ("abc", "../docker/" + CID, CID.upper(), CID + "\n"):
        assert cgroup_cpu_seconds(bad, tmp_path) is None
    assert cgroup_cpu_seconds(CID, tmp_path / "nope") is None


def test_stats_json():
    assert stats_cpu_seconds(
        {"read": "2025-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 43470660}}}
    ) == (pytest.approx(0.04347066))
    stopped = {"read": "0001-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 0}}}
    assert stats_cpu_seconds(stopped) is None
    assert stats_cpu_seconds({}) is None
    assert stats_cpu_seconds({"cpu_stats": {"cpu_usage": {"total_usage": "x"}}}) is None
    assert stats_cpu_seconds({"cpu_stats": None}) is None


class FakeSdkErrors:
    class DockerException(Exception):
        pass

    class APIError(DockerException):
        explanation = "no stats for you"

    class NotFound(APIError):
        pass


class FakeSdk:
    errors = FakeSdkErrors


class FakeApi:
    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple[str, dict[str, object]]] = []

    def stats(self, container_id, **kwargs):
        self.calls.append((container_id, kwargs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class FakeClient:
    def __init__(self, answer):
        self.api = FakeApi(answer)


def test_engine_stats_one_shot_and_errors():
    client = FakeClient({"read": "2025", "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}}})
    assert engine_cpu_seconds(FakeSdk, client, CID) == 2.0
    assert client.api.calls == [(CID, {"stream": False, "one_shot": True})]
    assert engine_cpu_seconds(FakeSdk, FakeClient(FakeSdkErrors.NotFound("gone")), CID) is None
    with pytest.raises(ProviderError, match=r"refused the stats .*no stats for you"):
        engine_cpu_seconds(FakeSdk, FakeClient(FakeSdkErrors.APIError("x")), CID)
    with pytest.raises(ProviderUnavailableError, match="lost the Docker engine"):
        engine_cpu_seconds(FakeSdk, FakeClient(ConnectionError("reset")), CID)


def test_containers_use_the_cgroup_and_ask_the_engine_only_for_the_rest(tmp_path):
    write(tmp_path / f"docker/{CID}/cpu.stat", V2_STAT)
    asked: list[str] = []

    def stats(cid: str) -> float | None:
        asked.append(cid)
        return 7.0

    assert containers_cpu_seconds({"a": CID}, stats, tmp_path) == {"a": 2.5}
    assert asked == []
    third = "c" * 64
    out = containers_cpu_seconds({"a": CID, "b": CID2, "c": third}, stats, tmp_path)
    assert out == {"a": 2.5, "b": 7.0, "c": 7.0}
    assert sorted(asked) == [CID2, third]
    assert containers_cpu_seconds({}, stats, tmp_path) == {}


def test_containers_engine_errors_propagate(tmp_path):
    def stats(cid: str) -> float | None:
        raise ProviderUnavailableError("engine gone")

    with pytest.raises(ProviderUnavailableError, match="engine gone"):
        containers_cpu_seconds({"a": CID, "b": CID2}, stats, tmp_path)


class FakeContainer:
    def __init__(self, name: str, cid: str, status: str) -> None:
        self.labels = {"io.hapool.instance": name}
        self.id = cid
        self.status = status


def test_docker_provider_maps_running_containers_by_name(tmp_path, monkeypatch):
    cgroups = tmp_path / "cgroup"
    write(cgroups / f"docker/{CID}/cpu.stat", V2_STAT)
    monkeypatch.setattr(containers_mod, "CGROUP_ROOT", str(cgroups))
    provider = DockerProvider(tmp_path / "state")
    listed = [
        FakeContainer("web-00000a", CID, "running"),
        FakeContainer("web-00000b", CID2, "running"),  # no cgroup here: the engine is asked
        FakeContainer("web-00000c", "c" * 64, "exited"),
        FakeContainer("web-00000e", "e" * 64, "running"),  # not asked for
    ]
    monkeypatch.setattr(provider, "_containers", lambda pool=None, name=None: listed)
    asked: list[str] = []
    monkeypatch.setattr(provider, "_engine_cpu_seconds", lambda cid: asked.append(cid) or 4.0)
    out = provider.cpu_seconds("web", ["web-00000a", "web-00000b", "web-00000c", "web-00000d"])
    assert out == {"web-00000a": 2.5, "web-00000b": 4.0, "web-00000c": None, "web-00000d": None}
    assert asked == [CID2]


def test_docker_provider_without_names_does_not_reach_the_engine(tmp_path):
    provider = DockerProvider(tmp_path, base_url="tcp://127.0.0.1:1")
    assert provider.cpu_seconds("web", []) == {}


# --- vagrant -------------------------------------------------------------------------------------


def vagrant(tmp_path: Path) -> VagrantProvider:
    vf = tmp_path / "Vagrantfile"
    vf.write_text("# test\n")
    p = get_provider("vagrant", state_root=tmp_path, vagrantfile=str(vf))
    assert isinstance(p, VagrantProvider)
    return p


def test_vagrant_vm_backends_are_not_supported_yet_and_run_nothing(tmp_path, monkeypatch):
    provider = vagrant(tmp_path)
    provider._update_state(
        lambda m: m.update({"web-00000a": {"pool": "web", "created": 1.0, "backend": "libvirt", "ip": "1"}})
    )
    monkeypatch.setattr(provider, "_inspect", lambda ids: pytest.fail("ran docker inspect"))
    monkeypatch.setattr(provider, "_vagrant", lambda log: pytest.fail("ran vagrant"))
    assert provider.cpu_seconds("web", ["web-00000a", "web-00000b"]) == {
        "web-00000a": None,
        "web-00000b": None,
    }


def test_vagrant_docker_backend_reads_the_container_vagrant_made(tmp_path, monkeypatch):
    cgroups = tmp_path / "cgroup"
    write(cgroups / f"cpuacct/docker/{CID}/cpuacct.usage", "3000000000")
    monkeypatch.setattr(containers_mod, "CGROUP_ROOT", str(cgroups))
    provider = vagrant(tmp_path)
    machines = {
        "web-00000a": {"pool": "web", "created": 1.0, "backend": "docker"},
        "web-00000b": {"pool": "web", "created": 2.0, "backend": "docker"},  # container stopped
        "web-00000c": {"pool": "web", "created": 3.0, "backend": "docker"},  # never created: no id
        "api-00000d": {"pool": "api", "created": 4.0, "backend": "docker"},  # other pool
    }
    provider._update_state(lambda m: m.update(machines))
    for name, cid in (("web-00000a", CID), ("web-00000b", CID2), ("api-00000d", "d" * 64)):
        write(provider.dotfile_path / "machines" / name / "docker" / "id", cid)
    inspected: list[list[str]] = []

    def inspect(ids: list[str]) -> dict[str, dict[str, object]]:
        inspected.append(ids)
        return {
            CID: {"Id": CID, "State": {"Running": True}},
            CID2: {"Id": CID2, "State": {"Running": False}},
        }

    monkeypatch.setattr(provider, "_inspect", inspect)
    out = provider.cpu_seconds("web", ["web-00000a", "web-00000b", "web-00000c", "api-00000d"])
    assert out == {"web-00000a": 3.0, "web-00000b": None, "web-00000c": None, "api-00000d": None}
    assert inspected == [sorted([CID, CID2])]


def test_vagrant_without_the_docker_sdk_cannot_fall_back_to_engine_stats(tmp_path, monkeypatch):
    monkeypatch.setattr(containers_mod, "CGROUP_ROOT", str(tmp_path / "no-cgroups"))
    monkeypatch.setitem(sys.modules, "docker", None)
    provider = vagrant(tmp_path)
    provider._update_state(lambda m: m.update({"web-00000a": {"pool": "web", "created": 1.0}}))
    write(provider.dotfile_path / "machines" / "web-00000a" / "docker" / "id", CID)
    monkeypatch.setattr(provider, "_inspect", lambda ids: {CID: {"Id": CID, "State": {"Running": True}}})
    assert provider.cpu_seconds("web", ["web-00000a"]) == {"web-00000a": None}
