"""Assignment rules on user tasks: a small expression language, parsed at deploy, resolved at run time.

    initiator                          the person who started the instance
    user("li.na")                      a named user
    role("office_director")            users holding a role (anywhere)
    role("clerk", unit="BGS")          ... within a unit (by unit code)
    role("clerk", region="450100")     ... within a region; region=instance / region=initiator
    leader(unit="BGS")                 the leader of a unit
    leader(initiator, up=1)            the initiator's unit leader, N levels up (0 = own unit)
    leader(field("lead_unit"))         the leader of the unit(s) chosen in a form field
    field("reviewer")                  the user(s) chosen in a form field (username or list)
    group("office_clerks")             a candidate group: its members claim the task
    a | b                              union

One user resolved = the task is assigned; several users or any group = candidates who claim it.
"""
from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .errors import AssignmentError
from .models import Group, Role, Unit, User, UserRole
from .org import leader_of, unit_by_code

_FUNCS = {
    "user": ((str,), set()),
    "role": ((str,), {"unit", "region"}),
    "leader": ((object,), {"unit", "up"}),
    "field": ((str,), set()),
    "group": ((str,), set()),
}
# Keyword values that may be a term rather than a quoted code: what _code and _region know how to resolve.
_TERM_KWARGS = {"role": {("unit", "initiator"), ("region", "instance"), ("region", "initiator")}}


@dataclass(frozen=True)
class Rule:
    """A parsed rule node: kind plus arguments (nested rules for leader targets)."""

    kind: str
    args: tuple = ()
    kwargs: tuple = ()
    parts: tuple = ()

    def kw(self, name, default=None):
        return dict(self.kwargs).get(name, default)


@lru_cache(maxsize=1024)
def parse_rule(text: str) -> Rule:
    """Parse a rule (cached: rules are immutable); raise AssignmentError with the position of the problem."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise AssignmentError(f"assignment rule '{text}' does not parse: {exc.msg} at column {exc.offset}") from None
    return _node(tree.body, text)


def _const(node, text):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("initiator", "instance"):
        return Rule(node.id)
    if isinstance(node, ast.Call):
        return _node(node, text)
    raise AssignmentError(f"assignment rule '{text}': unexpected {ast.unparse(node)!r} at column {node.col_offset + 1}")


def _node(node, text) -> Rule:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return Rule("union", parts=(_node(node.left, text), _node(node.right, text)))
    if isinstance(node, ast.Name) and node.id == "initiator":
        return Rule("initiator")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        name = node.func.id
        positional, allowed_kw = _FUNCS[name]
        if name == "leader" and not node.args and not node.keywords:
            raise AssignmentError(f"assignment rule '{text}': leader() needs a unit, initiator or field(...)")
        if len(node.args) > len(positional) or (name != "leader" and len(node.args) != len(positional)):
            raise AssignmentError(f"assignment rule '{text}': {name}() takes {len(positional)} argument(s)")
        args = tuple(_const(a, text) for a in node.args)
        for a, kind in zip(args, positional, strict=False):
            if kind is str and not isinstance(a, str):
                raise AssignmentError(f"assignment rule '{text}': {name}() needs a quoted name")
        kwargs = []
        for kw in node.keywords:
            if kw.arg not in allowed_kw:
                raise AssignmentError(f"assignment rule '{text}': {name}() has no argument '{kw.arg}'")
            value = _const(kw.value, text)
            if isinstance(value, Rule) and (kw.arg, value.kind) not in _TERM_KWARGS.get(name, set()):
                raise AssignmentError(f"assignment rule '{text}': {name}({kw.arg}=...) needs a quoted code, "
                                      f"not {ast.unparse(kw.value)!r}")
            kwargs.append((kw.arg, value))
        rule = Rule(name, args, tuple(kwargs))
        up = rule.kw("up", 0)
        if not isinstance(up, int) or up < 0:
            raise AssignmentError(f"assignment rule '{text}': up= must be a whole number of levels (0 or more)")
        if name == "leader" and args and isinstance(args[0], Rule) and args[0].kind not in ("initiator", "field"):
            raise AssignmentError(f"assignment rule '{text}': leader() takes initiator, field(...) or unit=")
        return rule
    raise AssignmentError(
        f"assignment rule '{text}': unknown term {ast.unparse(node)!r} at column {node.col_offset + 1}"
    )


@dataclass
class Resolution:
    users: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # display names of the users found

    def add_user(self, user: User | None):
        if user is not None and user.is_active and user.id not in self.users:
            self.users.append(user.id)
            self.names[user.id] = user.name

    @property
    def empty(self) -> bool:
        return not self.users and not self.groups


class Context:
    """What a rule may refer to. The initiator can be given, or loaded only if a rule asks for it."""

    def __init__(self, initiator: User | None = None, instance_region: str = "", data: dict[str, Any] | None = None,
                 load_initiator: Callable[[], User | None] | None = None, org_version: int | None = None):
        self._initiator, self._load_initiator = initiator, load_initiator
        self.instance_region = instance_region
        self.data = data if data is not None else {}
        self.org_version = org_version  # the organisation as the caller's transaction saw it, if known

    @property
    def initiator(self) -> User | None:
        if self._initiator is None and self._load_initiator is not None:
            self._initiator, self._load_initiator = self._load_initiator(), None
        return self._initiator


def resolve(session: Session, rule: Rule, ctx: Context, out: Resolution | None = None) -> Resolution:
    """Resolve a rule to users and candidate groups."""
    out = out if out is not None else Resolution()
    kind = rule.kind
    if kind == "union":
        for part in rule.parts:
            resolve(session, part, ctx, out)
    elif kind == "initiator":
        out.add_user(ctx.initiator)
    elif kind == "user":
        out.add_user(_user_row(session, ctx, rule.args[0]))
    elif kind == "field":
        for name in _field_values(ctx, rule.args[0]):
            out.add_user(_user_row(session, ctx, name))
    elif kind == "group":
        code = rule.args[0]
        gid = _cached(ctx, ("group", code), lambda: session.connection().scalar(_GROUP_ID, {"code": code}))
        if gid is not None and gid not in out.groups:
            out.groups.append(gid)
    elif kind == "role":
        unit, region = rule.kw("unit"), rule.kw("region")
        unit = _code(unit, ctx) if unit is not None else None
        region = _region(region, ctx) if region is not None else None
        for user in _cached(ctx, ("role", rule.args[0], unit, region),
                            lambda: _role_holders(session, rule.args[0], unit, region)):
            out.add_user(user)
    elif kind == "leader":
        up = int(rule.kw("up", 0))
        for unit in _leader_units(session, rule, ctx):
            out.add_user(leader_of(session, unit, up))
    return out


# Asked for every task a user() or field() rule assigns: built once, run on the connection (plain columns,
# as for roles; the ORM adds nothing here).
_USER_ROW = select(User.id, User.name, User.is_active).where(User.username == bindparam("username"))
_GROUP_ID = select(Group.id).where(Group.code == bindparam("code"))


def _user_row(session: Session, ctx: Context, username: str):
    """(id, name, is_active) of a user, or None."""
    return _cached(ctx, ("user", username),
                   lambda: session.connection().execute(_USER_ROW, {"username": username}).first())


def _role_holders(session: Session, role: str, unit: str | None, region: str | None) -> list:
    """(id, name, is_active) of the active holders of a role, within a unit and/or a region."""
    # Plain columns, not User objects: a role can hold many people and this runs on every task created.
    stmt = (select(User.id, User.name, User.is_active).join(UserRole, UserRole.user_id == User.id)
            .join(Role, Role.id == UserRole.role_id).where(Role.code == role, User.is_active.is_(True)))
    if unit is not None:
        stmt = stmt.join(Unit, Unit.id == User.unit_id).where(Unit.code == unit)
    if region is not None:
        stmt = stmt.where(User.region_code == region)
    return session.execute(stmt.order_by(User.id)).all()


# Lookups of the organisation by assignment rules, kept per process for one org version (engine.models.OrgVersion):
# (version, {key: result}); replaced whole when a step reads a newer version. Results are plain rows and ids.
_CACHE: tuple[int | None, dict] = (None, {})
_CACHE_LIMIT = 20_000


def _cached(ctx: Context, key: tuple, load: Callable[[], Any]):
    """``load()``, or its result from a lookup made under the same org version. What a step caches is at least as
    new as the version it read, so any step that reads that version may use it."""
    global _CACHE
    if ctx.org_version is None:
        return load()
    version, results = _CACHE
    if version != ctx.org_version or len(results) > _CACHE_LIMIT:
        results = {}
        _CACHE = (ctx.org_version, results)
    if key not in results:
        results[key] = load()
    return results[key]


def _field_values(ctx: Context, name: str) -> list[str]:
    value = ctx.data.get(name)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _code(value, ctx: Context) -> str:
    if isinstance(value, Rule) and value.kind == "initiator":
        return ctx.initiator.unit.code if ctx.initiator and ctx.initiator.unit else ""
    return str(value)


def _region(value, ctx: Context) -> str:
    if isinstance(value, Rule):
        if value.kind == "instance":
            return ctx.instance_region
        return ctx.initiator.region_code if ctx.initiator else ""
    return str(value)


def _leader_units(session: Session, rule: Rule, ctx: Context) -> list[Unit | None]:
    target = rule.args[0] if rule.args else None
    if target is None:
        return [unit_by_code(session, str(rule.kw("unit")))]
    if isinstance(target, str):
        return [unit_by_code(session, target)]
    if target.kind == "initiator":
        return [ctx.initiator.unit if ctx.initiator else None]
    return [unit_by_code(session, code) for code in _field_values(ctx, target.args[0])]
