"""The audit trails: hash chains per instance and for the system; any edit or deletion shows, with its seq."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from engine import audit, auth, instances
from engine.errors import AuthenticationFailed
from engine.models import InstanceEvent, ProcessInstance, SystemEvent
from tests.conftest import DEMO_PASSWORD


@pytest.fixture
def instance_id(db, config, user):
    """A started dispatch instance with a few more events recorded by hand."""
    with db.transaction() as s:
        inst = instances.start(s, config, user("zhang.wei"), "document_dispatch")
        clerk = user("zhang.wei")
        audit.record(s, inst, "comment", clerk, opinion="请尽快核稿", note="first")
        audit.record(s, inst, "comment", clerk, task_id="t-1", bpmn_id="draft", task_name="拟稿",
                     opinion="已修改", changes={"title": "新标题", "attachments": ["a", "b"]})
        audit.record(s, inst, "system_note", None, reason="测试")
        return inst.id


def events(db, instance_id) -> list[InstanceEvent]:
    with db.session() as s:
        return list(s.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
                              .order_by(InstanceEvent.seq)))


def verify(db, instance_id):
    with db.session() as s:
        return audit.verify_instance(s, instance_id)


def tamper(db, model, where, **values):
    with db.transaction() as s:
        s.execute(update(model).where(*where).values(**values))


# -- per-instance chain ------------------------------------------------------------------------------

def test_recorded_events_form_an_intact_chain(db, instance_id):
    chain = events(db, instance_id)
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    assert len(chain) >= 5
    assert chain[0].prev_hash == "" and all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert verify(db, instance_id) is None


def test_the_instance_row_holds_the_head_of_its_chain(db, instance_id):
    chain = events(db, instance_id)
    with db.session() as s:
        inst = s.get(ProcessInstance, instance_id)
        assert (inst.event_count, inst.last_event_hash) == (len(chain), chain[-1].hash)


def test_events_keep_actor_task_opinion_and_detail(db, instance_id):
    event = next(e for e in events(db, instance_id) if e.opinion == "已修改")
    assert (event.kind, event.actor_name, event.bpmn_id, event.task_name) == ("comment", "张伟", "draft", "拟稿")
    assert event.detail == {"changes": {"title": "新标题", "attachments": ["a", "b"]}}
    assert events(db, instance_id)[-1].actor_id is None


def test_chains_of_different_instances_are_independent(db, config, user, instance_id):
    with db.transaction() as s:
        other = instances.start(s, config, user("li.na"), "document_dispatch").id
    tamper(db, InstanceEvent, [InstanceEvent.instance_id == instance_id, InstanceEvent.seq == 2], opinion="x")
    assert verify(db, instance_id) == 2
    assert verify(db, other) is None


def seq_of(db, instance_id, opinion):
    return next(e.seq for e in events(db, instance_id) if e.opinion == opinion)


def test_an_edited_opinion_is_detected(db, instance_id):
    seq = seq_of(db, instance_id, "已修改")
    tamper(db, InstanceEvent, [InstanceEvent.instance_id == instance_id, InstanceEvent.seq == seq], opinion="同意")
    assert verify(db, instance_id) == seq


def test_an_edited_detail_is_detected(db, instance_id):
    seq = seq_of(db, instance_id, "已修改")
    tamper(db, InstanceEvent, [InstanceEvent.instance_id == instance_id, InstanceEvent.seq == seq],
           detail={"changes": {"title": "新标题", "attachments": ["a"]}})
    assert verify(db, instance_id) == seq


def test_an_edited_time_is_detected(db, instance_id):
    first = events(db, instance_id)[0]
    tamper(db, InstanceEvent, [InstanceEvent.id == first.id], at=first.at - timedelta(days=1))
    assert verify(db, instance_id) == 1


@pytest.mark.parametrize("field", ["actor_name", "kind", "task_name"])
def test_other_edited_fields_are_detected(db, instance_id, field):
    seq = seq_of(db, instance_id, "已修改")
    tamper(db, InstanceEvent, [InstanceEvent.instance_id == instance_id, InstanceEvent.seq == seq], **{field: "伪造"})
    assert verify(db, instance_id) == seq


def test_a_recomputed_hash_still_breaks_the_next_link(db, instance_id):
    """Rewriting an event and its own hash leaves the following event pointing at the old hash."""
    chain = events(db, instance_id)
    target = chain[1]
    fields = audit._instance_fields(target) | {"opinion": "伪造"}
    tamper(db, InstanceEvent, [InstanceEvent.id == target.id], opinion="伪造",
           hash=audit._digest(target.prev_hash, fields))
    assert verify(db, instance_id) == target.seq + 1


def delete_event(db, instance_id, seq):
    with db.transaction() as s:
        s.execute(delete(InstanceEvent).where(InstanceEvent.instance_id == instance_id, InstanceEvent.seq == seq))


def test_a_deleted_event_in_the_middle_is_detected(db, instance_id):
    delete_event(db, instance_id, 3)
    assert verify(db, instance_id) == 4


def test_a_deleted_first_event_is_detected(db, instance_id):
    delete_event(db, instance_id, 1)
    assert verify(db, instance_id) == 2


def test_a_deleted_last_event_is_detected(db, instance_id):
    last = events(db, instance_id)[-1].seq
    delete_event(db, instance_id, last)
    assert verify(db, instance_id) == last


def test_recording_continues_the_chain_after_verification(db, instance_id):
    with db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        audit.record(s, inst, "comment", None, opinion="later")
    assert verify(db, instance_id) is None


# -- system chain ------------------------------------------------------------------------------------

def system_events(db) -> list[SystemEvent]:
    with db.session() as s:
        return list(s.scalars(select(SystemEvent).order_by(SystemEvent.seq)))


def verify_system(db):
    with db.session() as s:
        return audit.verify_system(s)


@pytest.fixture
def logins(db, config, fast_passwords):
    """A successful login, a wrong password and an unknown user: three more system events."""
    auth.login(db, config, "li.na", DEMO_PASSWORD, source="10.0.0.1")
    for username in ("li.na", "nobody"):
        with pytest.raises(AuthenticationFailed):
            auth.login(db, config, username, "wrong-password1", source="10.0.0.2")
    return system_events(db)[-3:]


def test_the_seeded_system_chain_is_intact(db):
    assert "process_deployed" in {e.kind for e in system_events(db)}
    assert verify_system(db) is None


def test_logins_extend_the_system_chain(db, logins):
    assert [(e.kind, e.target, e.detail["source"]) for e in logins] == [
        ("login", "li.na", "10.0.0.1"), ("login_failed", "li.na", "10.0.0.2"), ("login_failed", "nobody", "10.0.0.2")]
    assert logins[0].actor_name == "李娜" and logins[2].actor_id is None
    assert verify_system(db) is None


def test_record_system_appends_with_the_next_seq(db, user, logins):
    with db.transaction() as s:
        audit.record_system(s, "user_updated", user("admin"), target="li.na", field="phone")
    last = system_events(db)[-1]
    assert (last.seq, last.kind, last.detail) == (logins[-1].seq + 1, "user_updated", {"field": "phone"})
    assert last.prev_hash == logins[-1].hash
    assert verify_system(db) is None


def test_an_edited_system_detail_is_detected(db, logins):
    tamper(db, SystemEvent, [SystemEvent.seq == logins[1].seq], detail={"source": "10.0.0.2", "reason": "unknown"})
    assert verify_system(db) == logins[1].seq


def test_an_edited_system_target_is_detected(db, logins):
    tamper(db, SystemEvent, [SystemEvent.seq == logins[0].seq], target="admin")
    assert verify_system(db) == logins[0].seq


def test_an_edited_system_time_is_detected(db, logins):
    tamper(db, SystemEvent, [SystemEvent.seq == logins[2].seq], at=logins[2].at + timedelta(seconds=1))
    assert verify_system(db) == logins[2].seq


def test_a_deleted_system_event_is_detected(db, logins):
    with db.transaction() as s:
        s.execute(delete(SystemEvent).where(SystemEvent.seq == logins[1].seq))
    assert verify_system(db) == logins[2].seq


def test_a_deleted_last_system_event_is_detected(db, logins):
    with db.transaction() as s:
        s.execute(delete(SystemEvent).where(SystemEvent.seq == logins[2].seq))
    assert verify_system(db) == logins[2].seq
