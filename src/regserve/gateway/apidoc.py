"""docs/api.md from the OpenAPI spec: ``python -m regserve.gateway.apidoc > docs/api.md``.

``tests/gateway/test_openapi.py`` fails when docs/api.md differs from what this prints.
"""

from __future__ import annotations

import sys
from typing import Any

from regserve.gateway.asgi import build_api

__all__ = ["render"]

_HEADER = """\
# regserve HTTP API

Generated from `/openapi.json` by `python -m regserve.gateway.apidoc > docs/api.md`; do not
edit by hand (a test fails when this file is stale). Every route takes a token as
`Authorization: Bearer <token>` or basic auth `token:<token>` unless it says otherwise;
who may call what is in [security.md](security.md). Errors are always
`{"error_code": "...", "message": "..."}` (schema `ErrorAnswer`; on the scoring URL
`ScoringErrorAnswer`: MLflow's own body may add `error_class` and `sqlstate`). The hosted MLflow
tracking and registry API is served beside these routes and documented by MLflow; regserve
checks every call to it (security.md) and gives its error answers this shape too. MLflow's own
web UI is served at `/mlflow/` (the same server and checks, for a browser signed in at
`/ui/signin`), and `GET /` from a browser (`Accept: text/html`) is a page that goes on to
`/mlflow/` plus the URL's fragment (the links MLflow prints) or to `/ui/` ([ui.md](ui.md)).
A JSON body sent with no `Content-Type`, or as `application/x-www-form-urlencoded` (what
`curl -d` sends) or `text/plain`, is read as JSON on these routes (not on the scoring URL,
which speaks MLflow's protocol); one that is not JSON gets a 400 saying what to send.
"""


def render(spec: dict[str, Any]) -> str:
    """The Markdown page for ``spec``."""
    lines = [_HEADER, *_errors(spec)]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            lines += _operation(method, path, operation)
    lines += ["## Schemas", ""]
    for name, schema in sorted(spec["components"]["schemas"].items()):
        lines += _schema(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"## `{method.upper()} {path}`", "", op.get("summary", ""), ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if op.get("security") == []:
        lines += ["No token.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            text = p.get("description") or schema.get("description", "")
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(schema)} | "
                f"{'yes' if p.get('required') else 'no'} | {_cell(text)} |"
            )
        lines.append("")
    body = op.get("requestBody", {}).get("content", {})
    if body:
        kinds = ", ".join(f"`{ct}` ({_type(c.get('schema', {}))})" for ct, c in body.items())
        lines += [f"Body: {kinds}.", ""]
    responses = op.get("responses", {})
    for status, response in responses.items():
        if _is_answer(status, response):
            content = response.get("content", {})
            kinds = ", ".join(f"`{ct}` {_type(c.get('schema', {}))}" for ct, c in content.items())
            lines += [f"Answer {status}: {kinds}. {_cell(response.get('description', ''))}", ""]
    errors = [status for status, answer in responses.items() if not _is_answer(status, answer)]
    if errors:
        lines += [f"Errors: {', '.join(errors)}.", ""]
    return lines


def _is_answer(status: str, response: dict[str, Any]) -> bool:
    """A 2xx, or a status answered with the route's own body (a starting /health's 503), not
    with an error."""
    if status.startswith("2"):
        return True
    refs = [c.get("schema", {}).get("$ref", "") for c in response.get("content", {}).values()]
    return bool(refs) and not any(ref.endswith("ErrorAnswer") for ref in refs)


def _errors(spec: dict[str, Any]) -> list[str]:
    """One table of what each error status means, first description wins (the open routes'
    refusals are their own: described at each)."""
    meaning: dict[str, str] = {}
    for operations in spec["paths"].values():
        for op in operations.values():
            if op.get("security") == []:
                continue
            for status, response in op.get("responses", {}).items():
                if not _is_answer(status, response):
                    meaning.setdefault(status, _cell(response.get("description", "")))
    rows = [f"| {status} | {text} |" for status, text in sorted(meaning.items())]
    return ["| status | meaning |", "|---|---|", *rows, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    properties = schema.get("properties", {})
    if not properties:
        return [*lines, "An object with no fields." if schema.get("type") == "object" else "", ""]
    required = set(schema.get("required", ()))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, spec in properties.items():
        text = spec.get("description", "")
        lines.append(
            f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} | "
            f"{_cell(text)} |"
        )
    return [*lines, ""]


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return (
            f"[{schema['$ref'].rsplit('/', 1)[-1]}](#{schema['$ref'].rsplit('/', 1)[-1].lower()})"
        )
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind is None:
        return "any"
    return str(kind) + (f" ({schema['format']})" if "format" in schema else "")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def main() -> None:
    sys.stdout.write(render(build_api(None, None).openapi()))


if __name__ == "__main__":
    main()
