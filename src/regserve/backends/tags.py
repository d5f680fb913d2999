"""Numbers and switches read from cluster-config tags (batching, Ray deployment options, worker
sharing, forked replicas): one rule for all.

A tag outside its range, or not a number, is ignored with a warning and the default used: a
tag is a user's label as much as a setting, and a stored config must always start workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

__all__ = ["bounded_number", "flag"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def bounded_number(
    values: Mapping[str, str],
    tag: str,
    default: float,
    limits: Mapping[str, tuple[float, float]],
    log: logging.Logger,
) -> float:
    """``values[tag]`` as a number within ``limits[tag]``, else ``default``."""
    if tag not in values:
        return default
    low, high = limits[tag]
    try:
        number = float(values[tag])
    except ValueError:
        number = float("nan")
    if not low <= number <= high:  # also false for NaN
        log.warning("ignoring %s=%r: expected a number from %g to %g", tag, values[tag], low, high)
        return default
    return number


def flag(tags: Iterable[tuple[str, str]], tag: str, default: bool, log: logging.Logger) -> bool:
    """The ``true``/``false`` value of ``tag`` when it parses, else ``default``."""
    value = dict(tags).get(tag)
    if value is None:
        return default
    normalized = value.strip().lower()
    if normalized in _TRUE:
        return True
    if normalized in _FALSE:
        return False
    log.warning("ignoring %s=%r: expected true or false", tag, value)
    return default
