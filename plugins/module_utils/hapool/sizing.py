"""What counts toward a pool's size: one rule shared by site.yml, heal.yml and scale.yml.

* A pool's **members** are its instances that no scale-in is removing (a ``scale_drain`` event
  names the hosts a scale-in began to remove) and that no live replacement supersedes (a heal
  run killed after it launched a host's replacement: the next heal run finishes that
  replacement, see ``healing.superseded``): live and dead ones alike. A dead member is
  replaced (heal.yml) or cleaned and relaunched (site.yml), never launched beside.
* Live hosts (members or leaving) never exceed the pool's ``max``.

:func:`plan_site` is site.yml's decision: destroy the dead members, then launch up to
``desired`` (within ``max``). Pure: the instances and the history are passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .actions import SCALE_DRAIN
from .errors import InvalidArgumentError


class InstanceLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def alive(self) -> bool: ...


def leaving_hosts(history: Sequence[Mapping[str, Any]]) -> set[str]:
    """The hosts a scale-in began to remove (their ``scale_drain`` events)."""
    return {str(e.get("instance")) for e in history if e.get("action") == SCALE_DRAIN}


@dataclass(frozen=True)
class SitePlan:
    pool: str
    desired: int
    max_size: int
    members: int  # instances not leaving, live or dead
    alive: int  # live instances, leaving ones included
    clean: tuple[str, ...]  # dead members: destroyed, then replaced by the launches
    launch: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "desired": self.desired,
            "max": self.max_size,
            "members": self.members,
            "alive": self.alive,
            "clean": list(self.clean),
            "launch": self.launch,
        }


def plan_site(
    pool: str,
    desired: int,
    max_size: int,
    instances: Sequence[InstanceLike],
    *,
    leaving: Collection[str] = (),
    superseded: Collection[str] = (),
) -> SitePlan:
    """Destroy the dead members, launch live members up to ``desired``; live hosts stay <= max.
    ``superseded`` hosts are not members (heal.yml destroys them), and not cleaned here."""
    if not 0 <= desired <= max_size:
        raise InvalidArgumentError(f"pool {pool}: need 0 <= desired <= max, got {desired} and {max_size}")
    members = [i for i in instances if i.name not in leaving and i.name not in superseded]
    dead = tuple(i.name for i in members if not i.alive)
    alive = sum(1 for i in instances if i.alive)
    live_members = len(members) - len(dead)
    launch = max(0, min(desired - live_members, max_size - alive))
    return SitePlan(pool, desired, max_size, len(members), alive, dead, launch)


__all__ = ["SitePlan", "leaving_hosts", "plan_site"]
