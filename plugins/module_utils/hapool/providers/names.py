"""Pool and instance names: validation, new names, and the ledger that never hands one out twice.

Pool names name Ansible groups, HAProxy backends, containers and directories; instance names are
``<pool>-<6 hex digits>``, unique per pool and never reused (like cloud instance ids): every name
a pool ever used is appended to ``<provider state dir>/pools/<pool>/names`` before anything is
created.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..errors import InvalidNameError, NameReusedError, ProviderError

POOL_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME_SUFFIX_BITS = 24  # 6 hex digits: web-3f9a2c

if TYPE_CHECKING:
    from .base import Instance


def _validated(value: str, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidNameError(f"invalid {what} {value!r}: {rule}")
    return value


def validate_pool(pool: str) -> str:
    return _validated(
        pool,
        POOL_RE,
        "pool name",
        "use 1-32 characters, a lowercase letter first, then lowercase letters, digits or '_' "
        "(it names groups, containers and directories)",
    )


def validate_instance_name(name: str) -> str:
    return _validated(
        name,
        INSTANCE_RE,
        "instance name",
        "use 1-63 characters: lowercase letters, digits, '-' or '_', a letter or digit first",
    )


def instance_name(instance: Instance | str) -> str:
    """The validated name of an instance, given as an :class:`Instance` or by its name."""
    return validate_instance_name(instance if isinstance(instance, str) else instance.name)


def new_instance_name(pool: str, rng: random.Random, taken: Collection[str] = ()) -> str:
    """A new instance name ``<pool>-<6 hex digits>`` that is not in ``taken``.

    ``rng`` is passed in (tests use a seeded ``random.Random``; providers default to
    ``random.SystemRandom()``). ``taken`` holds every name the pool ever used (see
    :class:`NameLedger`), so names are never reused, like cloud instance ids.
    """
    validate_pool(pool)
    space = 1 << NAME_SUFFIX_BITS
    if len(taken) >= space // 2:
        raise ProviderError(f"pool {pool!r} has used up its instance names ({len(taken)} taken)")
    for _ in range(10_000):
        name = f"{pool}-{rng.getrandbits(NAME_SUFFIX_BITS):06x}"
        if name not in taken:
            return name
    raise ProviderError(f"could not find an unused instance name for pool {pool!r}")


class NameLedger:
    """Append-only record of every instance name a pool has used (``names`` file, one a line).

    Names are recorded *before* anything is created, so a name is never handed out twice,
    even when a launch fails half-way or the instance was destroyed long ago.
    """

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory

    def path(self, pool: str) -> pathlib.Path:
        return self.directory / "pools" / validate_pool(pool) / "names"

    def used(self, pool: str) -> set[str]:
        try:
            text = self.path(pool).read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    def check_unused(self, pool: str, name: str, live: Collection[str] = ()) -> None:
        """Raise :class:`NameReusedError` when ``name`` was ever used in ``pool``."""
        validate_instance_name(name)
        if name in self.used(pool) or name in live:
            raise NameReusedError(
                f"instance name {name!r} was already used in pool {pool!r}; names are "
                "never reused (omit the name to get a new one)"
            )

    def record(self, pool: str, name: str) -> None:
        path = self.path(pool)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def reserve(
        self, pool: str, rng: random.Random, requested: str | None = None, live: Collection[str] = ()
    ) -> str:
        """Pick (or check) a name and record it. Call with the provider's lock held."""
        used = self.used(pool) | set(live)
        if requested is not None:
            self.check_unused(pool, requested, live)
            name = requested
        else:
            name = new_instance_name(pool, rng, used)
        self.record(pool, name)
        return name
