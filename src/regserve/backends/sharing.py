"""Two per-model switches of how worker processes are made, each a setting that a cluster config
tag (``true`` or ``false``) overrides for one model.

Sharing (``REGSERVE_SHARE_WORKERS``, tag ``regserve.share_workers``): when on, the versions
of one served model whose environment is the same run in one worker process (each model
loaded once, with its own batcher). Models never share a process: a serving cluster is a
resource boundary. The tag takes effect for versions deployed after the
change; versions already running stay where they are until they restart with regserve.

Forked replicas (``REGSERVE_FORK_REPLICAS``, on by default; tag ``regserve.fork_replicas``): a
version's replicas are forked from a template worker that loaded the model once
(:mod:`regserve.worker.template`), so a replica starts, and a crashed one restarts, in
milliseconds. Off: every replica is a fresh process that imports MLflow and loads the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from regserve.backends.tags import flag

__all__ = ["FORK_REPLICAS_TAG", "SHARE_WORKERS_TAG", "fork_replicas", "share_workers"]

SHARE_WORKERS_TAG = "regserve.share_workers"
FORK_REPLICAS_TAG = "regserve.fork_replicas"

_log = logging.getLogger("regserve.supervisor")


def share_workers(tags: Iterable[tuple[str, str]], default: bool) -> bool:
    """The tag's value when it parses, else ``default`` (a bad value is logged and ignored)."""
    return flag(tags, SHARE_WORKERS_TAG, default, _log)


def fork_replicas(tags: Iterable[tuple[str, str]], default: bool) -> bool:
    """Whether a version's replicas are forked from a template worker that loaded the model
    (``REGSERVE_FORK_REPLICAS``, per model the tag ``regserve.fork_replicas``)."""
    return flag(tags, FORK_REPLICAS_TAG, default, _log)
