"""engine.tasks: inboxes, claiming, completing with validation, assignment errors, opinions and views."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine import instances, tasks
from engine.errors import Conflict, Forbidden, NotFound, ScriptError, ValidationFailed
from engine.models import Attachment, Group, GroupMember, HumanTask
from tests.engine.helpers import (
    bpmn,
    claim,
    complete,
    deploy_bundle,
    dispatch_to_distribution,
    distribute_payload,
    draft_payload,
    event_count,
    events,
    flows,
    instance,
    load_user,
    only_task,
    open_tasks,
    review,
    start,
    start_dispatch,
    upload,
    user_task,
    view,
    workflow_data,
)


def inbox(db, username: str, scope: str = "mine", page: int = 1, per_page: int = 20):
    with db.session() as s:
        return tasks.inbox(s, load_user(s, username), scope, page, per_page)


def inbox_ids(db, username: str, scope: str = "mine") -> set[str]:
    items, total = inbox(db, username, scope, per_page=100)
    assert total == len(items)
    return {t.id for t in items}


def counts(db, username: str) -> dict:
    with db.session() as s:
        return tasks.counts(s, load_user(s, username))


def stored(db, instance_id: int) -> tuple:
    """What must not change when a write is refused: state, version, events, open tasks."""
    row = instance(db, instance_id, with_state=True)
    return row.state, row.lock_version, event_count(db, instance_id), sorted(t.id for t in open_tasks(db, instance_id))


def add_to_office_clerks(db, username: str) -> None:
    with db.transaction() as s:
        group_id = s.scalar(select(Group.id).where(Group.code == "office_clerks"))
        s.add(GroupMember(group_id=group_id, user_id=load_user(s, username).id))


# -- inbox ---------------------------------------------------------------------------------------------
def test_mine_lists_my_open_tasks_newest_first_in_pages(db, config):
    ids = [start(db, config, "zhang.wei") for _ in range(3)]
    drafts = [only_task(db, i, "draft").id for i in ids]

    (page1, total1), (page2, total2) = inbox(db, "zhang.wei", per_page=2), inbox(db, "zhang.wei", page=2, per_page=2)

    assert (total1, total2) == (3, 3)
    assert [t.id for t in page1 + page2] == drafts[::-1]
    assert inbox(db, "zhang.wei", page=5, per_page=2) == ([], 3)  # past the last page: no items, the total still
    assert inbox(db, "li.na", page=2) == ([], 0)


def test_mine_leaves_out_other_peoples_and_closed_tasks(db, config):
    hers = start(db, config, "li.na")
    submitted = start_dispatch(db, config)

    assert inbox_ids(db, "zhang.wei") == set()
    assert inbox_ids(db, "li.na") == {only_task(db, hers).id, only_task(db, submitted).id}


def test_done_lists_what_i_completed(db, config):
    first, second = start_dispatch(db, config), start_dispatch(db, config)

    done, total = inbox(db, "zhang.wei", "done")

    assert total == 2
    assert {t.instance_id for t in done} == {first, second}
    assert all(t.state == "completed" and t.bpmn_id == "draft" for t in done)


def test_group_offers_the_distribution_task_to_clerks_only(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task = only_task(db, instance_id, "distribute")

    assert task.assignee_id is None
    assert inbox_ids(db, "zhang.wei", "group") == {task.id}
    assert inbox_ids(db, "li.na", "group") == set()
    assert inbox_ids(db, "zhang.wei", "mine") == set()


def test_counts_match_the_inbox_tabs(db, config, registry):
    dispatch_to_distribution(db, config, registry)
    start(db, config, "zhang.wei")
    start(db, config, "zhang.wei")

    assert counts(db, "zhang.wei") == {"mine": 2, "group": 1, "cc": 0}
    assert counts(db, "li.na") == {"mine": 0, "group": 0, "cc": 0}


def test_unassigned_is_for_admins_only(db, config):
    with pytest.raises(Forbidden):
        inbox(db, "li.na", "unassigned")
    assert inbox(db, "admin", "unassigned") == ([], 0)


def test_unknown_inbox_scope_is_invalid(db):
    with pytest.raises(ValidationFailed):
        inbox(db, "zhang.wei", "everything")


# -- claim / unclaim ----------------------------------------------------------------------------------------
def test_a_clerk_claims_the_distribution_task(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task = only_task(db, instance_id, "distribute")

    claimed = claim(db, config, "zhang.wei", task.id)

    assert claimed.assignee_id == load_user_id(db, "zhang.wei") and claimed.claimed_at is not None
    assert inbox_ids(db, "zhang.wei", "mine") == {task.id}
    assert inbox_ids(db, "zhang.wei", "group") == set()
    assert events(db, instance_id)[-1].kind == "task_claimed"


def test_claiming_my_own_claim_again_changes_nothing(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id, "distribute").id
    claim(db, config, "zhang.wei", task_id)
    before = event_count(db, instance_id)

    claim(db, config, "zhang.wei", task_id)

    assert event_count(db, instance_id) == before


def test_a_second_claim_by_another_clerk_conflicts(db, config, registry):
    add_to_office_clerks(db, "wang.fang")
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id, "distribute").id
    assert task_id in inbox_ids(db, "wang.fang", "group")
    claim(db, config, "zhang.wei", task_id)

    with pytest.raises(Conflict) as err:
        claim(db, config, "wang.fang", task_id)

    assert err.value.code == "task_claimed"
    assert only_task(db, instance_id).assignee_id == load_user_id(db, "zhang.wei")


def test_someone_not_offered_the_task_may_not_claim_it(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)

    with pytest.raises(Forbidden) as err:
        claim(db, config, "li.na", only_task(db, instance_id).id)

    assert err.value.code == "not_a_candidate"


def test_unclaim_gives_the_task_back_to_the_group(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id).id
    claim(db, config, "zhang.wei", task_id)

    with db.transaction() as s:
        tasks.unclaim(s, config, load_user(s, "zhang.wei"), task_id)

    assert only_task(db, instance_id).assignee_id is None
    assert inbox_ids(db, "zhang.wei", "group") == {task_id}
    assert events(db, instance_id)[-1].kind == "task_unclaimed"


def test_only_the_claimant_may_unclaim(db, config, registry):
    add_to_office_clerks(db, "wang.fang")
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id).id
    claim(db, config, "zhang.wei", task_id)

    with pytest.raises(Forbidden), db.transaction() as s:
        tasks.unclaim(s, config, load_user(s, "wang.fang"), task_id)


def test_an_assigned_task_cannot_be_unclaimed(db, config):
    instance_id = start_dispatch(db, config)

    with pytest.raises(Conflict) as err, db.transaction() as s:
        tasks.unclaim(s, config, load_user(s, "li.na"), only_task(db, instance_id).id)

    assert err.value.code == "not_claimable"


def test_completing_an_offered_task_claims_it(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id).id

    complete(db, config, "zhang.wei", task_id, distribute_payload())

    with db.session() as s:
        row = s.get(HumanTask, task_id)
    assert (row.state, row.assignee_id, row.completed_by_id) == ("completed", *[load_user_id(db, "zhang.wei")] * 2)
    assert instance(db, instance_id).status == "completed"


def load_user_id(db, username: str) -> int:
    with db.session() as s:
        return load_user(s, username).id


# -- completing: who may, and only once ---------------------------------------------------------------------
def test_completing_a_task_twice_conflicts_and_changes_nothing(db, config):
    instance_id = start_dispatch(db, config)
    task_id = only_task(db, instance_id, "review").id
    review(db, config, instance_id)
    before = stored(db, instance_id)

    with pytest.raises(Conflict) as err:
        complete(db, config, "li.na", task_id, {"review_decision": "approve"})

    assert err.value.code == "task_closed"
    assert stored(db, instance_id) == before


def test_someone_else_may_not_complete_my_task(db, config):
    instance_id = start(db, config, "zhang.wei")
    task_id = only_task(db, instance_id).id
    body = upload(db, config, "li.na")
    before = stored(db, instance_id)

    with pytest.raises(Forbidden) as err:
        complete(db, config, "li.na", task_id, draft_payload(body))

    assert err.value.code == "not_your_task"
    assert stored(db, instance_id) == before


def test_a_task_outside_my_scope_is_not_found(db, config):
    instance_id = start(db, config, "zhang.wei")
    task_id = only_task(db, instance_id).id

    with pytest.raises(NotFound), db.session() as s:
        tasks.get(s, load_user(s, "zhao.min"), task_id)
    with pytest.raises(NotFound):
        complete(db, config, "zhao.min", task_id, draft_payload(upload(db, config, "zhao.min")))
    with pytest.raises(NotFound):
        claim(db, config, "chen.jie", task_id)


def test_a_missing_task_is_not_found(db, config):
    with pytest.raises(NotFound):
        complete(db, config, "admin", "00000000-0000-0000-0000-000000000000", {})


def test_data_must_be_an_object(db, config):
    instance_id = start(db, config, "zhang.wei")
    with pytest.raises(ValidationFailed):
        complete(db, config, "zhang.wei", only_task(db, instance_id).id, ["title"])


# -- validation ------------------------------------------------------------------------------------------------
def test_invalid_form_data_is_refused_field_by_field_and_nothing_is_lost(db, config):
    instance_id = start(db, config, "zhang.wei")
    task_id = only_task(db, instance_id).id
    data_before = workflow_data(db, instance_id)
    before = stored(db, instance_id)

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", task_id, {"title": "x", "doc_type": "便条", "urgency": "加急"})

    errors = err.value.errors
    assert errors["title"][0]["code"] == "minLength" and errors["title"][0]["limit"] == 2
    assert errors["doc_type"][0]["code"] == "enum"
    assert {e["code"] for f in ("secrecy", "main_recipients", "body_file") for e in errors[f]} == {"required"}
    assert "urgency" not in errors
    assert stored(db, instance_id) == before
    assert workflow_data(db, instance_id) == data_before
    assert only_task(db, instance_id).state == "open"


def test_conditional_requirements_are_enforced(db, config):
    instance_id = start_dispatch(db, config)

    with pytest.raises(ValidationFailed) as err:
        review(db, config, instance_id, "return", opinion=None)

    assert [e["code"] for e in err.value.errors["opinion"]] == ["required"]


def test_secret_documents_need_a_secrecy_period(db, config):
    instance_id = start(db, config, "zhang.wei")
    body = upload(db, config, "zhang.wei")

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, instance_id).id, draft_payload(body, secrecy="秘密"))

    assert list(err.value.errors) == ["secrecy_period"]


def test_another_users_attachment_is_refused(db, config):
    instance_id = start(db, config, "zhang.wei")
    foreign = upload(db, config, "li.na")
    before = stored(db, instance_id)

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, instance_id).id, draft_payload(foreign))

    assert [e["code"] for e in err.value.errors["body_file"]] == ["unknown_file"]
    assert stored(db, instance_id) == before
    with db.session() as s:
        assert s.get(Attachment, foreign).instance_id is None


def test_an_attachment_of_another_instance_is_refused(db, config):
    first = start_dispatch(db, config)
    used = workflow_data(db, first)["body_file"]
    second = start(db, config, "zhang.wei")

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, second).id, draft_payload(used))

    assert [e["code"] for e in err.value.errors["body_file"]] == ["unknown_file"]


def test_a_missing_attachment_is_refused(db, config):
    instance_id = start(db, config, "zhang.wei")
    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, instance_id).id,
                 draft_payload("00000000-0000-0000-0000-000000000000"))
    assert "body_file" in err.value.errors


def test_submitted_attachments_are_bound_to_the_instance(db, config):
    body = upload(db, config, "zhang.wei")
    extra = upload(db, config, "zhang.wei", "附件.pdf")
    instance_id = start_dispatch(db, config, body_file=body, attachments=[extra])

    with db.session() as s:
        assert {s.get(Attachment, a).instance_id for a in (body, extra)} == {instance_id}


def test_an_unknown_unit_is_refused(db, config):
    instance_id = start(db, config, "zhang.wei")
    body = upload(db, config, "zhang.wei")

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, instance_id).id,
                 draft_payload(body, countersign_units=["ZCFGC", "NO_SUCH_UNIT"]))

    assert [(e["code"], e["limit"]) for e in err.value.errors["countersign_units"]] == [
        ("unknown_unit", "NO_SUCH_UNIT")]


PICK_FORM = json.dumps({
    "type": "object",
    "required": ["checker"],
    "properties": {"checker": {"type": "string"}, "note": {"type": "string"}, "opinion": {"type": "string"}},
    "ui": {"widgets": {"checker": "user"}},
})


def deploy_pick_process(db) -> None:
    """pick: the initiator names a checker; check: assigned to the user named in the field."""
    body = ('<bpmn:startEvent id="start"/>' + user_task("pick", "指定核查人", form="pick.schema.json")
            + user_task("check", "核查", 'field("checker")') + '<bpmn:endEvent id="end"/>'
            + flows(("start", "pick"), ("pick", "check"), ("check", "end")))
    deploy_bundle(db, "pick_checker", bpmn("pick_checker", body),
                  forms={"pick.schema.json": PICK_FORM, "note.schema.json": json.dumps(
                      {"type": "object", "properties": {"note": {"type": "string"}}})})


def test_an_unknown_user_is_refused(db, config):
    deploy_pick_process(db)
    instance_id = start(db, config, "zhang.wei", "pick_checker")

    with pytest.raises(ValidationFailed) as err:
        complete(db, config, "zhang.wei", only_task(db, instance_id).id, {"checker": "no.such.user"})

    assert [e["code"] for e in err.value.errors["checker"]] == ["unknown_user"]


def test_a_user_named_in_a_field_gets_the_next_task(db, config):
    deploy_pick_process(db)
    instance_id = start(db, config, "zhang.wei", "pick_checker")

    complete(db, config, "zhang.wei", only_task(db, instance_id).id, {"checker": "wang.fang"})

    assert only_task(db, instance_id, "check").assignee_id == load_user_id(db, "wang.fang")


def test_a_process_error_after_completion_rolls_everything_back(db, config):
    body = ('<bpmn:startEvent id="start"/>' + user_task("ask", "选择") + '<bpmn:exclusiveGateway id="route"/>'
            '<bpmn:endEvent id="end_a"/><bpmn:endEvent id="end_b"/>' + flows(("start", "ask"), ("ask", "route"))
            + "".join(f'<bpmn:sequenceFlow id="to_{x}" sourceRef="route" targetRef="end_{x}">'
                      f"<bpmn:conditionExpression>note == '{x}'</bpmn:conditionExpression></bpmn:sequenceFlow>"
                      for x in "ab"))
    deploy_bundle(db, "two_ways", bpmn("two_ways", body))
    instance_id = start(db, config, "zhang.wei", "two_ways")
    task_id = only_task(db, instance_id).id
    before = stored(db, instance_id)

    with pytest.raises(ScriptError) as err:
        complete(db, config, "zhang.wei", task_id, {"note": "c"})

    assert "route" in err.value.message
    assert stored(db, instance_id) == before
    complete(db, config, "zhang.wei", task_id, {"note": "b"})
    row = instance(db, instance_id)
    assert row.status == "completed" and "end_b" in row.completed_elements and "end_a" not in row.completed_elements


# -- assignment errors --------------------------------------------------------------------------------------------
@pytest.fixture
def orphan(db, config) -> str:
    """The id of a task whose assignment rule matched nobody."""
    body = ('<bpmn:startEvent id="start"/>' + user_task("orphan", "无人认领", 'user("nobody")')
            + '<bpmn:endEvent id="end"/>' + flows(("start", "orphan"), ("orphan", "end")))
    deploy_bundle(db, "orphan_process", bpmn("orphan_process", body))
    return only_task(db, start(db, config, "zhang.wei", "orphan_process")).id


def test_a_rule_matching_nobody_leaves_an_assignment_error(db, orphan):
    with db.session() as s:
        task = s.get(HumanTask, orphan)
    assert task.assignee_id is None
    assert "nobody" in task.assignment_error
    created = events(db, task.instance_id, "task_created")[-1]
    assert created.detail["assignment_error"] == task.assignment_error


def test_the_admins_unassigned_inbox_shows_it(db, orphan):
    items, total = inbox(db, "admin", "unassigned")
    assert (total, [t.id for t in items]) == (1, [orphan])


def test_nobody_can_complete_an_unassigned_task(db, config, orphan):
    with pytest.raises(Forbidden):
        complete(db, config, "zhang.wei", orphan, {})


def test_admin_assigns_it_and_the_assignee_completes(db, config, orphan):
    with db.transaction() as s:
        tasks.assign(s, config, load_user(s, "admin"), orphan, "li.na", "规则有误，临时指派")

    with db.session() as s:
        task = s.get(HumanTask, orphan)
    assert (task.assignee_id, task.assignment_error) == (load_user_id(db, "li.na"), None)
    assert inbox(db, "admin", "unassigned") == ([], 0)
    assigned = events(db, task.instance_id)[-1]
    assert (assigned.kind, assigned.opinion, assigned.detail["assignee"]) == (
        "task_assigned", "规则有误，临时指派", "li.na")

    complete(db, config, "li.na", orphan, {"note": "已处理"})
    assert instance(db, task.instance_id).status == "completed"


def test_only_admins_assign(db, config, orphan):
    with pytest.raises(Forbidden), db.transaction() as s:
        tasks.assign(s, config, load_user(s, "li.na"), orphan, "li.na")


def test_assigning_to_an_unknown_user_is_invalid(db, config, orphan):
    with pytest.raises(ValidationFailed) as err, db.transaction() as s:
        tasks.assign(s, config, load_user(s, "admin"), orphan, "no.such.user")
    assert "username" in err.value.errors


# -- opinions and views ------------------------------------------------------------------------------------------
def test_the_opinion_is_audited_but_not_carried_in_workflow_data(db, config):
    instance_id = start_dispatch(db, config, opinion="请李主任审核")
    review_id = only_task(db, instance_id, "review").id
    review(db, config, instance_id, "approve", "同意，请厅长签发")

    with db.session() as s:
        done = {t.bpmn_id: t.opinion for t in s.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance_id, HumanTask.state == "completed"))}
    assert done == {"draft": "请李主任审核", "review": "同意，请厅长签发"}
    completed = events(db, instance_id, "task_completed")
    assert [(e.task_name, e.opinion) for e in completed] == [("拟稿", "请李主任审核"), ("核稿", "同意，请厅长签发")]
    assert completed[1].task_id == review_id
    assert "opinion" not in completed[0].detail["changes"]
    assert "opinion" not in workflow_data(db, instance_id)


def test_the_audit_event_records_what_changed(db, config):
    instance_id = start_dispatch(db, config)
    review(db, config, instance_id)

    changes = events(db, instance_id, "task_completed")[-1].detail["changes"]
    assert changes == {"review_decision": "approve"}


def test_view_shows_the_form_and_the_current_data(db, config):
    instance_id = start_dispatch(db, config, title="关于做好防汛工作的通知", countersign_units=[])
    task_id = only_task(db, instance_id, "review").id

    shown = view(db, config, "li.na", task_id)

    assert shown.form.name == "review.schema.json"
    assert shown.form.required == {"review_decision"}
    assert shown.data["title"] == "关于做好防汛工作的通知"
    assert set(shown.data) <= set(shown.form.properties)
    assert "initiator" not in shown.data and "countersign_units" not in shown.data
    assert shown.can_act and shown.instance.id == instance_id
    assert not view(db, config, "zhang.wei", task_id).can_act


def test_view_of_a_closed_task_offers_no_action(db, config):
    instance_id = start_dispatch(db, config)
    draft = events(db, instance_id, "task_completed")[0].task_id

    shown = view(db, config, "zhang.wei", draft)

    assert (shown.task.state, shown.can_act) == ("completed", False)
    assert set(shown.data) <= set(shown.form.properties)


def test_view_of_a_task_outside_my_scope_is_not_found(db, config):
    instance_id = start(db, config, "zhao.min")
    with pytest.raises(NotFound):
        view(db, config, "chen.jie", only_task(db, instance_id).id)


def test_active_tasks_match_the_inbox(db, config):
    instance_id = start_dispatch(db, config)
    with db.session() as s:
        active = instances.active_tasks(s, instance_id)
    assert [t.id for t in active] == [t.id for t in inbox(db, "li.na")[0]]
