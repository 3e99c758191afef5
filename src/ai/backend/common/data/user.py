"""The user identity carried in request contexts and event metadata (DESIGN.md section 3).

Its JSON form is exactly upstream's ``user`` / ``triggered_user`` metadata object:
``{"user_id", "is_authorized", "is_admin", "is_superadmin", "role", "domain_name", "domain_id"}``.
"""

from __future__ import annotations

import enum
import uuid

from pydantic import BaseModel, ConfigDict

__all__ = ("UserData", "UserRole")


class UserRole(enum.StrEnum):
    """Roles of a Backend.AI user (also the JWT ``role`` claim)."""

    SUPERADMIN = "superadmin"
    ADMIN = "admin"
    USER = "user"
    MONITOR = "monitor"


class UserData(BaseModel):
    """Who is acting: the authenticated user of a request, task or event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: uuid.UUID
    is_authorized: bool = True
    is_admin: bool = False
    is_superadmin: bool = False
    role: UserRole = UserRole.USER
    domain_name: str = "default"
    domain_id: uuid.UUID | None = None
