"""The pool-size invariant over random sequences of failures and runs (hypothesis).

A small simulated world - instances that are alive, dead or hung, and a balancer whose view
lags until its health checks run - is driven by the real, pure decisions of the three acting
playbooks: ``plan_heal`` (heal.yml, with its launch-first / destroy-first order and runs
killed half-way), ``plan_site`` (site.yml) and ``plan_scale`` (scale.yml). The playbooks'
effects are simulated here (launch, destroy, register); the decisions are not. Checked:

* live hosts never exceed ``max``, at any moment of any run;
* once the failures stop, site.yml and a few heal runs bring the pool back to its desired size
  (or the live hosts it had, if more): no dead instance, every host registered and UP; and
  after a last scale run, exactly the size that run asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ansible.module_utils.hapool.actions import CLEAN, REGISTER, REPLACE, REPLACE_LAUNCH, SCALE_DRAIN
from ansible.module_utils.hapool.healing import name_new_replacements, plan_heal, superseded
from ansible.module_utils.hapool.providers import Instance
from ansible.module_utils.hapool.scaling import ScaleSettings, observe, plan_scale
from ansible.module_utils.hapool.sizing import leaving_hosts, plan_site
from ansible.module_utils.hapool.stats import normalize_status
from hypothesis import given, settings
from hypothesis import strategies as st

MIN, DESIRED, MAX = 1, 3, 5
POOL = {
    "name": "web", "provider": "local", "min": MIN, "desired": DESIRED, "max": MAX,
    "grace_period": 0, "backoff": 0, "max_replace_per_run": 1, "max_replace_dead_per_run": 10,
    "scale": {"policies": [{"type": "file", "name": "file", "path": "/nonexistent"}],
              "scale_out_cooldown": 0, "scale_in_cooldown": 0, "scale_in_stabilization": 0, "warmup": 0,
              "max_step_out": 10, "max_step_in": 10, "tolerance": 0},
}


@dataclass(frozen=True)
class Row:
    server: str
    status: str
    lastchg: int | None = 5
    scur: float = 0.0
    rate: float = 0.0

    @property
    def status_class(self) -> str:
        return normalize_status(self.status)


@dataclass
class Host:
    name: str
    created: float
    alive: bool = True
    hung: bool = False
    registered: bool = False
    status: str = "DOWN"  # the balancer's last view (until the next health check)


@dataclass
class World:
    rng: random.Random
    now: float = 1_000.0
    hosts: dict[str, Host] = field(default_factory=dict)
    history: list[dict[str, object]] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    peak: int = 0

    # --- the world ------------------------------------------------------------------------------
    def live(self) -> int:
        return sum(1 for h in self.hosts.values() if h.alive)

    def instances(self) -> list[Instance]:
        return [Instance(name=h.name, pool="web", provider="local", address="127.0.0.1", port=80,
                         created=h.created, state="running" if h.alive else "stopped")
                for h in self.hosts.values()]

    def rows(self) -> list[Row]:
        return [Row(h.name, h.status) for h in self.hosts.values() if h.registered]

    def launch(self, name: str | None = None) -> str:
        if name is None:
            name = f"web-{len(self.taken):06x}"
        assert name not in self.hosts
        self.taken.add(name)
        self.hosts[name] = Host(name, self.now)
        self.peak = max(self.peak, self.live())
        assert self.live() <= MAX, f"{self.live()} live hosts, max {MAX}"
        return name

    def destroy(self, name: str) -> None:
        del self.hosts[name]

    def register(self, name: str) -> None:
        if name in self.hosts:
            self.hosts[name].registered = True

    def check(self) -> None:
        """HAProxy's health checks catch up."""
        for h in self.hosts.values():
            h.status = "UP" if h.alive and not h.hung else "DOWN"

    def tick(self) -> None:
        self.now += 10

    # --- what the playbooks do with the plans -----------------------------------------------------
    def heal(self, killed_after: int | None = None) -> None:
        """heal.yml; ``killed_after``: the run is killed after that many launches."""
        leaving = leaving_hosts(self.history)
        plan = plan_heal(POOL, self.rows(), self.instances(), self.history, self.now, leaving=leaving)
        plan = name_new_replacements(plan, self.taken | set(self.hosts), self.rng)
        launched = 0
        new: list[str] = []
        for d in plan.decisions:
            if d.action == CLEAN:
                self.destroy(d.name)
            elif d.action == REPLACE:
                assert d.replacement
                if d.destroy_first:
                    self.destroy(d.name)
                if not d.adopt:
                    self.history.append({"time": self.now, "pool": "web", "action": REPLACE_LAUNCH,
                                         "instance": d.name, "replacement": d.replacement, "age": d.age})
                    self.launch(d.replacement)
                    launched += 1
                    if killed_after is not None and launched > killed_after:
                        return  # SIGKILL: nothing else happens
                if not d.destroy_first:
                    self.destroy(d.name)
                self.history.append({"time": self.now, "pool": "web", "action": REPLACE, "instance": d.name,
                                     "replacement": d.replacement, "age": d.age})
                new.append(d.replacement)
        for d in plan.decisions:
            if d.action == REGISTER:
                new.append(d.name)
        for name in new:
            self.register(name)

    def site(self) -> None:
        instances = self.instances()
        leaving = leaving_hosts(self.history)
        plan = plan_site("web", DESIRED, MAX, instances, leaving=leaving,
                         superseded=superseded(instances, self.history, "web", leaving=leaving))
        for name in plan.clean:
            self.destroy(name)
        for _ in range(plan.launch):
            self.launch()
        for h in self.hosts.values():  # the balancer play renders every live host of the group
            h.registered = h.registered or h.alive

    def scale(self, wanted: int) -> int:
        instances = self.instances()
        leaving = leaving_hosts(self.history)
        plan = plan_scale("web", ScaleSettings.from_pool(POOL), observe(instances, self.rows()),
                          self.history, now=self.now, file_values={"file": wanted},
                          superseded=superseded(instances, self.history, "web", leaving=leaving))
        for name in plan.remove:
            self.history.append({"time": self.now, "pool": "web", "action": SCALE_DRAIN, "instance": name})
            self.destroy(name)
        for _ in range(plan.launch):
            self.register(self.launch())
        return plan.desired


OPS = st.lists(
    st.tuples(st.sampled_from(["kill", "hang", "resume", "check", "heal", "heal_killed", "site", "scale"]),
              st.integers(min_value=0, max_value=20)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, seed=st.integers(min_value=0, max_value=2**32))
def test_live_hosts_never_exceed_max_and_the_pool_converges(ops: list[tuple[str, int]], seed: int) -> None:
    world = World(random.Random(seed))
    world.site()
    world.check()
    for op, arg in ops:
        names = sorted(world.hosts)
        victim = world.hosts[names[arg % len(names)]] if names else None
        if op == "kill" and victim:
            victim.alive = False
        elif op == "hang" and victim:
            victim.hung = True
        elif op == "resume" and victim:
            victim.hung = False
        elif op == "check":
            world.check()
        elif op == "heal":
            world.heal()
        elif op == "heal_killed":
            world.heal(killed_after=arg % 3)
        elif op == "site":
            world.site()
        elif op == "scale":
            world.scale(MIN + arg % (MAX - MIN + 1))
        world.tick()
        assert world.live() <= MAX

    # The failures stop: hung hosts answer again; site.yml, health checks and heal runs catch up.
    for h in world.hosts.values():
        h.hung = False
    world.check()
    # the live hosts that count: not those a live successor replaces (a killed run's launch)
    live_members = world.live() - len(superseded(world.instances(), world.history, "web"))
    world.site()  # site.yml and heal.yml count alike: no host launched beside a dead one
    for _ in range(4):
        world.check()
        world.heal()
        world.tick()
    world.check()
    assert all(h.alive for h in world.hosts.values()), world.hosts
    assert all(h.registered and h.status == "UP" for h in world.hosts.values()), world.hosts
    assert len(world.hosts) == max(DESIRED, live_members)
    wanted = MIN + seed % (MAX - MIN + 1)
    got = world.scale(wanted)
    world.heal()
    world.check()
    assert got == wanted and len(world.hosts) == wanted and world.live() == wanted
    assert world.peak <= MAX
