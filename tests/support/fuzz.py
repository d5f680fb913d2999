"""The Hypothesis settings of the fuzz tests: fixed in CI, longer and random with ``make fuzz``;
and the hostile requests a low-privilege token sends to the hosted registry about a model
that is not its own."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("REGSERVE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("REGSERVE_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Victim:
    """Another principal's registered model, as an attacker who knows its ids would name it."""

    name: str
    model_id: str
    """The logged model behind version 1 (``m-...``)."""
    run_id: str
    root: str
    """Its files in the artifact store: ``<experiment>/models/<id>/artifacts``."""
    local_root: str
    """The same files on the server's disk."""
    url: str
    """The server's URL (``http(s)`` sources that point back at it)."""


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    params: dict[str, Any]
    body: bytes | None

    def describe(self) -> str:
        body = (self.body or b"")[:200]
        return f"{self.method} {self.path} params={self.params} body={body!r}"


_MLFLOW = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/")
_MODEL_OPS = [
    ("GET", "registered-models/get"),
    ("GET", "registered-models/get-latest-versions"),
    ("POST", "registered-models/get-latest-versions"),
    ("GET", "registered-models/alias"),
    ("POST", "registered-models/alias"),
    ("DELETE", "registered-models/alias"),
    ("PATCH", "registered-models/update"),
    ("POST", "registered-models/set-tag"),
    ("DELETE", "registered-models/delete-tag"),
    ("POST", "registered-models/rename"),
    ("DELETE", "registered-models/delete"),
    ("GET", "registered-models/search"),
    ("POST", "model-versions/create"),
    ("GET", "model-versions/get"),
    ("GET", "model-versions/get-download-uri"),
    ("PATCH", "model-versions/update"),
    ("POST", "model-versions/set-tag"),
    ("DELETE", "model-versions/delete-tag"),
    ("DELETE", "model-versions/delete"),
    ("POST", "model-versions/transition-stage"),
    ("GET", "model-versions/search"),
    ("GET", "/model-versions/get-artifact"),
]
STAGE_OPS = [
    ("POST", "model-versions/transition-stage"),
    ("POST", "registered-models/alias"),
    ("DELETE", "registered-models/alias"),
    ("DELETE", "model-versions/delete"),
    ("DELETE", "registered-models/delete"),
    ("POST", "registered-models/rename"),
]
"""What a principal with CAN_MANAGE_STAGING_VERSIONS may not do to a Production version."""


def _spellings(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            name,
            f" {name}",
            f"{name} ",
            name.upper(),
            f"{name}\n",
            quote(name),
            f"{name}/1",
        ]
    )


def _versions() -> st.SearchStrategy[Any]:
    spelled = ["1", "01", " 1", "+1", "1 ", "0_1", "\t1\n", "\u0661", "1.0", "-0", "2"]
    return st.one_of(st.sampled_from([*spelled, 1, 1.0, True, None]), st.text(max_size=4))


def _sources(v: Victim) -> st.SearchStrategy[str]:
    store = f"mlflow-artifacts:/{v.root}"
    return st.one_of(
        st.sampled_from(
            [
                f"models:/{v.name}/1",
                f"models:/{v.name}/Production",
                f"models:/{v.name}@champion",
                f"models:/{v.name}/latest",
                f"models:/ {v.name}/1",
                f"models:/{v.model_id}",
                store,
                f"{store}/MLmodel",
                f"{store}/../..",
                f"{store}/%2E%2E",
                f"runs:/{v.run_id}/model",
                v.local_root,
                f"file://{v.local_root}",
                f"{v.url}/api/2.0/mlflow-artifacts/artifacts/{v.root}",
                f"mlflow-artifacts://evil:1/{v.root}",
                f"models://other/{v.name}/1",
            ]
        ),
        st.text(max_size=20),
    )


def _params(v: Victim) -> st.SearchStrategy[dict[str, Any]]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "name": st.one_of(_spellings(v.name), st.text(min_size=1, max_size=8)),
        "version": _versions(),
        "stage": st.sampled_from(["Archived", "None", "Staging", "archived", " Archived", "x"]),
        "archive_existing_versions": st.booleans(),
        "alias": st.sampled_from(["champion", "x", ""]),
        "new_name": st.text(min_size=1, max_size=8),
        "newName": st.text(min_size=1, max_size=8),
        "source": _sources(v),
        "run_id": st.sampled_from([v.run_id, "", "0" * 32]),
        "model_id": st.sampled_from([v.model_id, "", "m-" + "0" * 32]),
        "key": st.sampled_from(["k", "mlflow.modelVersions"]),
        "value": st.text(max_size=8),
        "description": st.text(max_size=8),
        "filter": st.sampled_from(
            [f"name='{v.name}'", f"run_id='{v.run_id}'", "", "name LIKE '%'"]
        ),
    }
    name = values.pop("name")
    return st.fixed_dictionaries({"name": name}, optional=values)


def _artifact_paths(v: Victim) -> st.SearchStrategy[str]:
    experiment, _, _ = v.root.partition("/models/")
    folder = f"{experiment}/models/{v.model_id}"
    places = [
        v.root,
        f"{v.root}/MLmodel",
        f"{v.root}/secret.txt",
        folder,
        f"{experiment}/models",
        experiment,
        "",
        f"{experiment}/{v.run_id}",
        f"{experiment}/{v.run_id}/artifacts",
    ]
    respell = [
        lambda p: p,
        lambda p: p.replace("/", "//"),
        lambda p: p.replace("/", "/./"),
        lambda p: quote(p, safe=""),
        lambda p: quote(quote(p, safe=""), safe=""),
        lambda p: f"{p}/",
        lambda p: f"{p}/%2E%2E",
        lambda p: f"{p}/%252E%252E/%252E%252E",
        lambda p: f"0/x/../{p}",
        lambda p: f"file:{p}",
    ]
    return st.builds(lambda p, f: f(p), st.sampled_from(places), st.sampled_from(respell))


def registry_requests(
    v: Victim, ops: list[tuple[str, str]] | None = None
) -> st.SearchStrategy[FuzzRequest]:
    """Requests about ``v`` to the hosted registry's routes (``ops``: only these model routes)."""
    model = st.builds(
        _model_request,
        st.sampled_from(ops or _MODEL_OPS),
        st.sampled_from(_MLFLOW),
        _params(v),
        st.booleans(),
    )
    if ops is not None:
        return model
    one = f"{_MLFLOW[0]}logged-models/{v.model_id}"
    logged = st.builds(
        FuzzRequest,
        st.sampled_from(["GET", "PATCH", "DELETE", "POST"]),
        st.sampled_from(
            [
                one,
                f"{one}/tags",
                f"{one}/params",
                f"{one}/tags/mlflow.modelVersions",
                f"{one}/tags/mlflow.source.name",
                f"{_MLFLOW[0]}logged-models/search",
            ]
        ),
        st.just({}),
        _params(v).map(
            lambda p: json.dumps(
                {
                    "model_id": v.model_id,
                    "status": "LOGGED_MODEL_UPLOAD_FAILED",
                    "tags": [{"key": p.get("key", "k"), "value": p.get("value", "")}],
                    "params": [{"key": "k", "value": "v"}],
                    "experiment_ids": ["0"],
                    "filter": "tags.`mlflow.modelVersions` LIKE '%'",
                }
            ).encode()
        ),
    )
    artifacts = st.builds(
        _artifact_request,
        st.sampled_from(["GET", "PUT", "DELETE", "MPU", "LIST"]),
        _artifact_paths(v),
        st.sampled_from([v.run_id, v.model_id, ""]),
    )
    return st.one_of(model, logged, artifacts)


def _model_request(
    op: tuple[str, str], prefix: str, params: dict[str, Any], as_json: bool
) -> FuzzRequest:
    method, path = op
    url = path if path.startswith("/") else prefix + path
    if method == "GET":
        query = {k: str(v) for k, v in params.items() if v is not None}
        return FuzzRequest(method, url, query, json.dumps(params).encode() if as_json else None)
    return FuzzRequest(method, url, {}, json.dumps(params).encode())


def _artifact_request(kind: str, path: str, owner_id: str) -> FuzzRequest:
    store = "/api/2.0/mlflow-artifacts/artifacts"
    if kind == "MPU":
        return FuzzRequest("POST", f"/api/2.0/mlflow-artifacts/mpu/create/{path}", {}, b"{}")
    if kind == "LIST":
        if owner_id.startswith("m-"):
            url = f"/ajax-api/2.0/mlflow/logged-models/{owner_id}/artifacts/files"
            return FuzzRequest("GET", url, {"artifact_file_path": path or "MLmodel"}, None)
        if owner_id:
            return FuzzRequest("GET", "/get-artifact", {"run_id": owner_id, "path": path}, None)
        return FuzzRequest("GET", store, {"path": path}, None)
    body = b"flavors: {}\n" if kind == "PUT" else None
    return FuzzRequest(kind, f"{store}/{path}", {}, body)
