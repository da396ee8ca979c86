"""Assignment rules: every documented form parses, bad ones are refused clearly, resolution uses the org."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from engine.assignment import Context, Resolution, Rule, parse_rule, resolve
from engine.errors import AssignmentError
from engine.models import Group, User

# -- parsing -----------------------------------------------------------------------------------------

INITIATOR = Rule("initiator")


@pytest.mark.parametrize(("text", "rule"), [
    ("initiator", INITIATOR),
    ('user("li.na")', Rule("user", ("li.na",))),
    ("user('li.na')", Rule("user", ("li.na",))),
    ('role("office_director")', Rule("role", ("office_director",))),
    ('role("clerk", unit="BGS")', Rule("role", ("clerk",), (("unit", "BGS"),))),
    ('role("clerk", unit=initiator)', Rule("role", ("clerk",), (("unit", INITIATOR),))),
    ('role("clerk", region="450100")', Rule("role", ("clerk",), (("region", "450100"),))),
    ('role("clerk", region=instance)', Rule("role", ("clerk",), (("region", Rule("instance")),))),
    ('role("clerk", region=initiator)', Rule("role", ("clerk",), (("region", INITIATOR),))),
    ('leader(unit="BGS")', Rule("leader", (), (("unit", "BGS"),))),
    ('leader("BGS")', Rule("leader", ("BGS",))),
    ("leader(initiator)", Rule("leader", (INITIATOR,))),
    ("leader(initiator, up=1)", Rule("leader", (INITIATOR,), (("up", 1),))),
    ("leader(initiator, up=0)", Rule("leader", (INITIATOR,), (("up", 0),))),
    ('leader(field("lead_unit"))', Rule("leader", (Rule("field", ("lead_unit",)),))),
    ('field("reviewer")', Rule("field", ("reviewer",))),
    ('group("office_clerks")', Rule("group", ("office_clerks",))),
    ('initiator | user("li.na")', Rule("union", parts=(INITIATOR, Rule("user", ("li.na",))))),
    ('  user("li.na")  ', Rule("user", ("li.na",))),
])
def test_documented_forms_parse(text, rule):
    assert parse_rule(text) == rule


def test_unions_of_three_nest_left_to_right():
    rule = parse_rule('user("a") | group("g") | leader(unit="BGS")')
    assert rule.kind == "union"
    assert rule.parts[0] == Rule("union", parts=(Rule("user", ("a",)), Rule("group", ("g",))))
    assert rule.parts[1] == Rule("leader", (), (("unit", "BGS"),))


@pytest.mark.parametrize(("text", "problem"), [
    ("", "does not parse"),
    ('user("li.na"', "does not parse"),
    ("initiator |", "does not parse"),
    ("nobody", "unknown term 'nobody'"),
    ('boss("li.na")', "unknown term"),
    ('user("a") or user("b")', "unknown term"),
    ('user("a") & user("b")', "unknown term"),
    ("__import__('os')", "unknown term"),
    ('"li.na"', "unknown term"),
    ("user()", "user() takes 1 argument(s)"),
    ('user("a", "b")', "user() takes 1 argument(s)"),
    ('group("a", "b")', "group() takes 1 argument(s)"),
    ("user(li.na)", "unexpected 'li.na' at column 6"),
    ("user(1)", "user() needs a quoted name"),
    ("role(initiator)", "role() needs a quoted name"),
    ("field(initiator)", "field() needs a quoted name"),
    ('role("clerk", dept="BGS")', "role() has no argument 'dept'"),
    ('user("a", unit="BGS")', "user() has no argument 'unit'"),
    ("leader()", "leader() needs a unit, initiator or field(...)"),
    ('leader("A", "B")', "leader() takes 1 argument(s)"),
    ("leader(initiator, up=-1)", "unexpected '-1'"),
    ('leader(initiator, up="1")', "up= must be a whole number of levels"),
    ("leader(initiator, up=True)", "unexpected 'True'"),
    ("leader(initiator, up=1.5)", "unexpected '1.5'"),
    ('leader(user("li.na"))', "leader() takes initiator, field(...) or unit="),
    ("leader(instance)", "leader() takes initiator, field(...) or unit="),
    ("leader(unit=initiator)", "leader(unit=...) needs a quoted code"),
    ('leader(unit=field("u"))', "leader(unit=...) needs a quoted code"),
    ('role("staff", region=field("r"))', "role(region=...) needs a quoted code"),
    ('role("staff", unit=instance)', "role(unit=...) needs a quoted code"),
])
def test_bad_rules_are_refused_naming_the_problem(text, problem):
    with pytest.raises(AssignmentError) as caught:
        parse_rule(text)
    assert problem in caught.value.message
    assert f"'{text}'" in caught.value.message
    assert caught.value.code == "assignment_error"


# -- resolution against the demo organisation ---------------------------------------------------------

@pytest.fixture
def session(db):
    with db.session() as s:
        yield s


@pytest.fixture
def ids(session):
    """username -> user id for every demo user."""
    return dict(session.execute(select(User.username, User.id)).all())


def resolved(session, text, initiator=None, data=None, region="450000") -> Resolution:
    return resolve(session, parse_rule(text), Context(initiator=initiator, instance_region=region, data=data or {}))


def names(session, resolution: Resolution) -> list[str]:
    by_id = dict(session.execute(select(User.id, User.username)).all())
    return [by_id[i] for i in resolution.users]


def test_leader_of_a_named_unit(session):
    assert names(session, resolved(session, 'leader(unit="BGS")')) == ["li.na"]
    assert names(session, resolved(session, 'leader("ZCFGC")')) == ["wang.fang"]


def test_leader_of_the_initiators_own_unit(session, user):
    assert names(session, resolved(session, "leader(initiator)", user("zhang.wei"))) == ["li.na"]


def test_leader_of_the_initiators_unit_one_level_up(session, user):
    """BGS (厅办公室) sits under GXYJT (应急管理厅), which liu.yang leads."""
    assert names(session, resolved(session, "leader(initiator, up=1)", user("zhang.wei"))) == ["liu.yang"]


def test_leader_above_the_top_unit_is_nobody(session, user):
    assert resolved(session, "leader(initiator, up=5)", user("zhang.wei")).empty


def test_leader_of_an_initiator_without_a_unit_is_nobody(session, user):
    assert resolved(session, "leader(initiator)", user("qiye.hg001")).empty


def test_leader_of_an_unknown_unit_is_nobody(session):
    assert resolved(session, 'leader(unit="NOPE")').empty


def test_role_anywhere(session):
    assert names(session, resolved(session, 'role("dept_head")')) == ["liu.yang"]


def test_role_within_a_unit(session, user):
    assert names(session, resolved(session, 'role("office_director", unit="BGS")')) == ["li.na"]
    assert resolved(session, 'role("office_director", unit="ZCFGC")').empty
    assert names(session, resolved(session, 'role("staff", unit=initiator)', user("wang.fang"))) == ["wang.fang"]


def test_role_within_a_region(session, user):
    assert names(session, resolved(session, 'role("staff", region="450100")')) == ["chen.jie"]
    assert names(session, resolved(session, 'role("staff", region=instance)', region="450200")) == ["zhao.min"]
    assert names(session, resolved(session, 'role("staff", region=initiator)', user("chen.jie"))) == ["chen.jie"]


def test_role_with_several_holders_lists_them_all(session):
    assert names(session, resolved(session, 'role("division_head")')) == ["wang.fang", "zhou.qiang"]


def test_field_with_a_username(session):
    assert names(session, resolved(session, 'field("x")', data={"x": "wang.fang"})) == ["wang.fang"]


def test_field_with_a_list_of_usernames(session):
    got = resolved(session, 'field("x")', data={"x": ["wang.fang", "li.na", "wang.fang"]})
    assert names(session, got) == ["wang.fang", "li.na"]


@pytest.mark.parametrize("data", [{}, {"x": None}, {"x": ""}, {"x": []}, {"x": "no.such.user"}])
def test_field_without_a_known_user_is_nobody(session, data):
    assert resolved(session, 'field("x")', data=data).empty


def test_leader_of_units_chosen_in_a_field(session):
    got = resolved(session, 'leader(field("u"))', data={"u": ["BGS", "ZCFGC", "NOPE"]})
    assert names(session, got) == ["li.na", "wang.fang"]
    assert names(session, resolved(session, 'leader(field("u"))', data={"u": "GHCWC"})) == ["zhou.qiang"]


def test_group_gives_a_candidate_group(session):
    got = resolved(session, 'group("office_clerks")')
    group_id = session.scalar(select(Group.id).where(Group.code == "office_clerks"))
    assert got.groups == [group_id] and got.users == []
    assert not got.empty


def test_unknown_group_is_nobody(session):
    assert resolved(session, 'group("no_such_group")').empty


def test_union_collects_users_and_groups_once_in_order(session, user):
    got = resolved(session, 'user("li.na") | initiator | role("dept_head") | group("office_clerks") | user("li.na")',
                   user("zhang.wei"))
    assert names(session, got) == ["li.na", "zhang.wei", "liu.yang"]
    assert len(got.groups) == 1


def test_initiator(session, user):
    assert names(session, resolved(session, "initiator", user("chen.jie"))) == ["chen.jie"]
    assert resolved(session, "initiator", None).empty


def test_unknown_user_is_nobody(session):
    assert resolved(session, 'user("no.such.user")').empty


def test_inactive_users_are_never_resolved(db, session):
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "li.na").values(is_active=False))
    assert resolved(session, 'user("li.na")').empty
    assert resolved(session, 'leader(unit="BGS")').empty
    assert resolved(session, 'role("office_director")').empty


def test_resolve_adds_to_an_existing_resolution(session, ids):
    out = Resolution(users=[ids["liu.yang"]])
    resolve(session, parse_rule('user("li.na") | user("liu.yang")'), Context(None, "450000", {}), out)
    assert out.users == [ids["liu.yang"], ids["li.na"]]
