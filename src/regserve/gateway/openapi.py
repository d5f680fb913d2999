"""``/openapi.json``: FastAPI's spec of the routes, completed.

FastAPI knows the routes and their request models. This module adds what it cannot know:
each route's answer (``schemas.py``, from :data:`ANSWERS`), the errors every route may give in
regserve's one shape (400 instead of FastAPI's 422, 401, 403, ...), the two ways to pass a
token, and the scoring route, which the gateway serves outside FastAPI. A route missing from
:data:`ANSWERS` fails ``tests/gateway/test_openapi.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from regserve.gateway import schemas as s
from regserve.worker.fetch import FILES_PATH

__all__ = ["ANSWERS", "OPEN_ROUTES", "SCORING_PATH", "SPLIT_PATH", "install_openapi"]

_EP = "/api/2.0/preview/mlflow/endpoints"
_SCIM = "/api/2.0/preview/scim/v2"
_PERMS = "/api/2.0/permissions/registered-models/{name}"
_TOKENS = "/api/2.0/token-management"
SCORING_PATH = "/model/{name}/{ref}/invocations"
SPLIT_PATH = "/model/{name}/invocations"
_SCORING_PATHS = (SCORING_PATH, SPLIT_PATH)

ANSWERS: dict[tuple[str, str], type[BaseModel] | None] = {
    ("get", "/health"): s.HealthAnswer,
    ("get", "/metrics"): None,  # text/plain; version=0.0.4 (Prometheus' exposition format)
    ("post", f"{_EP}/enable"): s.Nothing,
    ("post", f"{_EP}/disable"): s.Nothing,
    ("get", f"{_EP}/get-status"): s.EndpointStatusAnswer,
    ("get", f"{_EP}/list"): s.EndpointListAnswer,
    ("get", f"{_EP}/list-versions"): s.VersionListAnswer,
    ("get", f"{_EP}/list-version-aliases"): s.VersionAliasesAnswer,
    ("post", f"{_EP}/get-version-logs"): s.VersionLogsAnswer,
    ("get", f"{_EP}/get-version-logs"): s.VersionLogsAnswer,
    ("get", f"{_EP}/get-event-history"): s.EventHistoryAnswer,
    ("get", f"{_EP}/get-metric-history"): s.MetricHistoryAnswer,
    ("put", f"{_EP}/update-cluster-config"): s.Nothing,
    ("get", "/api/2.0/clusters/list-node-types"): s.NodeTypesAnswer,
    ("post", "/api/2.0/token/create"): s.TokenCreatedAnswer,
    ("get", "/api/2.0/token/list"): s.TokenListAnswer,
    ("post", "/api/2.0/token/delete"): s.Nothing,
    ("post", f"{_TOKENS}/on-behalf-of/tokens"): s.TokenCreatedAnswer,
    ("get", f"{_TOKENS}/tokens"): s.TokenListAnswer,
    ("delete", f"{_TOKENS}/tokens/{{token_id}}"): s.Nothing,
    ("post", f"{_SCIM}/ServicePrincipals"): s.PrincipalAnswer,
    ("get", f"{_SCIM}/ServicePrincipals"): s.PrincipalListAnswer,
    ("post", f"{_SCIM}/Users"): s.PrincipalAnswer,
    ("get", f"{_SCIM}/Users"): s.PrincipalListAnswer,
    ("get", f"{_SCIM}/Me"): s.PrincipalAnswer,
    **{
        (method, f"{_SCIM}/{kind}/{{principal_id}}"): answer
        for kind in ("Users", "ServicePrincipals")
        for method, answer in (
            ("get", s.PrincipalAnswer),
            ("patch", s.PrincipalAnswer),
            ("delete", s.Nothing),
        )
    },
    ("get", "/api/2.0/regserve/audit-events"): s.AuditEventsAnswer,
    ("get", "/api/2.0/regserve/models/get"): s.ModelViewAnswer,
    ("get", "/api/2.0/regserve/models/get-input-example"): s.InputExampleAnswer,
    ("get", "/api/2.0/regserve/endpoints/traffic"): s.TrafficAnswer,
    ("put", "/api/2.0/regserve/endpoints/traffic"): s.Nothing,
    ("get", "/api/2.0/regserve/inference-tables/read"): s.InferenceTableAnswer,
    ("get", _PERMS): s.AclAnswer,
    ("put", _PERMS): s.AclAnswer,
    ("patch", _PERMS): s.AclAnswer,
    ("post", "/api/2.0/regserve/registry-webhook"): None,  # FastAPI knows its response_model
    ("get", FILES_PATH): None,  # a tar stream
}
"""(method, path as in the spec) -> the model of its 200 answer (None: FastAPI's own)."""

_OPEN_ERRORS = {
    ("post", "/api/2.0/regserve/registry-webhook"): {
        "400": "Invalid parameters or body (INVALID_PARAMETER_VALUE, BAD_REQUEST).",
        "401": "Bad or missing X-MLflow-Signature.",
    },
    ("get", FILES_PATH): {
        "400": "No model or version named (INVALID_PARAMETER_VALUE).",
        "401": "No version-files credential (tokens, the admin's included, are refused) "
        "(UNAUTHENTICATED).",
        "403": "The credential is another version's, or the version is not served any more "
        "(PERMISSION_DENIED).",
        "503": "This gateway does not hold the version's files (TEMPORARILY_UNAVAILABLE; "
        "Retry-After).",
    },
}
"""The routes that take no token, but for /health: what they refuse, and why."""
OPEN_ROUTES = frozenset({("get", "/health"), *_OPEN_ERRORS})

_ERRORS = {
    "400": "Invalid parameters or body (INVALID_PARAMETER_VALUE, BAD_REQUEST).",
    "401": "No, malformed, unknown, expired or revoked token (UNAUTHENTICATED).",
    "403": "The caller lacks the permission the route needs (PERMISSION_DENIED).",
    "404": "Unknown model, version or object (RESOURCE_DOES_NOT_EXIST).",
    "429": "The token's rate limit is exceeded (REQUEST_LIMIT_EXCEEDED).",
}
_CONFLICTS = {
    ("post", f"{_SCIM}/ServicePrincipals"): "The name or application id is taken "
    "(RESOURCE_ALREADY_EXISTS).",
    ("post", f"{_SCIM}/Users"): "The user name is taken (RESOURCE_ALREADY_EXISTS).",
}
"""The routes that may answer 409, and why (found by tests/e2e/test_schemathesis.py)."""
_SCORING_ERRORS = {
    **_ERRORS,
    "400": "The body does not fit MLflow's scoring protocol or the model's signature, or is "
    "over an input limit (REGSERVE_MAX_INPUT_COLUMNS, _ROWS, _VALUES, REGSERVE_MAX_JSON_DEPTH).",
    "404": "Unknown model, version, stage or alias (RESOURCE_DOES_NOT_EXIST), saying which.",
    "405": "Scoring URLs accept POST only (METHOD_NOT_ALLOWED; Allow: POST).",
    "413": "Body over REGSERVE_MAX_PAYLOAD_BYTES (REQUEST_TOO_LARGE).",
    "415": "No or unsupported Content-Type (UNSUPPORTED_MEDIA_TYPE).",
    "503": "The version is starting, restarting or failed, or the registry is starting "
    "(TEMPORARILY_UNAVAILABLE; Retry-After).",
    "504": "Slower than REGSERVE_REQUEST_TIMEOUT (DEADLINE_EXCEEDED).",
}
_SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"},
    "basic": {"type": "http", "scheme": "basic", "description": "user 'token', password <token>"},
}


def install_openapi(api: FastAPI) -> None:
    """Make ``api.openapi()`` (and so ``/openapi.json``) return the completed spec."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            generated = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            api.openapi_schema = complete(generated)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Answers, errors, security and the scoring route added to FastAPI's ``spec``."""
    models = [m for m in ANSWERS.values() if m is not None]
    models += [s.ErrorAnswer, s.ScoringErrorAnswer, s.PredictionsAnswer]
    _, defs = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        # One name, one schema: an answer model must not shadow a request model.
        if schemas.get(name, schema) != schema:
            raise ValueError(f"two different schemas are both named {name!r}")
        schemas[name] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    spec["components"]["securitySchemes"] = _SECURITY
    spec["security"] = [{"bearer": []}, {"basic": []}]
    spec["paths"][SCORING_PATH] = {"post": _scoring_operation()}
    spec["paths"][SPLIT_PATH] = {"post": _split_operation()}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            _complete_operation(method, path, operation)
    return spec


def _complete_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    model = ANSWERS.get((method, path))
    if model is not None:
        responses["200"] = {"description": "OK", "content": _json(model.__name__)}
    elif (method, path) == ("get", FILES_PATH):
        responses["200"] = {
            "description": "The version's files as a tar stream (regserve/worker/fetch.py).",
            "content": {"application/x-tar": {"schema": {"type": "string"}}},
        }
    elif (method, path) == ("get", "/metrics"):
        responses["200"] = {
            "description": "Prometheus text exposition format (docs/monitoring.md).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    errors = _SCORING_ERRORS if path in _SCORING_PATHS else _ERRORS
    if (method, path) in OPEN_ROUTES:
        operation["security"] = []
        errors = _OPEN_ERRORS.get((method, path), {})
        if path == "/health":
            responses["503"] = {
                "description": "Listening, but not everything has started: `starting` says what.",
                "content": _json("HealthAnswer"),
            }
            return
    if (method, path) in _CONFLICTS:
        errors = {**errors, "409": _CONFLICTS[(method, path)]}
    error = "ScoringErrorAnswer" if path in _SCORING_PATHS else "ErrorAnswer"
    for status, text in errors.items():
        responses.setdefault(status, {"description": text, "content": _json(error)})
    operation["responses"] = dict(sorted(responses.items()))


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}


_SCORING_BODY: dict[str, Any] = {
    "type": "object",
    "description": "One of dataframe_split, dataframe_records, instances or inputs, with "
    "optional params (MLflow's scoring protocol).",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array", "items": {}}},
                "index": {"type": "array", "items": {}},
            },
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array", "items": {}},
        "inputs": {},
        "params": {"type": "object"},
    },
}
"""The JSON body of a scoring request, as the spec shows it."""


def _scoring_operation() -> dict[str, Any]:
    name = {
        "type": "string",
        "description": "The registered model, URL-encoded (any name MLflow accepts is served: "
        "spaces, '%', ',' and newlines included).",
    }
    ref = {
        "type": "string",
        "description": "A version number, Staging, Production (any case), latest, or an alias "
        "(champion or @champion).",
    }
    return {
        "summary": "Score with a served version (MLflow's scoring protocol)",
        "operationId": "score_model_name_ref_invocations_post",
        "description": "Served by the gateway outside FastAPI; the body goes to the version's "
        "worker as it is. Every answer names the version in X-Model-Version, and carries "
        "X-Request-Id (the caller's when sent and sane: 1 to 128 letters, digits and ._:-; "
        "else a new one), the key of the request's row in the model's inference table.",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": name},
            {"name": "ref", "in": "path", "required": True, "schema": ref},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _SCORING_BODY},
                "text/csv": {"schema": {"type": "string"}},
                "application/x-parquet": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "The predictions.",
                "headers": {
                    "X-Model-Version": {"schema": {"type": "string"}},
                    "X-Request-Id": {"schema": {"type": "string"}},
                },
                "content": _json("PredictionsAnswer"),
            }
        },
    }


def _split_operation() -> dict[str, Any]:
    operation = _scoring_operation()
    operation.update(
        summary="Score with the version the model's traffic config draws",
        operationId="score_model_name_invocations_post",
        description="Like the scoring URL with a ref, but the ref is drawn per request from "
        "the model's traffic config (GET/PUT /api/2.0/regserve/endpoints/traffic); without "
        "one, the Production version, else the latest READY version. X-Model-Version names "
        "the version that answered. A copy may go to the config's shadow ref after the answer "
        "is sent; its answer is never returned. Not for a model name that holds '/'.",
        parameters=[p for p in operation["parameters"] if p["name"] == "name"],
    )
    return operation
