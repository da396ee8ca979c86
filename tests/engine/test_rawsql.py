"""engine.rawsql through the locking read of a step: on PostgreSQL the instance and the task are read past
SQLAlchemy's execution and must come out exactly as the ORM query would leave them (on SQLite that query
itself runs; the same tests then hold for it)."""
from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import undefer

from engine.models import HumanTask, ProcessInstance
from engine.runtime import lock_instance
from tests.engine.helpers import DISPATCH, load_user, only_task, start


def columns(obj) -> dict:
    """Every column's value, which must already be loaded (reading an unloaded one would load it)."""
    state = inspect(obj)
    assert not state.unloaded and not state.expired_attributes
    return {prop.key: state.dict[prop.key] for prop in state.mapper.column_attrs}


def test_a_locked_instance_and_task_are_what_the_orm_loads(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    task_id = only_task(db, instance_id, "draft").id
    with db.session() as s:
        expected = (columns(s.get(ProcessInstance, instance_id, options=[undefer(ProcessInstance.state)])),
                    columns(s.get(HumanTask, task_id)))
    with db.transaction() as s:
        if db.dialect == "postgresql":  # the driver answers in the session's zone; the model's type makes it UTC
            s.execute(text("SET LOCAL TIME ZONE 'Asia/Shanghai'"))
        inst, task = lock_instance(s, None, task_id=task_id)
        assert (columns(inst), columns(task)) == expected
        assert inst.created_at.tzinfo is UTC and task.created_at.tzinfo is UTC
        assert s.get(ProcessInstance, instance_id) is inst and s.get(HumanTask, task_id) is task
        assert not s.dirty and inspect(inst).persistent and not inspect(task).modified
        inst.title = "锁定后修改"  # a later change is flushed as usual
    with db.session() as s:
        assert s.get(ProcessInstance, instance_id).title == "锁定后修改"


@pytest.mark.parametrize("held", ["instance", "task", "instance, locked by its task"])
def test_what_the_session_holds_is_refreshed_not_loaded_twice(db, config, held):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    task_id = only_task(db, instance_id, "draft").id
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id) if held != "task" else None
        task = s.get(HumanTask, task_id) if held == "task" else None
        s.execute(text("UPDATE process_instance SET title = '库中标题' WHERE id = :id"), {"id": instance_id})
        s.execute(text("UPDATE human_task SET name = '库中名称' WHERE id = :id"), {"id": task_id})
        if held == "instance":
            locked = lock_instance(s, instance_id), None
        else:
            locked = lock_instance(s, None, task_id=task_id)
            assert locked[1].name == "库中名称" and (task is None or locked[1] is task)
        assert locked[0].title == "库中标题" and (inst is None or locked[0] is inst)


def test_changes_pending_in_the_session_are_flushed_before_the_lock(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        user = load_user(s, "zhang.wei")
        user.name = "张伟（改）"
        lock_instance(s, instance_id)
        assert not s.dirty
        assert s.execute(text('SELECT name FROM "user" WHERE id = :id'), {"id": user.id}).scalar() == "张伟（改）"


def test_without_autoflush_pending_changes_stay_pending(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        user = load_user(s, "zhang.wei")
        user.name = "张伟（改）"
        with s.no_autoflush:
            assert lock_instance(s, instance_id).id == instance_id
            assert user in s.dirty
        s.rollback()


def test_an_unknown_instance_or_task_is_none(db, config):
    with db.transaction() as s:
        assert lock_instance(s, 987654) is None and lock_instance(s, None, task_id="no-such-task") is None


def test_on_postgresql_the_lock_goes_past_sqlalchemys_execution(db, config):
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs the ORM query")
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    sent = []
    listen = lambda _conn, _cursor, statement, *_: sent.append(statement)  # noqa: E731
    event.listen(db.write_engine, "before_cursor_execute", listen)
    try:
        with db.transaction() as s:
            inst = lock_instance(s, instance_id)
            assert inst.id == instance_id and inst.state and columns(inst)
    finally:
        event.remove(db.write_engine, "before_cursor_execute", listen)
    assert sent == []


def test_a_row_another_transaction_holds_is_skipped_or_waited_for_up_to_the_lock_timeout(db, config):
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no row locks (its writers take the database's write lock)")
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as holder:
        assert lock_instance(holder, instance_id) is not None
        with db.transaction() as s:
            assert lock_instance(s, instance_id, skip_locked=True) is None
            s.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(OperationalError) as caught:
                lock_instance(s, instance_id)
            assert "lock timeout" in str(caught.value) and "parameters hidden" in str(caught.value)
            s.rollback()


def test_a_connection_the_server_dropped_fails_the_lock_and_is_discarded(db, config):
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL connection")
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with pytest.raises(OperationalError) as caught, db.transaction() as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
        with db.read_engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        lock_instance(s, instance_id)
    # The lock's own error, not one from the rollback that followed: the connection was discarded first.
    assert caught.value.connection_invalidated and "FOR UPDATE" in caught.value.statement
    with db.transaction() as s:
        assert lock_instance(s, instance_id).id == instance_id
