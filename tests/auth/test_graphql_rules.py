"""What a principal who is not an admin may ask MLflow's ``/graphql`` (in-process)."""

from __future__ import annotations

import json

import pytest

from regserve.auth.graphql_rules import check_graphql
from regserve.errors import InvalidParameterError, PermissionDeniedError

# The query MLflow's web UI sends for a run's page (mlflow 3.x), cut to its shape.
RUN_PAGE = """
query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
  mlflowGetRun(input: $data) {
    apiError { code message }
    run {
      info { runName runUuid experimentId }
      experiment { experimentId name }
      modelVersions { status version name source }
      data { metrics { key value } params { key value } }
    }
  }
}
"""


def _body(query: str, **extra: object) -> bytes:
    return json.dumps({"query": query, "variables": {}, **extra}).encode()


@pytest.mark.parametrize(
    "query",
    [
        RUN_PAGE,
        'query { mlflowSearchRuns(input: {experimentIds: ["0"]}) { runs { info { runId } } } }',
        'mutation { mlflowSearchRuns(input: {experimentIds: ["0"]}) { nextPageToken } }',
        "query Q($i: MlflowGetExperimentInput!) { mlflowGetExperiment(input: $i) { __typename } }",
        "query { mlflowGetMetricHistoryBulkInterval(input: {}) { metrics { key } } }",
        "{ __typename }",
        # a fragment below the top level is walked like the rest, and allowed when it is
        "query { mlflowGetRun(input: {}) { run { ...R } } } "
        "fragment R on MlflowRun { info { runName } }",
    ],
)
def test_the_tracking_reads_are_allowed(query: str) -> None:
    check_graphql(_body(query))


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            'query { mlflowListArtifacts(input: {runId: "r"}) { files { path } } }',
            "mlflowListArtifacts",
        ),
        (
            "query { mlflowSearchModelVersions(input: {}) { modelVersions { name } } }",
            "mlflowSearchModelVersions",
        ),
        # hidden in a fragment, or under an alias: still found
        (
            "query { mlflowGetRun(input: {}) { run { ...R } } } "
            "fragment R on MlflowRun { x: experiment { name } } "
            "fragment S on Query { mlflowListArtifacts(input: {}) { rootUri } }",
            "mlflowListArtifacts",
        ),
        ("query { mlflowGetRun(input: {}) { run { mv: modelVersions { name } } } }", "aliased"),
        ("query { __schema { types { name } } }", "__schema"),
        ('query { test(inputString: "x") { output } }', "test"),
        ('mutation { testMutation(inputString: "x") { output } }', "testMutation"),
        (
            "query { ...Q } fragment Q on Query { mlflowGetRun(input: {}) { __typename } }",
            "fragments",
        ),
    ],
)
def test_what_the_rest_rules_guard_is_for_admins(query: str, says: str) -> None:
    with pytest.raises(PermissionDeniedError, match=says):
        check_graphql(_body(query))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'[{"query": "{ __typename }"}]',  # a batch
        b'{"query": 1}',
        b'"{\\"query\\": \\"{ __typename }\\"}"',  # MLflow's /graphql does not decode twice
        _body("query { mlflowGetRun("),
    ],
)
def test_a_body_that_is_not_one_query_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidParameterError):
        check_graphql(body)
