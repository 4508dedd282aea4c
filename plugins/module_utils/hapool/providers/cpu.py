"""CPU usage from two :meth:`Provider.cpu_seconds` samples, in percent of one core (pure maths,
plus the sampling loop with an injected clock and sleep)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

from ..errors import ProviderError
from .base import Provider


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def cpu_percent(
    before: Mapping[str, float | None], after: Mapping[str, float | None], seconds: float
) -> dict[str, float | None]:
    """CPU usage between two :meth:`Provider.cpu_seconds` samples taken ``seconds`` apart, in
    percent of ONE core (100.0 = one core fully busy; a host keeping two cores busy shows 200.0,
    like ``top``). Pure: the caller measures the elapsed time.

    Every name of either sample is in the result (``before``'s order, then new ones of
    ``after``); it is ``None`` where either sample is missing or ``None``, or where the counter
    went backwards (the host was restarted or replaced between the samples).
    """
    elapsed = _finite(seconds)
    if elapsed is None or elapsed <= 0:
        raise ProviderError(f"cpu_percent needs a positive, finite number of seconds, not {seconds!r}")
    result: dict[str, float | None] = {}
    for name in (*before, *(n for n in after if n not in before)):
        start, end = _finite(before.get(name)), _finite(after.get(name))
        if start is None or end is None or end < start:
            result[name] = None
        else:
            result[name] = (end - start) / elapsed * 100.0
    return result


def sample_cpu_percent(
    provider: Provider,
    pool: str,
    names: Sequence[str],
    interval: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, float | None]:
    """CPU usage of the instances ``names`` of ``pool`` over about ``interval`` seconds, in
    percent of one core (see :func:`cpu_percent`).

    Samples :meth:`Provider.cpu_seconds` twice with ``sleep(interval)`` in between. The elapsed
    time is measured with ``clock`` (monotonic), from the middle of the first sampling call to the
    middle of the second, so the time a sample itself takes (an engine's API) is not mistaken for
    CPU time. When no instance can be read in the first sample it returns at once (all ``None``)
    without sleeping.
    """
    span = _finite(interval)
    if span is None or span <= 0:
        raise ProviderError(f"the sampling interval must be a positive number of seconds, not {interval!r}")
    t0 = clock()
    before = provider.cpu_seconds(pool, names)
    t1 = clock()
    if all(v is None for v in before.values()):
        return dict.fromkeys(before, None)
    sleep(span)
    t2 = clock()
    after = provider.cpu_seconds(pool, names)
    t3 = clock()
    elapsed = ((t2 + t3) - (t0 + t1)) / 2
    if not elapsed > 0:
        raise ProviderError(f"the clock did not advance while sampling CPU usage ({elapsed!r} s)")
    return cpu_percent(before, after, elapsed)
