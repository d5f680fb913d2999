"""How many replicas (worker processes) serve each version of a model, and which cluster
config changes need new workers.

- ``regserve.replicas`` (cluster config tag, an integer from 1 to 16): the model's replicas per
  version; without it, the node type's ``replicas`` when it affords more than one (a node types
  file, docs/node-types.md), else ``REGSERVE_REPLICAS`` (default 1). A bad value is refused when the
  config is set (:func:`check_tags`), so a stored config always parses.
- A change of node type or of any ``regserve.*`` tag (replicas, batching, worker sharing, and
  whatever later tags regserve reads) needs new workers: the cluster is replaced blue-green.
  Other tags are the user's labels and change nothing that runs (:func:`needs_new_workers`).
"""

from __future__ import annotations

from regserve.errors import InvalidParameterError
from regserve.nodes import NodeTypes
from regserve.settings import Settings
from regserve.store import ClusterConfig

__all__ = [
    "MAX_REPLICAS",
    "REPLICAS_TAG",
    "check_tags",
    "needs_new_workers",
    "parse_replicas",
    "replicas_for",
]

REPLICAS_TAG = "regserve.replicas"
MAX_REPLICAS = 16
_WORKER_TAG_PREFIX = "regserve."


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


def check_tags(config: ClusterConfig) -> None:
    """Refuse a config whose regserve tags do not parse (before it is stored)."""
    for key, value in config.tags:
        if key == REPLICAS_TAG:
            parse_replicas(value)


def replicas_for(
    config: ClusterConfig | None, settings: Settings, node_types: NodeTypes | None = None
) -> int:
    """The replicas per version of a cluster: its tag, else what its node type affords when
    that is more than one, else ``REGSERVE_REPLICAS``."""
    value = dict(config.tags).get(REPLICAS_TAG) if config is not None else None
    if value is not None:
        return parse_replicas(value)
    afforded = (
        node_types.node_type_replicas(config.node_type_id)
        if config is not None and node_types is not None
        else 1
    )
    return afforded if afforded > 1 else settings.replicas


def needs_new_workers(old: ClusterConfig, new: ClusterConfig) -> bool:
    """Whether going from ``old`` to ``new`` changes anything the workers run with."""
    return old.node_type_id != new.node_type_id or _worker_tags(old) != _worker_tags(new)


def _worker_tags(config: ClusterConfig) -> dict[str, str]:
    return {k: v for k, v in config.tags if k.startswith(_WORKER_TAG_PREFIX)}
