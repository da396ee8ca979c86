"""Assignment-rule lookups cached per org version (engine.assignment._cached, engine.models.OrgVersion): a step
that reads the same version reuses them without a query; any change the rules can see bumps the version through
database triggers, so the next step looks again (on SQLite and, with EMFLOW_TEST_DATABASE_URL, PostgreSQL)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select, text

from engine import tasks
from engine.models import OrgVersion, Role, Unit, User, UserRole
from tests.engine.helpers import bpmn, deploy_bundle, flows, load_user, only_task, start, user_task

KEY = "cache"


@pytest.fixture
def chain(db):
    """a (the initiator) → b (user li.na) → c (the 处室负责人 of 政策法规处) → d (the leader of 规划财务处's parent)."""
    steps = [user_task("a", "申请"), user_task("b", "审核", 'user("li.na")'),
             user_task("c", "会签", 'role("division_head", unit="ZCFGC")'),
             user_task("d", "审批", 'leader(unit="GHCWC", up=1)')]
    ids = ["start", "a", "b", "c", "d", "end"]
    deploy_bundle(db, KEY, bpmn(KEY, '<bpmn:startEvent id="start"/>' + "".join(steps) + '<bpmn:endEvent id="end"/>'
                                + flows(*zip(ids, ids[1:], strict=False))))


def org_version(db) -> int:
    with db.session() as s:
        return s.scalar(select(OrgVersion.version))


def change(db, sql: str, **params) -> None:
    with db.transaction() as s:
        s.execute(text(sql), params)


def complete_counting(db, config, username: str, task_id: str) -> list[str]:
    """Complete a task; the statements that read the organisation on the way."""
    with db.session() as s:
        user = load_user(s, username)
    seen = []

    def listen(_conn, _cursor, statement, *_):
        if re.search(r'FROM "?(user|user_role|group|unit)"?\s', statement):
            seen.append(statement)

    event.listen(db.write_engine, "before_cursor_execute", listen)
    try:
        with db.transaction() as s:
            tasks.complete(s, config, user, task_id, {"note": "意见"})
    finally:
        event.remove(db.write_engine, "before_cursor_execute", listen)
    return seen


def assignee_of(db, instance_id: int, bpmn_id: str) -> str | None:
    with db.session() as s:
        task = only_task(db, instance_id, bpmn_id)
        return s.get(User, task.assignee_id).username if task.assignee_id else None


def test_a_rule_looked_up_once_is_reused_while_the_organisation_is_unchanged(db, config, chain):
    first, second = start(db, config, "zhang.wei", KEY), start(db, config, "zhang.wei", KEY)
    complete_counting(db, config, "zhang.wei", only_task(db, first, "a").id)

    assert complete_counting(db, config, "zhang.wei", only_task(db, second, "a").id) == []
    assert assignee_of(db, second, "b") == "li.na"


def test_deactivating_a_user_reaches_the_next_assignment(db, config, chain):
    first, second = start(db, config, "zhang.wei", KEY), start(db, config, "zhang.wei", KEY)
    complete_counting(db, config, "zhang.wei", only_task(db, first, "a").id)
    version = org_version(db)

    change(db, 'UPDATE "user" SET is_active = :no WHERE username = :u', no=False, u="li.na")

    assert org_version(db) > version
    assert complete_counting(db, config, "zhang.wei", only_task(db, second, "a").id) != []
    task = only_task(db, second, "b")
    assert task.assignee_id is None and "matched nobody" in task.assignment_error


def test_a_new_role_holder_and_a_new_unit_leader_are_seen(db, config, chain):
    first, second = start(db, config, "zhang.wei", KEY), start(db, config, "zhang.wei", KEY)
    for instance_id in (first, second):
        complete_counting(db, config, "zhang.wei", only_task(db, instance_id, "a").id)
    complete_counting(db, config, "li.na", only_task(db, first, "b").id)
    complete_counting(db, config, "wang.fang", only_task(db, first, "c").id)
    assert assignee_of(db, first, "d") == "liu.yang"  # 规划财务处's parent is the department: its leader

    with db.transaction() as s:  # 王芳 leaves the role; 周强 takes it in 政策法规处; 陈杰 leads the department
        wang, zhou, chen = (load_user(s, u) for u in ("wang.fang", "zhou.qiang", "chen.jie"))
        role = s.scalar(select(Role).where(Role.code == "division_head"))
        s.delete(s.get(UserRole, (wang.id, role.id)))
        zhou.unit_id = s.scalar(select(Unit.id).where(Unit.code == "ZCFGC"))
        s.scalar(select(Unit).where(Unit.code == "GXYJT")).leader_id = chen.id

    complete_counting(db, config, "li.na", only_task(db, second, "b").id)
    assert assignee_of(db, second, "c") == "zhou.qiang"
    complete_counting(db, config, "zhou.qiang", only_task(db, second, "c").id)
    assert assignee_of(db, second, "d") == "chen.jie"


@pytest.mark.parametrize("sql, params", [
    ('UPDATE "user" SET name = :v WHERE username = \'li.na\'', {"v": "李娜娜"}),
    ('UPDATE "user" SET unit_id = NULL WHERE username = \'li.na\'', {}),
    ('UPDATE "user" SET region_code = :v WHERE username = \'li.na\'', {"v": "450100"}),
    ("DELETE FROM user_role WHERE user_id = (SELECT id FROM \"user\" WHERE username = 'li.na')", {}),
    ("UPDATE role SET code = :v WHERE code = 'staff'", {"v": "staff2"}),
    ("UPDATE unit SET leader_id = NULL WHERE code = 'BGS'", {}),
    ("UPDATE unit SET parent_id = NULL WHERE code = 'BGS'", {}),
    ('UPDATE "group" SET code = :v WHERE code = \'office_clerks\'', {"v": "clerks"}),
    ('INSERT INTO "group" (code, name) VALUES (:v, :v)', {"v": "new_group"}),
])
def test_every_change_rules_can_see_bumps_the_version(db, sql, params):
    before = org_version(db)
    change(db, sql, **params)
    assert org_version(db) > before


@pytest.mark.parametrize("sql", [
    "UPDATE \"user\" SET failed_logins = failed_logins + 1 WHERE username = 'li.na'",
    "UPDATE \"user\" SET password_hash = 'x', token_version = token_version + 1 WHERE username = 'li.na'",
    "UPDATE \"user\" SET phone = '13800000000', title = '主任' WHERE username = 'li.na'",
    "UPDATE role SET permissions = '[]' WHERE code = 'staff'",
])
def test_logins_and_other_columns_leave_the_version_alone(db, sql):
    # A login must not throw the cache away (nor take the version row's lock).
    before = org_version(db)
    change(db, sql)
    assert org_version(db) == before
