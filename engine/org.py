"""Organisation queries: region subtrees (data scope), unit chains and leaders, users by role."""
from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from .models import Region, Unit, User


def region_subtree(session: Session, code: str) -> list[str]:
    """The region and every region below it."""
    codes, frontier = [code], [code]
    while frontier:
        frontier = list(session.scalars(select(Region.code).where(Region.parent_code.in_(frontier))))
        codes.extend(frontier)
    return codes


def is_root_region(session: Session, code: str) -> bool:
    return session.scalar(select(Region.parent_code).where(Region.code == code)) is None


class Scope:
    """What one user may see: a region subtree (None = everything) and, for enterprise users, one enterprise."""

    def __init__(self, session: Session, user: User):
        self.user = user
        self.enterprise_id = user.enterprise_id
        if user.is_superuser or (not user.is_enterprise and is_root_region(session, user.region_code)):
            self.regions: list[str] | None = None
        else:
            self.regions = region_subtree(session, user.region_code)

    def clause(self, region_col, enterprise_col) -> ColumnElement[bool]:
        """A SQL condition limiting rows to this scope."""
        if self.enterprise_id is not None:
            return enterprise_col == self.enterprise_id
        if self.regions is None:
            return true()
        return region_col.in_(self.regions) if self.regions else false()

    def allows(self, region_code: str, enterprise_id: int | None) -> bool:
        if self.enterprise_id is not None:
            return enterprise_id == self.enterprise_id
        return self.regions is None or region_code in self.regions


def unit_by_code(session: Session, code: str) -> Unit | None:
    return session.scalar(select(Unit).where(Unit.code == code))


def user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def leader_of(session: Session, unit: Unit | None, up: int = 0) -> User | None:
    """The leader of ``unit``'s ancestor ``up`` levels above it (0 = the unit itself)."""
    for _ in range(up):
        if unit is None or unit.parent_id is None:
            return None
        unit = session.get(Unit, unit.parent_id)
    if unit is None or unit.leader_id is None:
        return None
    return session.get(User, unit.leader_id)


def search_users(session: Session, q: str = "", limit: int = 20) -> list[User]:
    """Active staff users matching a name or username fragment (user picker)."""
    stmt = select(User).where(User.is_active.is_(True), User.enterprise_id.is_(None))
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(User.username.ilike(like), User.name.ilike(like)))
    return list(session.scalars(stmt.order_by(User.username).limit(limit)))
