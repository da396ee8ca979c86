"""Organisation: regions, units, enterprises, users, roles and groups."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, UTCDateTime, utcnow


class Region(Base):
    """An administrative division (national code), e.g. 450000 广西壮族自治区."""

    __tablename__ = "region"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("region.code"), index=True)
    level: Mapped[int] = mapped_column(Integer, default=1)


class Unit(Base):
    """An organisational unit (厅办公室, 南宁市应急管理局 …) in a region, with a leader."""

    __tablename__ = "unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", use_alter=True))
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class Enterprise(Base):
    """A supervised enterprise; its users see only its own data."""

    __tablename__ = "enterprise"
    id: Mapped[int] = mapped_column(primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    industry: Mapped[str] = mapped_column(String(50), default="")
    duty_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", use_alter=True))  # receives its alarms


class User(Base):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # When token_version or is_active last changed: servers poll this to revoke signed tokens quickly.
    token_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    unit: Mapped[Unit | None] = relationship(foreign_keys=[unit_id], lazy="joined")
    roles: Mapped[list[Role]] = relationship(secondary="user_role")
    groups: Mapped[list[Group]] = relationship(secondary="group_member")

    @property
    def is_enterprise(self) -> bool:
        return self.enterprise_id is not None

    def has_role(self, code: str) -> bool:
        return any(r.code == code for r in self.roles)

    def can(self, permission: str) -> bool:
        """True if the user is a superuser or one of their roles grants the permission."""
        return self.is_superuser or any(permission in (r.permissions or []) for r in self.roles)


class Role(Base):
    __tablename__ = "role"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    permissions: Mapped[list] = mapped_column(JSONType, default=list)


class UserRole(Base):
    __tablename__ = "user_role"
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True, index=True)


class Group(Base):
    """A set of users that can be offered a task to claim (candidate group)."""

    __tablename__ = "group"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class GroupMember(Base):
    __tablename__ = "group_member"
    group_id: Mapped[int] = mapped_column(ForeignKey("group.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True)


class OrgVersion(Base):
    """One row whose version database triggers bump on every change that assignment rules can see (users'
    names, units, regions and activity; roles and role holders; units' codes, parents and leaders; group codes):
    a step reads it with its instance lock and may then reuse rule lookups cached under the same version."""

    __tablename__ = "org_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
