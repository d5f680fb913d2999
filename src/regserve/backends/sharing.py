"""Whether a model's versions share worker processes: ``REGSERVE_SHARE_WORKERS``, overridden per
model by the cluster config tag ``regserve.share_workers`` (``true`` or ``false``).

When on, the versions of one served model whose environment is the same run in one worker
process (each model loaded once, with its own batcher). Models never share a process: a
serving cluster is a resource boundary. The tag takes effect for versions deployed after the
change; versions already running stay where they are until they restart with regserve.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["SHARE_WORKERS_TAG", "share_workers"]

SHARE_WORKERS_TAG = "regserve.share_workers"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

_log = logging.getLogger("regserve.supervisor")


def share_workers(tags: Iterable[tuple[str, str]], default: bool) -> bool:
    """The tag's value when it parses, else ``default`` (a bad value is logged and ignored)."""
    value = dict(tags).get(SHARE_WORKERS_TAG)
    if value is None:
        return default
    normalized = value.strip().lower()
    if normalized in _TRUE:
        return True
    if normalized in _FALSE:
        return False
    _log.warning("ignoring %s=%r: expected true or false", SHARE_WORKERS_TAG, value)
    return default
