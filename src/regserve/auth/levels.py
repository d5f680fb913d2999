"""Permission levels on registered models, each including the ones before it."""

from __future__ import annotations

from enum import IntEnum

from regserve.errors import InvalidParameterError

__all__ = ["ALL_USERS_GROUP", "GROUPS", "PermissionLevel", "level_for_stage"]

ALL_USERS_GROUP = "users"
"""Databricks' name for the group every principal belongs to ("all users")."""
ADMINS_GROUP = "admins"
GROUPS = (ADMINS_GROUP, ALL_USERS_GROUP)


class PermissionLevel(IntEnum):
    """Databricks' registered model permission levels, in increasing order."""

    NONE = 0
    CAN_READ = 1
    CAN_EDIT = 2
    CAN_MANAGE_STAGING_VERSIONS = 3
    CAN_MANAGE_PRODUCTION_VERSIONS = 4
    CAN_MANAGE = 5

    @classmethod
    def parse(cls, value: object) -> PermissionLevel:
        """A grantable level from its name; InvalidParameterError otherwise."""
        name = str(value).upper()
        if name in cls.__members__ and name != "NONE":
            return cls[name]
        offered = ", ".join(m.name for m in cls if m is not cls.NONE)
        raise InvalidParameterError(f"Unknown permission_level '{value}'. Use one of: {offered}.")

    def included(self) -> list[PermissionLevel]:
        """This level and every level it includes, lowest first."""
        return [m for m in PermissionLevel if PermissionLevel.NONE < m <= self]


def level_for_stage(stage: str) -> PermissionLevel:
    """The level needed to move a version into or out of ``stage``."""
    if stage.lower() == "production":
        return PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS
    # Staging, and None/Archived: moving between the stages that serve nothing in production.
    return PermissionLevel.CAN_MANAGE_STAGING_VERSIONS
