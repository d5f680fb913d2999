"""/openapi.json covers every route with its schemas, and docs/api.md is generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regserve.gateway.apidoc import render
from regserve.gateway.asgi import build_api
from regserve.gateway.openapi import ANSWERS, SCORING_PATH, SPLIT_PATH

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_api(None, None).openapi()


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in spec["paths"].items() for m, op in ops.items()}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_every_route_has_its_answer_schema(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert set(operations) - {("post", SCORING_PATH), ("post", SPLIT_PATH)} == set(ANSWERS)
    for key, op in operations.items():
        ok = op["responses"]["200"]["content"]
        schema = next(iter(ok.values()))["schema"]
        # Not FastAPI's "any object" for a route returning dict[str, Any].
        assert "$ref" in schema or schema == {"type": "string"}, (key, schema)


def test_errors_are_documented_in_regserves_shape(spec: dict[str, Any]) -> None:
    for key, op in _operations(spec).items():
        assert "422" not in op["responses"], key  # validation errors are 400 here
        errors = {s: r for s, r in op["responses"].items() if not s.startswith("2")}
        if key != ("get", "/health"):
            assert "401" in errors, key
        # A scoring error may be MLflow's own body, with its extra fields; /health's 503 is
        # its own answer, saying what is still starting.
        scoring = key in {("post", SCORING_PATH), ("post", SPLIT_PATH)}
        model = "ScoringErrorAnswer" if scoring else "ErrorAnswer"
        if key == ("get", "/health"):
            model = "HealthAnswer"
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model}"}, (key, status)


def test_taken_principal_names_are_documented_as_409(spec: dict[str, Any]) -> None:
    for kind in ("Users", "ServicePrincipals"):
        responses = spec["paths"][f"/api/2.0/preview/scim/v2/{kind}"]["post"]["responses"]
        assert "409" in responses, kind


def test_the_scoring_route_is_described(spec: dict[str, Any]) -> None:
    op = spec["paths"][SCORING_PATH]["post"]
    assert [p["name"] for p in op["parameters"]] == ["name", "ref"]
    assert set(op["requestBody"]["content"]) == {
        "application/json",
        "text/csv",
        "application/x-parquet",
    }
    assert {"413", "415", "503", "504"} <= set(op["responses"])
    split = spec["paths"][SPLIT_PATH]["post"]
    assert [p["name"] for p in split["parameters"]] == ["name"]
    assert {"413", "415", "503", "504"} <= set(split["responses"])


def test_only_the_open_routes_need_no_token(spec: dict[str, Any]) -> None:
    assert spec["security"] == [{"bearer": []}, {"basic": []}]
    open_routes = {k for k, op in _operations(spec).items() if op.get("security") == []}
    assert open_routes == {
        ("get", "/health"),
        ("post", "/api/2.0/regserve/registry-webhook"),
        ("get", "/api/2.0/regserve/version-files"),  # its own credential, never a token
    }


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[-1] in schemas, ref


def test_docs_api_md_is_generated_from_the_spec(spec: dict[str, Any]) -> None:
    assert DOCS.read_text() == render(spec), (
        "docs/api.md is stale: run `python -m regserve.gateway.apidoc > docs/api.md`"
    )
