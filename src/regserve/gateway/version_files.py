"""``GET /api/2.0/regserve/version-files``: a served version's model files, for its Ray replicas.

A replica on any node fetches its version's files here (``worker/fetch.py``) instead of reading
regserve's data dir. The route is open to tokens (the gateway does not authenticate it): it
takes only a version-files credential (``auth/file_grants.py``), which the backend hands to
the version's replicas, and answers:

- 401 without one, or with anything else (a user's token, the admin token);
- 403 when the credential names another model or version than the query, or when the version
  is not served any more (archived, disabled: not in the routing table);
- 503 (``Retry-After``) when this gateway does not hold the files (a follower gateway on
  another machine; the replica tries again, and a load balancer may send it to the leader);
- 200 with the tar stream of the files (``worker/fetch.py`` describes it).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from starlette.responses import StreamingResponse

from regserve.auth.credentials import token_from_header
from regserve.auth.file_grants import FileGrant
from regserve.errors import (
    InvalidParameterError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from regserve.gateway.context import services_of
from regserve.worker.fetch import FILES_PATH, archive_chunks

__all__ = ["FILES_PATH", "router"]

_HELP = (
    "The files of a served model version as a tar stream, for the version's Ray replicas "
    "(`--backend ray`): they fetch them here rather than read regserve's data dir. Takes only "
    "the version's own credential (`Authorization: Bearer <credential>`), which regserve "
    "hands to its replicas; tokens are refused (401). 403 for another version, or once the "
    "version is no longer served."
)

router = APIRouter()


@router.get(
    FILES_PATH,
    summary="Send a served version's model files to its Ray replicas (version credential)",
    description=_HELP,
    response_class=StreamingResponse,
    openapi_extra={"security": []},
)
async def version_files(
    request: Request,
    name: str | None = Query(None, description="The registered model."),
    version: str | None = Query(None, description="The version whose files are sent."),
) -> StreamingResponse:
    services = services_of(request)
    grant = services.access.file_grants.read(_credential(request))
    if grant is None:
        raise UnauthenticatedError(
            "This route takes a version-files credential (what regserve gives a version's "
            "Ray replicas), not a token."
        )
    if not name or not version:
        raise InvalidParameterError("Name the model ('name') and its version ('version').")
    if (grant.model, grant.version) != (name, version):
        raise PermissionDeniedError(
            f"This credential gives the files of version {grant.version} of '{grant.model}' only."
        )
    routes = services.router.get(name)
    if routes is None or version not in routes.versions:
        raise PermissionDeniedError(
            f"Version {version} of '{name}' is not served (archived, or serving disabled): "
            "its credential no longer gives its files."
        )
    folder = _folder(services.settings.resolved_data_dir() / "models", grant)
    return StreamingResponse(
        archive_chunks(folder),
        media_type="application/x-tar",
        headers={"Cache-Control": "no-store"},
    )


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization")
    try:
        return token_from_header(header.encode("latin-1") if header else None)
    except (UnauthenticatedError, UnicodeError):
        return None


def _folder(models_dir: Path, grant: FileGrant) -> Path:
    """The version's files in this gateway's data dir; 503 when it does not hold them."""
    folder = (models_dir / grant.folder).resolve()
    if not folder.is_relative_to(models_dir.resolve()) or not (folder / "MLmodel").is_file():
        raise UnavailableError(
            f"This gateway does not hold the files of version {grant.version} of "
            f"'{grant.model}' (a follower on another machine, or the leader still "
            "downloading them); try again or ask the leading gateway.",
            retry_after=2,
        )
    return folder
