"""Version-files credentials: what a Ray replica fetches its version's model files with.

A replica runs a model's code, which is not trusted, so what it holds must read that one
version's files and nothing else. It is not a token: regserve issues it per version when it
deploys the version (``backends/ray/files.py``), signed with HMAC-SHA256 under a key derived
from the admin token (which every gateway of a deployment holds, and the database does not),
and it names the model, the version and where the gateway keeps the version's files
(relative to ``<data-dir>/models``). So it:

- counts on one route only (``GET /api/2.0/regserve/version-files``, which is open to tokens
  and checks this instead): ``Authorization: Bearer <credential>`` on any other path is an
  unknown token (401);
- reads the version it names and no other (403 for another model or version);
- ends when the version stops being served (archived, its model disabled or deleted: the
  route reads the routing table), and for every version at once when the admin token changes.
  It does not expire by itself: Ray may start a replica at any time (a restart, scaling up
  from zero), and it must still fetch the files then.

It is the same for every deployment of one version (no nonce): a regserve that restarts and
adopts the version's running application (``backends/ray/adoption.py``) would deploy it with
the same credential, which is what lets it tell that nothing changed.

Format: ``rsvf1.<base64url of the JSON [model, version, folder]>.<hmac hex>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = ["FileGrant", "FileGrants"]

_PREFIX = "rsvf1"
_CONTEXT = b"regserve version files v1"
_MAX_CHARS = 4096


@dataclass(frozen=True)
class FileGrant:
    """What a valid credential gives: the files of one version."""

    model: str
    version: str
    folder: str
    """The version's files, relative to ``<data-dir>/models`` (``controller/model_files.py``)."""


class FileGrants:
    """Issues and reads version-files credentials."""

    def __init__(self, admin_token: str) -> None:
        self._key = hmac.new(admin_token.encode("utf-8"), _CONTEXT, hashlib.sha256).digest()

    def issue(self, model: str, version: str, folder: str) -> str:
        """The credential for the files of ``version`` of ``model``, kept in ``folder``."""
        payload = json.dumps([model, version, folder], ensure_ascii=True)
        body = f"{_PREFIX}.{base64.urlsafe_b64encode(payload.encode()).decode()}"
        return f"{body}.{self._mac(body)}"

    def read(self, credential: str | None) -> FileGrant | None:
        """The grant of a credential regserve issued; None for anything else."""
        if not credential or len(credential) > _MAX_CHARS:
            return None
        body, _, mac = credential.rpartition(".")
        prefix, _, encoded = body.partition(".")
        if prefix != _PREFIX or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(encoded.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeError):
            return None
        if not (isinstance(fields, list) and len(fields) == 3):
            return None
        if not all(isinstance(field, str) for field in fields):
            return None
        return FileGrant(*fields)

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
