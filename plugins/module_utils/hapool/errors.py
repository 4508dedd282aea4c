"""Exceptions raised by hapool's module_utils. Modules turn them into ``fail_json``."""

from __future__ import annotations


class HapoolError(Exception):
    """Base class of every error hapool raises on purpose."""
