"""ClusterOptions: what regserve reads from a cluster config (its node type and ``regserve.*``
tags, over the settings they override), parsed once and passed down to the backend's workers.

- ``regserve.replicas`` (an integer from 1 to 16): worker processes per version; without it,
  the node type's ``replicas`` when it affords more than one (a node types file,
  docs/node-types.md), else ``REGSERVE_REPLICAS`` (default 1).
- ``regserve.fork_replicas`` (``true``/``false``, ``REGSERVE_FORK_REPLICAS``, on by default): a
  version's replicas are forked from a template worker that loaded the model once
  (:mod:`regserve.worker.template`): a replica starts, and a crashed one restarts, in
  milliseconds. Off: every replica is a fresh process.
- ``regserve.share_workers`` (``true``/``false``, ``REGSERVE_SHARE_WORKERS``, off by default):
  the versions of one model whose environment is the same run in one worker process (each
  model loaded once, with its own batcher). Models never share a process: a serving cluster
  is a resource boundary. It takes effect for versions deployed after the change.
- ``regserve.batching`` (``auto``, ``on``, ``off``; default ``auto``: models of a row-wise
  flavor, sklearn, xgboost, lightgbm, catboost), ``regserve.max_batch_size`` (1 to 1024,
  default 64) and ``regserve.max_batch_wait_ms`` (0 to 1000, default 0): how a model's workers
  batch concurrent requests.
- ``regserve.idle_timeout`` (seconds, or ``never``; ``REGSERVE_IDLE_TIMEOUT``, 600 by default,
  0 meaning never): a version with no request for that long has its worker processes stopped
  (local backend; on Ray, Serve scales it to zero: :mod:`regserve.backends.ray.idle`); it
  stays READY and its next request starts it again (:mod:`regserve.backends.local.idle`).
- ``regserve.network`` (``host``, the default, or ``none``): ``none`` runs the workers with
  only a loopback interface (:mod:`regserve.sandbox`).
- ``regserve.inference_table`` (``on``/``off``, off by default) and
  ``regserve.inference_table.sample`` (a number from 0 to 1, default 1): the share of the
  model's scoring requests captured into its inference table (:mod:`regserve.inference`). The
  gateway reads them (:func:`capture_rate`), not the workers: changing them restarts nothing.

The tags that would stop a config from starting workers (``regserve.replicas``,
``regserve.network``), and the inference table's, are refused when the config is set
(:func:`check_config`), so a stored config always parses; another ``regserve.*`` tag that
does not parse is ignored with a warning (a tag is a user's label as much as a setting). A
change of node type or of any ``regserve.*`` tag but the inference table's needs new workers
(:func:`needs_new_workers`): the cluster is replaced blue-green. Other tags are the user's
labels and change nothing that runs. The Ray backend reads its deployment options
(autoscaling, resources) from :attr:`ClusterOptions.tags` in
:mod:`regserve.backends.ray.replica_plan`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from regserve.backends.tags import bounded_number, flag
from regserve.errors import InvalidParameterError
from regserve.nodes import DEFAULT_NODE_TYPE, NodeTypes
from regserve.sandbox import NETWORK_TAG, parse_network
from regserve.settings import Settings
from regserve.store import ClusterConfig

__all__ = [
    "BATCHING_TAG",
    "FORK_REPLICAS_TAG",
    "IDLE_TIMEOUT_TAG",
    "INFERENCE_SAMPLE_TAG",
    "INFERENCE_TABLE_TAG",
    "MAX_BATCH_SIZE_TAG",
    "MAX_BATCH_WAIT_TAG",
    "MAX_REPLICAS",
    "REPLICAS_TAG",
    "SHARE_WORKERS_TAG",
    "BatchSettings",
    "ClusterOptions",
    "capture_rate",
    "check_config",
    "needs_new_workers",
    "parse_replicas",
]

REPLICAS_TAG = "regserve.replicas"
FORK_REPLICAS_TAG = "regserve.fork_replicas"
SHARE_WORKERS_TAG = "regserve.share_workers"
BATCHING_TAG = "regserve.batching"
MAX_BATCH_SIZE_TAG = "regserve.max_batch_size"
MAX_BATCH_WAIT_TAG = "regserve.max_batch_wait_ms"
IDLE_TIMEOUT_TAG = "regserve.idle_timeout"
INFERENCE_TABLE_TAG = "regserve.inference_table"
INFERENCE_SAMPLE_TAG = "regserve.inference_table.sample"
_GATEWAY_TAGS = frozenset({INFERENCE_TABLE_TAG, INFERENCE_SAMPLE_TAG})
"""Tags the gateway reads: a change of them needs no new workers."""
_MAX_IDLE_TIMEOUT = 365 * 86400.0
MAX_REPLICAS = 16
_WORKER_TAG_PREFIX = "regserve."
_BATCHING_MODES = ("auto", "on", "off")
_LIMITS = {
    MAX_BATCH_SIZE_TAG: (1, 1024),
    MAX_BATCH_WAIT_TAG: (0, 1000),
    IDLE_TIMEOUT_TAG: (0, _MAX_IDLE_TIMEOUT),
}

_log = logging.getLogger("regserve.supervisor")


@dataclass(frozen=True)
class BatchSettings:
    """How a model's workers batch concurrent requests (see the module doc for the tags)."""

    mode: str = "auto"
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0

    @classmethod
    def from_tags(cls, values: dict[str, str]) -> BatchSettings:
        mode = values.get(BATCHING_TAG, cls.mode).strip().lower()
        if mode not in _BATCHING_MODES:
            _log.warning("ignoring %s=%r: expected one of %s", BATCHING_TAG, mode, _BATCHING_MODES)
            mode = cls.mode
        size = bounded_number(values, MAX_BATCH_SIZE_TAG, cls.max_batch_size, _LIMITS, _log)
        wait = bounded_number(values, MAX_BATCH_WAIT_TAG, cls.max_batch_wait_ms, _LIMITS, _log)
        return cls(mode=mode, max_batch_size=int(size), max_batch_wait_ms=wait)

    def worker_args(self) -> list[str]:
        """The ``python -m regserve.worker`` options that carry these settings."""
        return [
            "--batching",
            self.mode,
            "--max-batch-size",
            str(self.max_batch_size),
            "--max-batch-wait-ms",
            f"{self.max_batch_wait_ms:g}",
        ]


@dataclass(frozen=True)
class ClusterOptions:
    """A cluster config as the backends use it (see the module docstring)."""

    node_type_id: str = DEFAULT_NODE_TYPE
    replicas: int = 1
    fork_replicas: bool = True
    share_workers: bool = False
    batching: BatchSettings = field(default_factory=BatchSettings)
    network: bool = True
    """False: no network but loopback (``regserve.network=none``)."""
    idle_timeout: float | None = None
    """Seconds without a request before a version's workers stop; None: never."""
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, config: ClusterConfig | None, settings: Settings, node_types: NodeTypes | None = None
    ) -> ClusterOptions:
        """The options of ``config`` (None: a cluster with the default config)."""
        config = config or ClusterConfig(DEFAULT_NODE_TYPE)
        values = dict(config.tags)
        return cls(
            node_type_id=config.node_type_id,
            replicas=_replicas(config, values, settings, node_types),
            fork_replicas=flag(config.tags, FORK_REPLICAS_TAG, settings.fork_replicas, _log),
            share_workers=flag(config.tags, SHARE_WORKERS_TAG, settings.share_workers, _log),
            batching=BatchSettings.from_tags(values),
            network=parse_network(values[NETWORK_TAG]) if NETWORK_TAG in values else True,
            idle_timeout=_idle_timeout(values, settings),
            tags=tuple(config.tags),
        )


def parse_replicas(value: str) -> int:
    """The tag's value as a replica count; InvalidParameterError when it is not 1..16."""
    text = value.strip()
    count = int(text) if text.isdigit() else 0
    if not 1 <= count <= MAX_REPLICAS:
        raise InvalidParameterError(
            f"Tag {REPLICAS_TAG} must be a whole number from 1 to {MAX_REPLICAS} "
            f"(the worker processes per version); got '{value}'."
        )
    return count


def check_config(config: ClusterConfig) -> None:
    """Refuse a config whose regserve tags would not start workers (before it is stored)."""
    for key, value in config.tags:
        if key == REPLICAS_TAG:
            parse_replicas(value)
        elif key == NETWORK_TAG:
            parse_network(value)
    capture_rate(config.tags)


def needs_new_workers(old: ClusterConfig, new: ClusterConfig) -> bool:
    """Whether going from ``old`` to ``new`` changes anything the workers run with."""
    return old.node_type_id != new.node_type_id or _worker_tags(old) != _worker_tags(new)


def _worker_tags(config: ClusterConfig) -> dict[str, str]:
    return {
        k: v for k, v in config.tags if k.startswith(_WORKER_TAG_PREFIX) and k not in _GATEWAY_TAGS
    }


def capture_rate(tags: Iterable[tuple[str, str]]) -> float:
    """The share of scoring requests (0 to 1) the model's inference table captures: 0 unless
    ``regserve.inference_table`` is on; then ``regserve.inference_table.sample`` (default 1).
    InvalidParameterError for a value that does not parse (refused when the config is set)."""
    values = dict(tags)
    switch = values.get(INFERENCE_TABLE_TAG, "off").strip().lower()
    if switch not in _ON_OFF:
        raise InvalidParameterError(
            f"Tag {INFERENCE_TABLE_TAG} must be on or off (capture scoring requests into the "
            f"model's inference table); got '{values[INFERENCE_TABLE_TAG]}'."
        )
    text = values.get(INFERENCE_SAMPLE_TAG, "1").strip()
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 <= rate <= 1:  # also false for NaN
        raise InvalidParameterError(
            f"Tag {INFERENCE_SAMPLE_TAG} must be a number from 0 to 1 (the share of requests "
            f"captured, e.g. 0.1); got '{values[INFERENCE_SAMPLE_TAG]}'."
        )
    return rate if _ON_OFF[switch] else 0.0


_ON_OFF = {"on": True, "true": True, "off": False, "false": False}


def _replicas(
    config: ClusterConfig, values: dict[str, str], settings: Settings, node_types: NodeTypes | None
) -> int:
    """The tag, else what the node type affords when that is more than one, else the setting."""
    if REPLICAS_TAG in values:
        return parse_replicas(values[REPLICAS_TAG])
    afforded = node_types.node_type_replicas(config.node_type_id) if node_types else 1
    return afforded if afforded > 1 else settings.replicas


def _idle_timeout(values: dict[str, str], settings: Settings) -> float | None:
    """The tag (seconds, or ``never``), else the setting; 0 and ``never`` are None."""
    if values.get(IDLE_TIMEOUT_TAG, "").strip().lower() == "never":
        return None
    seconds = bounded_number(values, IDLE_TIMEOUT_TAG, settings.idle_timeout, _LIMITS, _log)
    return seconds or None
