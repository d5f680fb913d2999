"""A request's parameters as MLflow's server reads them, in one canonical form.

The registry guard checks a permission on the model and version a request names, and MLflow
then acts on the model and version *it* reads from the same request. The two must never
disagree, however the request spells them, so this module is the one place that reads them:

- where: the query string for a GET that has one (the first value of a repeated key, as
  Flask's ``args.get``), the JSON body otherwise, HEAD included (MLflow's handlers test
  ``method == "GET"``), decoded twice when the body is a JSON string;
- field names: protobuf's JSON parser also takes each field's camelCase name (``newName``,
  ``runId``, ``archiveExistingVersions``), so those are read under the field's own name;
- versions: MLflow's stores look a version up with ``int(version)``, so ``"01"``, ``" 1"``,
  ``"+1"`` and ``"1_0"`` are versions 1, 1, 1 and 10: the canonical version is ``str(int(v))``.

Every route of the hosted registry that takes a name or a version gets them from
:func:`registry_params`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

__all__ = ["canonical_version", "query_params", "reads_query", "registry_params"]

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def query_params(query_string: bytes) -> dict[str, str]:
    """The query string's parameters (the first value of each), decoded as Flask does."""
    raw = query_string.decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def reads_query(method: str, query_string: bytes) -> bool:
    """Whether MLflow reads this request's parameters from its query string (else its body)."""
    return method == "GET" and bool(query_params(query_string))


def registry_params(method: str, query_string: bytes, body: bytes) -> dict[str, Any]:
    """The request's parameters where MLflow reads them, in canonical form."""
    if reads_query(method, query_string):
        return canonical_params(dict(query_params(query_string)))
    try:
        data = json.loads(body) if body.strip() else {}
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return canonical_params(data) if isinstance(data, dict) else {}


def canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    """camelCase keys under their field names (MLflow refuses a request that gives both),
    and ``version`` as MLflow's ``int()`` reads it."""
    canonical: dict[str, Any] = {}
    for key, value in params.items():
        field = _CAMEL.sub(lambda m: "_" + m.group(1).lower(), key) if isinstance(key, str) else key
        canonical.setdefault(field, value)
    if "version" in canonical:
        canonical["version"] = canonical_version(canonical["version"])
    return canonical


def canonical_version(value: object) -> object:
    """``str(int(value))`` when MLflow's ``int()`` takes ``value`` (``"01"``, ``" 1"``,
    ``"+1"`` -> ``"1"``); ``value`` unchanged otherwise (MLflow refuses it)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    try:
        return str(int(value))
    except ValueError:
        return value
