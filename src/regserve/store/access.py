"""The store's half for who may do what: principals, tokens and model permissions.

A mixin of :class:`regserve.store.StateStore` (the one reader and writer of the database),
kept in its own module because it is its own concern.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from regserve.errors import AlreadyExistsError
from regserve.store.records import GrantRecord, PrincipalRecord, TokenRecord
from regserve.store.tables import EventRow, GrantRow, PrincipalRow, TokenRow, TrackingOwnerRow

__all__ = ["AccessStoreMixin"]


class AccessStoreMixin:
    """Principals, token hashes, model ACLs and the audit trail. Methods block."""

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- principals --------------------------------------------------------------------------

    def create_principal(
        self,
        name: str,
        kind: str,
        *,
        application_id: str | None = None,
        is_admin: bool = False,
        allow_cluster_create: bool = False,
        created_at: int,
    ) -> PrincipalRecord:
        """Add a principal; AlreadyExistsError when the name (or application id) is taken."""
        row = PrincipalRow(
            name=name,
            kind=kind,
            application_id=application_id,
            is_admin=is_admin,
            allow_cluster_create=allow_cluster_create,
            created_at=created_at,
        )
        try:
            with self._session() as s:
                s.add(row)
                s.flush()
                return _principal(row)
        except IntegrityError:
            raise AlreadyExistsError(f"A principal named '{name}' already exists.") from None

    def ensure_admin_principal(self, name: str, created_at: int) -> PrincipalRecord:
        """The bootstrap admin: created when missing, kept an admin when present."""
        with self._session() as s:
            row = s.scalars(select(PrincipalRow).where(PrincipalRow.name == name)).one_or_none()
            if row is None:
                row = PrincipalRow(
                    name=name,
                    kind="user",
                    is_admin=True,
                    allow_cluster_create=True,
                    created_at=created_at,
                )
                s.add(row)
            row.is_admin = row.allow_cluster_create = row.active = True
            s.flush()
            return _principal(row)

    def get_principal(self, principal_id: int) -> PrincipalRecord | None:
        with self._session() as s:
            row = s.get(PrincipalRow, principal_id)
            return _principal(row) if row else None

    def find_principal(self, key: str, kind: str | None = None) -> PrincipalRecord | None:
        """The principal named ``key``, or the service principal whose application id it is."""
        with self._session() as s:
            query = select(PrincipalRow).where(
                (PrincipalRow.name == key) | (PrincipalRow.application_id == key)
            )
            if kind is not None:
                query = query.where(PrincipalRow.kind == kind)
            rows = list(s.scalars(query))
            exact = [r for r in rows if r.application_id == key] or rows
            return _principal(exact[0]) if exact else None

    def list_principals(self, kind: str | None = None) -> list[PrincipalRecord]:
        with self._session() as s:
            query = select(PrincipalRow).order_by(PrincipalRow.name)
            if kind is not None:
                query = query.where(PrincipalRow.kind == kind)
            return [_principal(r) for r in s.scalars(query)]

    def update_principal(
        self,
        principal_id: int,
        *,
        active: bool | None = None,
        is_admin: bool | None = None,
        allow_cluster_create: bool | None = None,
    ) -> PrincipalRecord | None:
        """Change what is given (None leaves it); None when there is no such principal."""
        with self._session() as s:
            row = s.get(PrincipalRow, principal_id)
            if row is None:
                return None
            if active is not None:
                row.active = active
            if is_admin is not None:
                row.is_admin = is_admin
            if allow_cluster_create is not None:
                row.allow_cluster_create = allow_cluster_create
            s.flush()
            return _principal(row)

    def delete_principal(self, principal_id: int) -> PrincipalRecord | None:
        """Remove a principal with its tokens and its direct grants; None when unknown."""
        with self._session() as s:
            row = s.get(PrincipalRow, principal_id)
            if row is None:
                return None
            record = _principal(row)
            s.execute(delete(TokenRow).where(TokenRow.principal_id == principal_id))
            s.execute(
                delete(GrantRow).where(
                    GrantRow.grantee_type == "principal", GrantRow.grantee == str(principal_id)
                )
            )
            # Its runs and logged models belong to no one now (admins may still change them):
            # a later principal given the same id must not inherit them.
            s.execute(delete(TrackingOwnerRow).where(TrackingOwnerRow.principal_id == principal_id))
            s.delete(row)
            return record

    # -- tokens ------------------------------------------------------------------------------

    def add_token(self, record: TokenRecord, token_hash: str) -> None:
        with self._session() as s:
            s.add(
                TokenRow(
                    token_id=record.token_id,
                    principal_id=record.principal_id,
                    token_hash=token_hash,
                    comment=record.comment,
                    creation_time=record.creation_time,
                    expiry_time=record.expiry_time,
                    created_by=record.created_by,
                )
            )

    def token_by_hash(self, token_hash: str) -> tuple[TokenRecord, PrincipalRecord] | None:
        """The live or dead token whose value hashes to ``token_hash``, and its principal."""
        with self._session() as s:
            found = s.execute(
                select(TokenRow, PrincipalRow)
                .join(PrincipalRow, PrincipalRow.id == TokenRow.principal_id)
                .where(TokenRow.token_hash == token_hash)
            ).one_or_none()
            return (_token(found[0]), _principal(found[1])) if found else None

    def list_tokens(self, principal_id: int | None = None) -> list[TokenRecord]:
        """Tokens not revoked (expired ones included), oldest first."""
        with self._session() as s:
            query = select(TokenRow).where(TokenRow.revoked_at.is_(None))
            if principal_id is not None:
                query = query.where(TokenRow.principal_id == principal_id)
            query = query.order_by(TokenRow.creation_time, TokenRow.token_id)
            return [_token(r) for r in s.scalars(query)]

    def revoke_token(
        self, token_id: str, revoked_at: int, principal_id: int | None = None
    ) -> TokenRecord | None:
        """Revoke a live token (of ``principal_id`` when given); None when there is none."""
        with self._session() as s:
            row = s.get(TokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return None
            if principal_id is not None and row.principal_id != principal_id:
                return None
            row.revoked_at = revoked_at
            return _token(row)

    # -- model permissions -------------------------------------------------------------------

    def get_grants(self, model_name: str) -> list[GrantRecord]:
        with self._session() as s:
            query = (
                select(GrantRow)
                .where(GrantRow.model_name == model_name)
                .order_by(GrantRow.grantee_type, GrantRow.grantee)
            )
            return [GrantRecord(r.grantee_type, r.grantee, r.level) for r in s.scalars(query)]

    def put_grants(self, model_name: str, grants: Iterable[GrantRecord], *, replace: bool) -> None:
        """Set the given entries (one per grantee); ``replace`` drops every other entry first."""
        with self._session() as s:
            if replace:
                s.execute(delete(GrantRow).where(GrantRow.model_name == model_name))
                s.flush()
            for grant in grants:
                row = s.scalars(
                    select(GrantRow).where(
                        GrantRow.model_name == model_name,
                        GrantRow.grantee_type == grant.grantee_type,
                        GrantRow.grantee == grant.grantee,
                    )
                ).one_or_none()
                if row is None:
                    row = GrantRow(
                        model_name=model_name,
                        grantee_type=grant.grantee_type,
                        grantee=grant.grantee,
                    )
                    s.add(row)
                row.level = grant.level

    def remove_grants(self, model_name: str, grantees: Iterable[tuple[str, str]]) -> None:
        with self._session() as s:
            for grantee_type, grantee in grantees:
                s.execute(
                    delete(GrantRow).where(
                        GrantRow.model_name == model_name,
                        GrantRow.grantee_type == grantee_type,
                        GrantRow.grantee == grantee,
                    )
                )

    def rename_grants(self, old_name: str, new_name: str) -> None:
        """A renamed registered model keeps its ACL."""
        with self._session() as s:
            s.execute(delete(GrantRow).where(GrantRow.model_name == new_name))
            s.execute(
                update(GrantRow).where(GrantRow.model_name == old_name).values(model_name=new_name)
            )

    def drop_grants(self, model_name: str) -> None:
        """A deleted registered model's ACL goes with it (a new one of that name starts bare)."""
        with self._session() as s:
            s.execute(delete(GrantRow).where(GrantRow.model_name == model_name))

    # -- owners of runs and logged models ----------------------------------------------------

    def record_owner(self, kind: str, object_id: str, principal_id: int, created_at: int) -> None:
        """``principal_id`` created the run or logged model ``object_id`` (``kind``: ``run`` or
        ``logged_model``). The first record stands: ids are never reused."""
        with self._session() as s:
            if s.get(TrackingOwnerRow, (kind, object_id)) is None:
                row = TrackingOwnerRow(
                    kind=kind, object_id=object_id, principal_id=principal_id, created_at=created_at
                )
                s.add(row)

    def owner_of(self, kind: str, object_id: str) -> int | None:
        """The id of the principal who created the run or logged model; None when unknown
        (created before owners were recorded, outside regserve, or by a deleted principal)."""
        with self._session() as s:
            row = s.get(TrackingOwnerRow, (kind, object_id))
            return row.principal_id if row is not None else None

    # -- audit -------------------------------------------------------------------------------

    def list_audit_events(self, limit: int = 500) -> list[tuple[int, str, str, str, str]]:
        """The newest ``limit`` events caused by a principal, oldest first:
        ``(timestamp, model_name or "", event_type, message, principal)``."""
        with self._session() as s:
            rows = list(
                s.scalars(
                    select(EventRow)
                    .where(EventRow.principal.is_not(None))
                    .order_by(EventRow.timestamp.desc(), EventRow.id.desc())
                    .limit(limit)
                )
            )
        return [
            (r.timestamp, r.model_name, r.event_type, r.message, r.principal or "")
            for r in reversed(rows)
        ]


def _principal(row: PrincipalRow) -> PrincipalRecord:
    return PrincipalRecord(
        row.id,
        row.name,
        row.kind,
        row.application_id,
        bool(row.is_admin),
        bool(row.allow_cluster_create),
        row.created_at,
        bool(row.active),
    )


def _token(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        row.token_id,
        row.principal_id,
        row.comment,
        row.creation_time,
        row.expiry_time,
        row.created_by,
        row.revoked_at,
    )
