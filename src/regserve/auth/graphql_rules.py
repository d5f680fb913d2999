"""Which GraphQL requests to the hosted MLflow server a principal who is not an admin may send.

MLflow's web UI reads a run, an experiment and metric histories through ``POST /graphql``
(its run page asks nothing else). Everything there is what the REST rules
(``mlflow_rules.py``) already give every principal, the tracking reads, except two kinds of
field that reach what the REST rules guard:

- ``mlflowListArtifacts`` lists files, which are deny by default (``artifact_rules.py``), and
  ``mlflowSearchModelVersions`` names registered models: both are for admins only;
- a run's ``modelVersions`` names the registered models made from it: allowed, unaliased, and
  the answer's ``modelVersions`` lists are cut to the models the caller may read (the guard
  does that, ``registry_answers.readable_model_versions``). Unaliased, so that every such
  list is under that key in the answer.

An operation's top-level fields must be among :data:`OPEN_ROOTS` (no introspection, no
fragments at the top); every field of the document is checked, fragments included. Only a
JSON body ``{"query": ..., "variables": ..., "operationName": ...}`` is read (no batches).
"""

from __future__ import annotations

import json
from typing import Any

from regserve.errors import InvalidParameterError, PermissionDeniedError

__all__ = ["MODEL_VERSIONS_FIELD", "OPEN_ROOTS", "check_graphql"]

OPEN_ROOTS = frozenset(
    {
        "mlflowGetRun",
        "mlflowGetExperiment",
        "mlflowGetMetricHistoryBulkInterval",
        "mlflowSearchRuns",
        "mlflowSearchDatasets",
        "__typename",
    }
)
"""Top-level fields of the reads everyone may make (their REST routes are open to all)."""
MODEL_VERSIONS_FIELD = "modelVersions"
_CLOSED = frozenset({"mlflowListArtifacts", "mlflowSearchModelVersions"})
_MAX_TOKENS = 20_000  # MLflow's UI sends a few hundred


def check_graphql(body: bytes) -> None:
    """Raise unless a principal who is not an admin may send this ``/graphql`` body."""
    query = _query(body)
    from graphql import GraphQLError, parse

    try:
        document = parse(query, max_tokens=_MAX_TOKENS)
    except GraphQLError as error:
        raise InvalidParameterError(f"The GraphQL query does not parse: {error.message}") from None
    for definition in document.definitions:
        if definition.kind == "operation_definition":
            _check_roots(definition)
        elif definition.kind != "fragment_definition":
            raise PermissionDeniedError(f"Only admins may send GraphQL {definition.kind}s.")
    _check_fields(document)


def _query(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidParameterError("A GraphQL request is a JSON object.") from None
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        raise InvalidParameterError(
            "A GraphQL request is one JSON object with a 'query' string (no batches)."
        )
    return str(data["query"])


def _check_roots(operation: Any) -> None:
    for selection in operation.selection_set.selections:
        name = selection.name.value if selection.kind == "field" else None
        if name not in OPEN_ROOTS:
            raise PermissionDeniedError(
                f"Only admins may ask GraphQL for {name or 'fragments at the top level'}; "
                f"others may ask {', '.join(sorted(OPEN_ROOTS - {'__typename'}))}."
            )


def _check_fields(document: Any) -> None:
    from graphql import FieldNode, Visitor, visit

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            name = node.name.value
            if name in _CLOSED:
                raise PermissionDeniedError(
                    f"Only admins may ask GraphQL for {name}: use the REST API, whose "
                    "answers are cut to what you may read."
                )
            if name == MODEL_VERSIONS_FIELD and node.alias is not None:
                raise PermissionDeniedError(f"'{MODEL_VERSIONS_FIELD}' may not be aliased.")

    visit(document, Fields())
