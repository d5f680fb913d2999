"""Schemathesis against a real ``regserve up``, from the spec it serves at ``/openapi.json``.

For every operation in the spec, schemathesis (its Python API: one Hypothesis strategy per
operation) generates requests from the parameter and body schemas, in positive mode (valid
requests) and negative mode (requests that break the schema), sends them over HTTP and checks
each answer: not a server error (no 5xx), and conforming to the spec (status declared, content
type declared, body matching that status's schema). As the admin; every GET once more as a
token of a principal with no grant; and the scoring URL of the served version, so that
generated bodies reach the real worker. Schemathesis' examples and coverage phases, which only
its own runner drives, are not run.

Nothing is left out. Destructive operations run too, and cannot break the run:

- ``DELETE /api/2.0/token-management/tokens/{token_id}`` and ``POST /api/2.0/token/delete``:
  the admin's token id is not guessable;
- ``POST .../endpoints/disable`` and ``PUT .../update-cluster-config``: schemathesis does not
  know the served model's name, so they refuse with 4xx. ``test_still_serving_after_schemathesis``
  would catch a generated request that reached the model.

CI runs ``REGSERVE_SCHEMATHESIS_EXAMPLES`` (15) derandomized examples per operation and mode;
``make fuzz`` runs 200 freshly random ones (``REGSERVE_FUZZ_RANDOM=1``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from regserve.gateway.openapi import SCORING_PATH
from tests.support.fuzz import FUZZ
from tests.support.registry import one_version_served
from tests.support.server import ADMIN_TOKEN, RegServeProcess

MODEL = "schemathesis-model"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES = int(os.environ.get("REGSERVE_SCHEMATHESIS_EXAMPLES", "15"))
# Each test walks every operation: its time grows with the examples (make fuzz runs 200).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(max(300, EXAMPLES * 15))]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The fuzz tests' settings (tests/support/fuzz.py), with this module's example count; every
# health check off: a strategy per operation is built from the live spec.
SETTINGS = settings(FUZZ, max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    yield from one_version_served(tmp_path_factory.mktemp("schemathesis") / "data", MODEL)


@pytest.fixture(scope="module")
def api_schema(served: RegServeProcess) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", headers=ADMIN)


def _failures(
    schema: Any, mode: GenerationMode, url: str, headers: dict[str, str], **fixed: Any
) -> list[str]:
    """Run each operation's generated cases; one entry per operation that failed a check."""
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @SETTINGS
        @given(case=operation.as_strategy(mode, **fixed))
        def run(case: Any) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            pass  # nothing in the operation to get wrong (GET /health has no parameter)
        except FlakyStrategyDefinition:
            pass  # schemathesis' negative generator, not the server: it drew differently twice
        except (FailureGroup, Exception) as error:  # the checks' failures, or a transport error
            failures.append(f"{operation.label} ({mode}): {error}"[:2000])
    assert operations > 0, "the spec has no operation"
    return failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_as_admin(
    api_schema: Any, served: RegServeProcess, mode: GenerationMode
) -> None:
    failures = _failures(api_schema, mode, served.url, ADMIN)
    assert not failures, "\n\n".join(failures)


def test_reads_as_a_principal_without_rights(api_schema: Any, served: RegServeProcess) -> None:
    """Every GET as a token with no grant: refusals in the spec's shape, never a 5xx."""
    created = served.client.post(
        "/api/2.0/preview/scim/v2/Users", json={"userName": "schemathesis-nobody"}
    )
    assert created.status_code == 200, created.text
    token = served.client.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": "schemathesis-nobody", "lifetime_seconds": 3600},
    )
    assert token.status_code == 200, token.text
    nobody = {"Authorization": f"Bearer {token.json()['token_value']}"}
    reads = api_schema.include(method="GET")
    failures = _failures(reads, GenerationMode.POSITIVE, served.url, nobody)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_scoring_the_served_version(
    api_schema: Any, served: RegServeProcess, mode: GenerationMode
) -> None:
    """Generated bodies reach the real worker: a prediction or a 4xx, as the spec says."""
    scoring = api_schema.include(path=SCORING_PATH, method="POST")
    failures = _failures(
        scoring, mode, served.url, ADMIN, path_parameters={"name": MODEL, "ref": "1"}
    )
    assert not failures, "\n\n".join(failures)


# Each answered 500 or 503 before its fix: (method, URL, request, status now).
FOUND = [
    # int() refuses what str.isdigit() accepts: a SCIM id or a ref of "²".
    (
        "PATCH",
        "/api/2.0/preview/scim/v2/ServicePrincipals/²",
        {"json": {"Operations": [{"op": "add", "path": "active", "value": True}]}},
        404,
    ),
    ("POST", f"/model/{MODEL}/²/invocations", {"json": {"dataframe_records": [ROW]}}, 404),
    # MLflow refuses names with ':' or '/' as INVALID_PARAMETER_VALUE; it was read as an
    # unavailable registry (503).
    ("GET", "/api/2.0/regserve/models/get", {"params": {"registered_model_name": "a:b"}}, 400),
    (
        "GET",
        "/api/2.0/regserve/models/get-input-example",
        {"params": {"registered_model_name": "a:b", "version": "1"}},
        400,
    ),
    (
        "PATCH",
        "/api/2.0/permissions/registered-models/a:b",
        {"json": {"access_control_list": []}},
        400,
    ),
]


@pytest.mark.parametrize(("method", "url", "request_", "status"), FOUND)
def test_what_schemathesis_found_is_a_clear_4xx(
    served: RegServeProcess, method: str, url: str, request_: dict[str, Any], status: int
) -> None:
    r = served.client.request(method, url, **request_)
    assert r.status_code == status, r.text
    answer = r.json()
    assert set(answer) == {"error_code", "message"}, answer
    assert answer["message"], answer


def test_still_serving_after_schemathesis(served: RegServeProcess) -> None:
    assert served.process is not None
    assert served.process.poll() is None
    assert served.versions(MODEL)["1"]["state"] == "VERSION_STATE_READY"
    r = served.score(MODEL, "1", {"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    crashes = [e for e in served.events(MODEL) if e["event_type"] == "WORKER_CRASHED"]
    assert crashes == []
    assert httpx.get(f"{served.url}/health").status_code == 200
