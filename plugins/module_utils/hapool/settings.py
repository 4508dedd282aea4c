"""Validation of numbers in pool settings (``hapool_pools`` entries), shared by the healer and
the scaler: a clear :class:`InvalidArgumentError` naming the key, never a bare ``ValueError``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArgumentError


def number_setting(
    cfg: Mapping[str, Any], key: str, default: float | None, *, minimum: float | None = 0.0
) -> float:
    """``cfg[key]`` as a finite float (``default`` when absent or None; required when the
    default is None), at least ``minimum`` (no lower bound when None)."""
    value = cfg.get(key, default)
    if value is None:
        if default is None:
            raise InvalidArgumentError(f"{key} is required")
        return default
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{key} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise InvalidArgumentError(f"{key} must be >= {minimum:g}, got {number:g}")
    return number


def whole_setting(cfg: Mapping[str, Any], key: str, default: int | None, *, minimum: int | None = 0) -> int:
    """``cfg[key]`` as a whole number (``3`` and ``3.0`` pass, ``3.5`` does not)."""
    number = number_setting(cfg, key, None if default is None else float(default), minimum=minimum)
    if number != int(number):
        raise InvalidArgumentError(f"{key} must be a whole number, got {number:g}")
    return int(number)


__all__ = ["number_setting", "whole_setting"]
