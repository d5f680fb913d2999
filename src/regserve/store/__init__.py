"""regserve's own state: endpoints, their versions, events and metric history (SQLAlchemy)."""

from __future__ import annotations

from regserve.store.records import (
    ClusterConfig,
    EndpointRecord,
    EventRecord,
    MetricPoint,
    VersionRecord,
)
from regserve.store.store import StateStore

__all__ = [
    "ClusterConfig",
    "EndpointRecord",
    "EventRecord",
    "MetricPoint",
    "StateStore",
    "VersionRecord",
]
