"""regserve's own state: endpoints, versions, events, metrics, principals, tokens, permissions."""

from __future__ import annotations

from regserve.store.records import (
    ClusterConfig,
    EndpointRecord,
    EventRecord,
    GrantRecord,
    MetricPoint,
    PrincipalRecord,
    TokenRecord,
    VersionRecord,
)
from regserve.store.store import StateStore

__all__ = [
    "ClusterConfig",
    "EndpointRecord",
    "EventRecord",
    "GrantRecord",
    "MetricPoint",
    "PrincipalRecord",
    "StateStore",
    "TokenRecord",
    "VersionRecord",
]
