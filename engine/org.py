"""Organisation queries: region subtrees (data scope), unit chains and leaders, users by role."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, false, literal, null, or_, select, true, type_coerce, union_all
from sqlalchemy.orm import Session

from .models import GroupMember, Region, Role, Unit, User, UserRole, utcnow
from .models.base import JSONType


@dataclass(frozen=True)
class Principal:
    """Who is acting: the few facts engine checks need, detached from any session.

    Engine functions take a Principal or a User; both answer the same attributes."""

    id: int
    username: str
    name: str
    region_code: str
    enterprise_id: int | None
    unit_id: int | None
    unit_name: str
    is_superuser: bool
    token_version: int
    roles: frozenset[str]
    permissions: frozenset[str]
    group_ids: tuple[int, ...]

    @property
    def is_enterprise(self) -> bool:
        return self.enterprise_id is not None

    def has_role(self, code: str) -> bool:
        return code in self.roles

    def can(self, permission: str) -> bool:
        return self.is_superuser or permission in self.permissions

    def to_claims(self) -> dict:
        """A JSON-safe form, for signed tokens."""
        claims = asdict(self)
        claims.update(roles=sorted(self.roles), permissions=sorted(self.permissions), group_ids=list(self.group_ids))
        return claims

    @classmethod
    def from_claims(cls, claims: dict) -> Principal:
        return cls(**{**claims, "roles": frozenset(claims["roles"]), "permissions": frozenset(claims["permissions"]),
                      "group_ids": tuple(claims["group_ids"])})


class PrincipalCache:
    """Principals by (user id, token version). Every request still reads the user's row, so a password
    change or a deactivation takes effect at once; role and group changes show within ``ttl`` seconds."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000):
        self.ttl, self.size = ttl, size
        self._items: dict[tuple[int, int], tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def load(self, session: Session, user_id: int, token_version: int) -> Principal | None:
        """The active user's principal if the token version still matches, else None."""
        key, now = (user_id, token_version), time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            row = session.execute(select(User.token_version, User.is_active).where(User.id == user_id)).first()
            if row is None or not row.is_active or row.token_version != token_version:
                return None
            return hit[1]
        principal = principal_of(session, user_id)
        if principal is None or principal.token_version != token_version:
            return None
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (now + self.ttl, principal)
        return principal


class RevocationWatch:
    """Which users' signed tokens are no longer valid, learnt by polling ``user.token_changed_at``.

    Signed API tokens carry their principal, so a request needs no database read to authenticate; this
    watch reads the users whose token version or active flag changed since the last poll, at most every
    ``interval`` seconds per process, so a revoked token stops working within that time."""

    def __init__(self, token_ttl: float, interval: float = 2.0):
        self.interval = interval
        self._since = utcnow() - timedelta(seconds=token_ttl)
        self._next_poll = 0.0
        self._current: dict[int, tuple[int, bool]] = {}
        self._lock = threading.Lock()

    def revoked(self, read_session, user_id: int, token_version: int) -> bool:
        """True if the user's tokens of this version were revoked; ``read_session`` opens a session to poll."""
        now = time.monotonic()
        if now >= self._next_poll:
            with self._lock:
                if now >= self._next_poll:
                    self._poll(read_session)
                    self._next_poll = now + self.interval
        state = self._current.get(user_id)
        return state is not None and (state[0] != token_version or not state[1])

    def _poll(self, read_session) -> None:
        started = utcnow()
        with read_session() as s:
            rows = s.execute(select(User.id, User.token_version, User.is_active)
                             .where(User.token_changed_at >= self._since - timedelta(seconds=5))).all()
        for uid, version, active in rows:
            self._current[uid] = (version, active)
        self._since = started


def principal_of(session: Session, user_id: int) -> Principal | None:
    """Build an active user's Principal: the user with their unit, then roles and groups in one query."""
    u = session.execute(select(User.id, User.username, User.name, User.region_code, User.enterprise_id,
                               User.unit_id, User.is_superuser, User.token_version, Unit.name.label("unit_name"))
                        .outerjoin(Unit, Unit.id == User.unit_id)
                        .where(User.id == user_id, User.is_active.is_(True))).first()
    if u is None:
        return None
    memberships = session.execute(union_all(
        select(literal("role"), Role.code, Role.id, Role.permissions).join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user_id),
        select(literal("group"), literal(""), GroupMember.group_id, type_coerce(null(), JSONType))
        .where(GroupMember.user_id == user_id),
    )).all()
    return Principal(
        id=u.id, username=u.username, name=u.name, region_code=u.region_code, enterprise_id=u.enterprise_id,
        unit_id=u.unit_id, unit_name=u.unit_name or "", is_superuser=u.is_superuser, token_version=u.token_version,
        roles=frozenset(code for kind, code, _, _ in memberships if kind == "role"),
        permissions=frozenset(p for kind, _, _, perms in memberships if kind == "role" for p in (perms or [])),
        group_ids=tuple(gid for kind, _, gid, _ in memberships if kind == "group"),
    )


_REGIONS: tuple[float, dict[str, list[str]], set[str]] | None = None
_REGIONS_LOCK = threading.Lock()


def _region_tree(session: Session, ttl: float = 60.0) -> tuple[dict[str, list[str]], set[str]]:
    """Children by region code, and the root codes; re-read at most every ``ttl`` seconds (it rarely changes)."""
    global _REGIONS
    with _REGIONS_LOCK:
        if _REGIONS is None or time.monotonic() > _REGIONS[0]:
            children: dict[str, list[str]] = {}
            roots = set()
            for code, parent in session.execute(select(Region.code, Region.parent_code)):
                if parent is None:
                    roots.add(code)
                else:
                    children.setdefault(parent, []).append(code)
            _REGIONS = (time.monotonic() + ttl, children, roots)
        return _REGIONS[1], _REGIONS[2]


def invalidate_regions() -> None:
    global _REGIONS
    with _REGIONS_LOCK:
        _REGIONS = None


def region_subtree(session: Session, code: str) -> list[str]:
    """The region and every region below it."""
    children, _ = _region_tree(session)
    codes, frontier = [code], [code]
    while frontier:
        frontier = [c for parent in frontier for c in children.get(parent, [])]
        codes.extend(frontier)
    return codes


def is_root_region(session: Session, code: str) -> bool:
    return code in _region_tree(session)[1]


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


def group_ids(session: Session, user) -> list[int]:
    """The user's group ids: a Principal carries them; for a User they are read."""
    ids = getattr(user, "group_ids", None)
    if ids is None:
        ids = session.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user.id))
    return list(ids)


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
