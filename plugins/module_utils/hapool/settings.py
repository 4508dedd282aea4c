"""Validation of numbers in pool settings (``hapool_pools`` entries): the one parser of numbers
the validator (``pools.py``), the healer and the scaler share. A bad value is a clear
:class:`InvalidArgumentError` naming the key and what it expects, never a bare ``ValueError``:
``"max_step_in must be >= 1, got 0 (expected a whole number >= 1)"``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArgumentError


def _expected(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{kind} >= {minimum:g}"
    if maximum is not None:
        return f"{kind} <= {maximum:g}"
    return kind


def _number(
    cfg: Mapping[str, Any],
    key: str,
    default: float | None,
    *,
    minimum: float | None,
    maximum: float | None,
    kind: str,
) -> float:
    value = cfg.get(key, default)
    if value is None:
        if default is None:
            raise InvalidArgumentError(f"{key} is required")
        return default
    expected = f"(expected {_expected(kind, minimum, maximum)})"
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{key} must be a number, got {value!r} {expected}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{key} must be a number, got {value!r} {expected}") from None
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{key} must be a finite number, got {value!r} {expected}")
    if kind == "a whole number" and number != int(number):
        raise InvalidArgumentError(f"{key} must be a whole number, got {number:g} {expected}")
    if minimum is not None and number < minimum:
        raise InvalidArgumentError(f"{key} must be >= {minimum:g}, got {number:g} {expected}")
    if maximum is not None and number > maximum:
        raise InvalidArgumentError(f"{key} must be <= {maximum:g}, got {number:g} {expected}")
    return number


def number_setting(
    cfg: Mapping[str, Any],
    key: str,
    default: float | None,
    *,
    minimum: float | None = 0.0,
    maximum: float | None = None,
) -> float:
    """``cfg[key]`` as a finite float (``default`` when absent or None; required when the
    default is None), from ``minimum`` to ``maximum`` (None: no bound)."""
    return _number(cfg, key, default, minimum=minimum, maximum=maximum, kind="a number")


def whole_setting(
    cfg: Mapping[str, Any],
    key: str,
    default: int | None,
    *,
    minimum: int | None = 0,
    maximum: int | None = None,
) -> int:
    """``cfg[key]`` as a whole number (``3``, ``3.0`` and ``"3"`` pass, ``3.5`` does not)."""
    fallback = None if default is None else float(default)
    return int(_number(cfg, key, fallback, minimum=minimum, maximum=maximum, kind="a whole number"))


def pool_sizes(cfg: Mapping[str, Any]) -> tuple[int, int, int]:
    """A pool's ``(min, desired, max)``: whole numbers with ``0 <= min <= desired <= max``, and
    the defaults of docs/scaling.md (min 1, desired min, max the larger of min and 1)."""
    low = whole_setting(cfg, "min", 1)
    desired = whole_setting(cfg, "desired", low)
    high = whole_setting(cfg, "max", max(low, 1))
    if not low <= desired <= high:
        raise InvalidArgumentError(
            f"sizes must satisfy 0 <= min <= desired <= max, got min={low}, desired={desired}, max={high} "
            "(defaults: min 1, desired min, max the larger of min and 1)"
        )
    return low, desired, high


__all__ = ["number_setting", "pool_sizes", "whole_setting"]
