"""Version-files credentials: one version's files, signed under the deployment's key."""

from __future__ import annotations

import base64
import json

from regserve.auth.file_grants import FileGrant, FileGrants

GRANT = FileGrant("iris", "3", "iris-0123456789ab/3-ba9876543210")


def test_a_credential_names_its_version_and_reads_back() -> None:
    grants = FileGrants("admin-token")
    credential = grants.issue(*GRANT.__dict__.values())
    assert "admin-token" not in credential
    assert grants.read(credential) == GRANT
    # the same for every deployment of the version: a restart that adopts it agrees
    assert FileGrants("admin-token").issue("iris", "3", GRANT.folder) == credential


def test_forged_altered_and_foreign_credentials_are_refused() -> None:
    grants = FileGrants("admin-token")
    credential = grants.issue("iris", "3", GRANT.folder)
    prefix, payload, mac = credential.split(".")
    other = json.dumps(["iris", "4", GRANT.folder]).encode()
    for forged in (
        f"{prefix}.{base64.urlsafe_b64encode(other).decode()}.{mac}",  # another version
        f"{prefix}.{payload}.{'0' * len(mac)}",
        f"rsvf2.{payload}.{mac}",
        credential[:-1],
        FileGrants("another-admin-token").issue(
            "iris", "3", GRANT.folder
        ),  # another deployment's (or rotated)
        "rsp_a-user-token",
        "",
        None,
        "x" * 5000,
    ):
        assert grants.read(forged) is None, forged


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    grants = FileGrants("admin-token")
    for fields in (["iris", "3"], ["iris", 3, "f"], {"model": "iris"}):
        body = f"rsvf1.{base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()}"
        assert grants.read(f"{body}.{grants._mac(body)}") is None
