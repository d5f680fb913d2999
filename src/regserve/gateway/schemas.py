"""What the gateway's routes answer, as pydantic models: the response half of ``/openapi.json``.

The routes build plain dicts (the Databricks shapes); these models describe them for the spec
(``gateway/openapi.py`` attaches each to its route) and the tests check real answers against
them, so a field added to an answer without its model fails a test.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AclAnswer",
    "AuditEventsAnswer",
    "EndpointListAnswer",
    "EndpointStatusAnswer",
    "ErrorAnswer",
    "EventHistoryAnswer",
    "HealthAnswer",
    "InferenceRow",
    "InferenceTableAnswer",
    "InputExampleAnswer",
    "MetricHistoryAnswer",
    "ModelViewAnswer",
    "NodeTypesAnswer",
    "Nothing",
    "PredictionsAnswer",
    "PrincipalAnswer",
    "PrincipalListAnswer",
    "ScoringErrorAnswer",
    "TokenCreatedAnswer",
    "TokenListAnswer",
    "TrafficAnswer",
    "VersionAliasesAnswer",
    "VersionListAnswer",
    "VersionLogsAnswer",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorAnswer(_Strict):
    """Every error outside the scoring URLs (ScoringErrorAnswer there)."""

    error_code: str = Field(..., examples=["RESOURCE_DOES_NOT_EXIST"])
    message: str


class ScoringErrorAnswer(BaseModel):
    """A scoring URL's error. When the worker refuses the input, the body is MLflow's own,
    which adds fields of its own (``error_class``, ``sqlstate``, depending on the version)."""

    model_config = ConfigDict(extra="allow")

    error_code: str = Field(..., examples=["BAD_REQUEST"])
    message: str
    error_class: str | None = Field(None, examples=["INVALID_PARAMETER_VALUE"])
    sqlstate: str | None = Field(None, examples=["KAM00"])


class Nothing(_Strict):
    """An empty object: the call did what it was asked."""


class HealthAnswer(_Strict):
    status: str = Field(..., examples=["ok"])
    role: str | None = Field(
        None, description="leader (runs the controller) or follower", examples=["leader"]
    )
    gateway: str | None = Field(None, description="This gateway: host:port/pid.")
    leader: str | None = Field(None, description="The leading gateway, when known.")
    boot_id: str | None = Field(
        None, description="Changes at every start, restarts in place included."
    )
    started_at: int | None = Field(None, description="When this start happened (epoch ms).")
    starting: list[str] | None = Field(
        None,
        description="What is still starting (answered 503 with Retry-After until none is): "
        "`registry` (the hosted MLflow server, or the reader of --registry-uri), then "
        "`controller` (the leader's first pass, which adopts the workers a previous process "
        "left); on a follower, `routes` (versions in the routing table it cannot reach yet: "
        "on Ray, until it is connected to the cluster).",
        examples=[["registry", "controller"]],
    )


class ConfigTag(_Strict):
    key: str
    value: str


class ClusterConfigAnswer(_Strict):
    node_type_id: str
    tags: list[ConfigTag]


class EndpointStatus(_Strict):
    registered_model_name: str
    state: str = Field(..., description="ENDPOINT_STATE_PENDING, _READY or _FAILED.")
    state_message: str
    actual_cluster_config: ClusterConfigAnswer | None = None
    desired_cluster_config: ClusterConfigAnswer | None = Field(
        None, description="Present while it differs from the actual one."
    )


class EndpointStatusAnswer(_Strict):
    endpoint_status: EndpointStatus


class EndpointListAnswer(_Strict):
    endpoints: list[EndpointStatus]


class EndpointVersion(_Strict):
    registered_model_name: str
    endpoint_version_name: str = Field(..., examples=["1"])
    state: str = Field(..., description="VERSION_STATE_PENDING, _LAUNCHING, _READY or _FAILED.")
    state_message: str
    worker_pid: int | None = None
    environment: str | None = Field(None, description="The environment key (virtualenv).")
    loaded: bool | None = Field(
        None,
        description="READY versions, on the leading gateway: true while its workers (on Ray: "
        "replicas) run, false while it is idle (its next request loads it again).",
    )
    idle_reason: str | None = Field(
        None,
        description="Why an idle version's workers were stopped: IDLE_TIMEOUT (no request for "
        "its regserve.idle_timeout) or MEMORY_BUDGET (least recently used over "
        "REGSERVE_MEMORY_BUDGET).",
    )
    last_request_timestamp: int | None = Field(
        None,
        description="When its last scoring request arrived (ms since the epoch), since its "
        "workers were first started by this regserve process.",
    )


class VersionListAnswer(_Strict):
    endpoint_versions: list[EndpointVersion]


class VersionAlias(_Strict):
    alias: str = Field(..., examples=["Production", "latest", "champion"])
    endpoint_version_name: str


class VersionAliasesAnswer(_Strict):
    aliases: list[VersionAlias]


class VersionLogsAnswer(_Strict):
    logs: str


class Event(_Strict):
    timestamp: int = Field(..., description="Milliseconds since the epoch.")
    event_type: str = Field(..., examples=["VERSION_READY"])
    endpoint_version_name: str | None = None
    message: str
    principal: str | None = None


class EventHistoryAnswer(_Strict):
    events: list[Event]


class MetricPoint(_Strict):
    key: str = Field(
        ...,
        description=(
            "requests_per_minute, errors_per_minute, latency_p50_ms, latency_p99_ms; "
            "batch_size_mean and batch_size_max (requests per predict batch the version's "
            "worker ran in the minute; 1 without batching; absent in a minute without a "
            "batch); queue_depth_max (the most requests of the version open at the gateway "
            "at once in the minute: sent to its worker, not answered yet)."
        ),
    )
    value: float
    timestamp: int = Field(..., description="The minute, in milliseconds since the epoch.")
    endpoint_version_name: str | None = None


class MetricHistoryAnswer(_Strict):
    metrics: list[MetricPoint]


class NodeType(_Strict):
    node_type_id: str
    memory_mb: int
    num_cores: float
    description: str
    instance_type_id: str
    num_gpus: float | None = Field(None, description="GPUs per replica (--backend ray).")


class NodeTypesAnswer(_Strict):
    node_types: list[NodeType]


class TokenInfo(_Strict):
    token_id: str
    creation_time: int
    expiry_time: int = Field(..., description="-1 when the token never expires.")
    comment: str
    owner_id: str | None = None
    owner_name: str | None = None
    created_by_username: str | None = None


class TokenCreatedAnswer(_Strict):
    token_value: str = Field(..., description="Shown once; only its hash is kept.")
    token_info: TokenInfo


class TokenListAnswer(_Strict):
    token_infos: list[TokenInfo]


class Entitlement(_Strict):
    value: str


class GroupRef(_Strict):
    display: str
    value: str


class PrincipalAnswer(_Strict):
    id: str
    active: bool
    entitlements: list[Entitlement]
    groups: list[GroupRef]
    displayName: str
    userName: str | None = None
    applicationId: str | None = None


class PrincipalListAnswer(_Strict):
    totalResults: int
    Resources: list[PrincipalAnswer]


class AuditEvent(_Strict):
    timestamp: int
    registered_model_name: str | None = None
    event_type: str
    message: str
    principal: str | None


class AuditEventsAnswer(_Strict):
    events: list[AuditEvent]


class PermissionAnswer(_Strict):
    permission_level: str = Field(..., examples=["CAN_READ"])
    inherited: bool
    inherited_from_object: list[str] | None = None


class AccessControlEntryAnswer(_Strict):
    user_name: str | None = None
    service_principal_name: str | None = None
    group_name: str | None = None
    display_name: str | None = None
    all_permissions: list[PermissionAnswer]


class AclAnswer(_Strict):
    object_id: str = Field(..., examples=["/registered-models/iris-classifier"])
    object_type: str = Field(..., examples=["registered-model"])
    access_control_list: list[AccessControlEntryAnswer]


class RegistryVersion(_Strict):
    version: str
    current_stage: str = Field(..., description="None, Staging, Production or Archived.")
    status: str = Field(..., description="MLflow's: READY, PENDING_REGISTRATION, ...")
    aliases: list[str]
    creation_timestamp: int
    has_log: bool = Field(
        ...,
        description="Whether get-version-logs has a log of it: it serves, or it served and "
        "stopped (archived, deleted, serving disabled) and its last log is kept.",
    )


class RegistryModel(_Strict):
    name: str
    description: str
    versions: list[RegistryVersion]


class ModelViewAnswer(_Strict):
    """The UI's view of a model: its versions as the registry has them, and the caller's rights."""

    registered_model: RegistryModel
    permission_level: str = Field(..., examples=["CAN_MANAGE"])
    enable_refusal: str | None = Field(
        None, description="Why the caller may not enable serving; null when it may."
    )


class InputExampleAnswer(_Strict):
    input_example: Any = Field(
        ...,
        description="The version's logged input example as a scoring request body; null when "
        "the version was logged without one.",
    )


class PredictionsAnswer(BaseModel):
    """MLflow's scoring answer (other keys may follow, as MLflow's own server sends them)."""

    predictions: Any = Field(..., description="One prediction per input row (or a mapping).")


class TrafficRouteAnswer(_Strict):
    ref: str = Field(..., examples=["1", "champion"])
    percent: int


class EffectiveRoute(_Strict):
    ref: str
    percent: float = Field(..., description="Its share now, after unready refs gave theirs.")
    endpoint_version_name: str = Field(..., description="The version it answers from now.")


class TrafficAnswer(_Strict):
    registered_model_name: str
    routes: list[TrafficRouteAnswer] = Field(..., description="As set; [] while the default.")
    shadow: TrafficRouteAnswer | None
    is_default: bool = Field(
        ..., description="No config set: the Production version, else the latest READY one."
    )
    effective_routes: list[EffectiveRoute] = Field(
        ..., description="Where traffic goes now ([] while the model is not served)."
    )


class InferenceRow(_Strict):
    request_id: str = Field(..., description="Also the answer's X-Request-Id.")
    timestamp: str = Field(..., description="When the request arrived (ISO 8601, UTC).")
    model: str
    version: str = Field(..., description="The version that answered; '-': none did.")
    ref: str = Field(..., description="The URL's ref ('*': the split URL); a shadow's ref.")
    route: str | None = Field(..., description="The traffic config's ref drawn (split URL).")
    shadow: bool = Field(..., description="A shadow copy's answer (never returned).")
    caller: str = Field(..., description="The principal who sent it (never the token).")
    status_code: int | None = Field(..., description="None: a shadow copy got no answer.")
    latency_ms: float
    content_type: str | None
    request: str = Field(..., description="The request body (cut at the limit).")
    request_truncated: bool
    response: str | None = Field(..., description="The answer's body (cut at the limit).")
    response_truncated: bool


class InferenceTableAnswer(_Strict):
    registered_model_name: str
    sample_rate: float = Field(..., description="Share of requests captured now (0: off).")
    rows: list[InferenceRow] = Field(..., description="Newest first.")
