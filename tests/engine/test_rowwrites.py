"""engine.rowwrites: the Core INSERT/UPDATE a step uses for its own rows leave the database and the session
exactly as the ORM flush would (on SQLite and, with EMFLOW_TEST_DATABASE_URL, on PostgreSQL)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from engine import rowwrites
from engine.errors import Conflict
from engine.models import HumanTask, ProcessInstance, TaskCandidate
from tests.engine.helpers import DISPATCH, only_task, start


def new_task(instance: ProcessInstance, **values) -> HumanTask:
    return HumanTask(id=str(uuid.uuid4()), instance_id=instance.id, process_key=instance.process_key,
                     bpmn_id="x", name="新任务", region_code=instance.region_code, **values)


def statements(db):
    """The SQL sent on the write engine while the block runs."""
    from sqlalchemy import event

    sent = []

    def listen(_conn, _cursor, statement, *_):
        sent.append(statement.split()[0])

    event.listen(db.write_engine, "before_cursor_execute", listen)
    return sent, lambda: event.remove(db.write_engine, "before_cursor_execute", listen)


def test_an_update_writes_the_changed_columns_bumps_the_version_and_leaves_the_object_clean(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        version = inst.lock_version
        inst.title, inst.status = "新标题", inst.status  # the status is set to what it was: not written
        sent, stop = statements(db)
        rowwrites.update_changed(s, inst)
        stop()
        assert sent == ["UPDATE"] and inst.lock_version == version + 1
        assert not s.dirty and not inspect(inst).modified
        inst.title = "再改"  # a later change flushes as usual
    with db.session() as s:
        row = s.get(ProcessInstance, instance_id)
        assert (row.title, row.lock_version) == ("再改", version + 2)


def test_nothing_changed_sends_nothing(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        inst.title = inst.title
        sent, stop = statements(db)
        rowwrites.update_changed(s, inst)
        stop()
        assert sent == [] and not s.dirty


def test_a_stale_version_is_a_conflict_and_writes_nothing(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        title = inst.title
        s.execute(text("UPDATE process_instance SET lock_version = lock_version + 1 WHERE id = :id"),
                  {"id": instance_id})
        inst.title = "过时的修改"
        with pytest.raises(Conflict) as caught:
            rowwrites.update_changed(s, inst)
        assert caught.value.code == "stale" and caught.value.status == 409
        s.rollback()
    with db.session() as s:
        assert s.get(ProcessInstance, instance_id).title == title


def test_new_rows_get_the_column_defaults_and_become_persistent(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        a, b = new_task(inst, assignee_id=None, returned_from="draft"), new_task(inst)
        rowwrites.write_rows(s, [a, b], [])
        assert inspect(a).persistent and inspect(b).persistent and not s.new and not s.dirty
        assert (a.state, a.kind, a.blocked, a.reminders_sent, a.has_signers) == ("open", "task", False, 0, False)
        assert a.created_at is not None
        b.state = "cancelled"  # a later change to a new row is flushed as usual
    with db.session() as s:
        rows = {r.id: r for r in s.scalars(select(HumanTask).where(HumanTask.id.in_([a.id, b.id])))}
        assert (rows[a.id].state, rows[a.id].returned_from, rows[a.id].kind) == ("open", "draft", "task")
        assert rows[b.id].state == "cancelled"


def test_new_rows_go_in_one_insert_and_changed_ones_are_updated(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    draft = only_task(db, instance_id).id
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        task = s.get(HumanTask, draft)
        task.state, task.opinion = "completed", "已拟稿"
        new, other = new_task(inst), new_task(inst)
        sent, stop = statements(db)
        rowwrites.write_rows(s, [new, other], [task])
        stop()
        assert sent == ["UPDATE", "INSERT"] and not s.dirty
    with db.session() as s:
        assert (s.get(HumanTask, draft).state, s.get(HumanTask, draft).opinion) == ("completed", "已拟稿")
        assert s.get(HumanTask, draft).name == task.name  # the columns not changed keep their values
        assert s.get(HumanTask, new.id).state == s.get(HumanTask, other.id).state == "open"


def test_a_changed_row_with_columns_not_loaded_is_updated(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    draft = only_task(db, instance_id).id
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        task = s.get(HumanTask, draft)
        s.expire(task, ["name"])
        task.opinion = "部分加载"
        new = new_task(inst)
        sent, stop = statements(db)
        rowwrites.write_rows(s, [new], [task])
        stop()
        assert sorted(sent) == ["INSERT", "UPDATE"]
    with db.session() as s:
        assert s.get(HumanTask, draft).opinion == "部分加载" and s.get(HumanTask, new.id) is not None


def test_more_rows_than_one_statement_may_carry_are_all_written(db, config):
    # 1,100 rows of 33 columns: more parameters than SQLite or PostgreSQL take in one statement.
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        rows = [new_task(inst, loop_item="many") for _ in range(1100)]
        rowwrites.write_rows(s, rows, [])
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.loop_item == "many")) == 1100


# -- batches: on PostgreSQL the writes of a block go as one statement at its end; elsewhere at once ---------------
def stored(s, sql: str, **params):
    """Rows as the database holds them now, in the session's transaction."""
    return s.connection().execute(text(sql), params).all()


def test_a_batch_sends_its_writes_together_when_the_block_ends(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    draft = only_task(db, instance_id).id
    postgres = db.dialect == "postgresql"
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        task = s.get(HumanTask, draft)
        version = inst.lock_version
        task.state, task.opinion, inst.title = "completed", "已拟稿", "成批"
        a, b = new_task(inst, assignee_id=None), new_task(inst, assignee_id=None)  # NULLs in a multi-row VALUES
        sent, stop = statements(db)
        with rowwrites.batch(s):
            rowwrites.write_rows(s, [a, b], [task])
            rowwrites.update_changed(s, inst)
            # Inside the block nothing has reached the database on PostgreSQL; on SQLite each write went at once.
            seen = stored(s, "SELECT state FROM human_task WHERE id = :id", id=draft)
            assert seen == ([("open",)] if postgres else [("completed",)])
        stop()
        assert sent == (["SELECT"] if postgres else ["UPDATE", "INSERT", "UPDATE", "SELECT"])
        assert inst.lock_version == version + 1 and not s.dirty and inspect(a).persistent
        assert stored(s, "SELECT count(*) FROM human_task WHERE id IN (:a, :b) AND assignee_id IS NULL",
                      a=a.id, b=b.id) == [(2,)]
    with db.session() as s:
        row = s.get(ProcessInstance, instance_id)
        assert (row.title, row.lock_version) == ("成批", version + 1)
        assert (s.get(HumanTask, draft).state, s.get(HumanTask, draft).opinion) == ("completed", "已拟稿")


def test_a_stale_version_in_a_batch_is_a_conflict_and_writes_nothing(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    draft = only_task(db, instance_id).id
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        title = inst.title
        s.execute(text("UPDATE process_instance SET lock_version = lock_version + 1 WHERE id = :id"),
                  {"id": instance_id})
        task = s.get(HumanTask, draft)
        task.opinion, inst.title = "不应写入", "过时的修改"
        with pytest.raises(Conflict) as caught, rowwrites.batch(s):
            rowwrites.write_rows(s, [], [task])
            rowwrites.update_changed(s, inst)
        assert caught.value.code == "stale" and f"ProcessInstance {instance_id}" in caught.value.message
        s.rollback()
    with db.session() as s:
        assert s.get(ProcessInstance, instance_id).title == title and s.get(HumanTask, draft).opinion is None


def test_a_database_error_in_a_batch_is_sqlalchemys_and_nothing_is_written(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        good, orphan = new_task(inst), new_task(inst)
        orphan.instance_id = 987654321  # no such instance: the foreign key refuses the row
        with pytest.raises(IntegrityError) as caught, rowwrites.batch(s):
            rowwrites.write_rows(s, [good, orphan], [])
        if db.dialect == "postgresql":  # the values may be anyone's data: not in the message or the log
            assert "parameters hidden" in str(caught.value)
        good_id = good.id
        s.rollback()
    with db.session() as s:
        assert s.get(HumanTask, good_id) is None


def test_a_block_that_raises_sends_nothing(db, config):
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        row = new_task(inst)
        row_id = row.id
        sent, stop = statements(db)
        with pytest.raises(RuntimeError), rowwrites.batch(s):
            rowwrites.write_rows(s, [row], [])
            raise RuntimeError("the step failed")
        stop()
        assert sent == ([] if db.dialect == "postgresql" else ["INSERT"])
        s.rollback()
    with db.session() as s:
        assert s.get(HumanTask, row_id) is None


def test_a_long_batch_and_a_row_written_twice_are_all_written(db, config):
    # 1,100 rows of 33 columns (more parameters than one statement may carry, were they not arrays), their
    # candidates, and the instance updated twice: the second UPDATE goes after the first, not beside it.
    instance_id = start(db, config, "zhang.wei", DISPATCH)
    draft = only_task(db, instance_id).id
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        version = inst.lock_version
        task = s.get(HumanTask, draft)
        task.opinion, inst.title = "分批", "第一次"
        rows = [new_task(inst, loop_item="parts") for _ in range(1100)]
        with rowwrites.batch(s):
            rowwrites.write_rows(s, rows, [task])
            rowwrites.update_changed(s, inst)
            rowwrites.insert_rows(s, TaskCandidate.__table__, [{"task_id": r.id, "user_id": inst.initiator_id,
                                                                "group_id": None} for r in rows])
            inst.title = "第二次"
            rowwrites.update_changed(s, inst)
        ids = [r.id for r in rows]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.loop_item == "parts")) == 1100
        assert s.scalar(select(func.count()).select_from(TaskCandidate).where(TaskCandidate.task_id.in_(ids))) == 1100
        inst = s.get(ProcessInstance, instance_id)
        assert (inst.title, inst.lock_version, s.get(HumanTask, draft).opinion) == ("第二次", version + 2, "分批")


def test_batches_do_not_nest(db, config):
    with db.transaction() as s, rowwrites.batch(s), pytest.raises(RuntimeError), rowwrites.batch(s):
        pass
