"""Plain records the store hands out; no SQLAlchemy objects leave the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regserve.states import EndpointState, VersionState
from regserve.traffic import TrafficSplit

__all__ = [
    "ClusterConfig",
    "EndpointRecord",
    "EventRecord",
    "GrantRecord",
    "MetricPoint",
    "PrincipalRecord",
    "TokenRecord",
    "VersionRecord",
]


@dataclass(frozen=True)
class ClusterConfig:
    """A serving cluster's settings, in Databricks' shape."""

    node_type_id: str
    tags: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "node_type_id": self.node_type_id,
            "tags": [{"key": k, "value": v} for k, v in self.tags],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterConfig:
        tags = tuple((str(t["key"]), str(t.get("value", ""))) for t in data.get("tags") or [])
        return cls(node_type_id=str(data["node_type_id"]), tags=tags)


@dataclass(frozen=True)
class EndpointRecord:
    model_name: str
    enabled: bool
    state: EndpointState
    state_message: str
    desired_config: ClusterConfig
    actual_config: ClusterConfig | None
    updated_at: int
    model_created_at: int | None = None
    """When the served registered model was created (ms); None until first seen."""
    traffic: TrafficSplit | None = None
    """The traffic config of the split URL; None: the default (Production, else latest)."""


@dataclass(frozen=True)
class VersionRecord:
    model_name: str
    version: str
    state: VersionState
    state_message: str
    updated_at: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRecord:
    timestamp: int
    model_name: str
    event_type: str
    message: str
    version: str | None
    principal: str | None = None
    """Who caused it, for actions taken through the API (audit events)."""


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    timestamp: int
    version: str | None


@dataclass(frozen=True)
class PrincipalRecord:
    """A user or a service principal."""

    id: int
    name: str
    """The user name, or the service principal's display name; unique among principals."""
    kind: str
    """``"user"`` or ``"service_principal"``."""
    application_id: str | None
    """Service principals only: the UUID that names them in ACLs and token requests."""
    is_admin: bool
    allow_cluster_create: bool
    created_at: int
    active: bool = True
    """A deactivated principal's tokens are refused; its grants and tokens are kept."""


@dataclass(frozen=True)
class TokenRecord:
    """A token's metadata; its value is never stored, only its SHA-256."""

    token_id: str
    principal_id: int
    comment: str
    creation_time: int
    expiry_time: int
    """Milliseconds since the epoch; -1 for a token that never expires (Databricks' value)."""
    created_by: str
    revoked_at: int | None = None


@dataclass(frozen=True)
class GrantRecord:
    """One entry of a registered model's access control list."""

    grantee_type: str
    """``"principal"`` (``grantee`` is the principal's id) or ``"group"`` (a group name)."""
    grantee: str
    level: str
