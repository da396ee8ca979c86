"""engine.instances: starting, reading and listing within the data scope, and admin operations."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine import instances, jobs, tasks
from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed
from engine.instances import Filters
from engine.models import HumanTask, ProcessInstance
from tests.engine.helpers import (
    DISPATCH,
    bpmn,
    complete,
    deploy_bundle,
    event_count,
    events,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    open_tasks,
    review,
    sign_off,
    start,
    start_dispatch,
    user_task,
    view,
    workflow_data,
)

# A process anyone may start (enterprise users included) whose one task goes to a named user.
OPEN_PROCESS = "open_report"


def deploy_open_process(db, assignee: str = "initiator") -> int:
    body = ('<bpmn:startEvent id="start"/>' + user_task("fill", "填报", assignee) + '<bpmn:endEvent id="end"/>'
            + flows(("start", "fill"), ("fill", "end")))
    return deploy_bundle(db, OPEN_PROCESS, bpmn(OPEN_PROCESS, body), name="企业填报", starters="*")


def visible_ids(db, username: str, **filters) -> set[int]:
    with db.session() as s:
        items, total = instances.query(s, load_user(s, username), Filters(**filters), per_page=100)
    assert total == len(items)
    return {i.id for i in items}


def can_get(db, username: str, instance_id: int) -> bool:
    with db.session() as s:
        try:
            instances.get(s, load_user(s, username), instance_id)
        except NotFound:
            return False
    return True


# -- start ---------------------------------------------------------------------------------------------
def test_start_records_business_key_initiator_and_region(db, config):
    instance_id = start(db, config, "chen.jie", business_key="FW-2026-001")

    row = instance(db, instance_id)
    assert (row.process_key, row.status, row.business_key) == (DISPATCH, "running", "FW-2026-001")
    assert row.region_code == "450100"
    assert [e.kind for e in events(db, instance_id)] == ["started", "task_created"]
    assert events(db, instance_id, "started")[0].detail["business_key"] == "FW-2026-001"


def test_title_defaults_to_the_process_name_and_the_initiator(db, config):
    assert instance(db, start(db, config, "zhang.wei")).title.startswith("发文（张伟 ")


def test_title_given_at_start_is_kept(db, config):
    assert instance(db, start(db, config, "zhang.wei", title="临时标题")).title == "临时标题"


def test_title_follows_the_draft_title_field(db, config):
    instance_id = start_dispatch(db, config, title="关于开展安全生产大检查的通知")

    assert instance(db, instance_id).title == "关于开展安全生产大检查的通知"
    assert only_task(db, instance_id, "review").instance_title == "关于开展安全生产大检查的通知"


def test_title_change_on_resubmission_updates_the_task_rows(db, config):
    instance_id = start_dispatch(db, config, title="初稿标题")
    review(db, config, instance_id, "return", "标题不准确")
    draft = only_task(db, instance_id, "draft")
    shown = view(db, config, "zhang.wei", draft.id).data
    complete(db, config, "zhang.wei", draft.id, {**shown, "title": "修改后的标题"})

    assert instance(db, instance_id).title == "修改后的标题"
    with db.session() as s:
        titles = set(s.scalars(select(HumanTask.instance_title).where(HumanTask.instance_id == instance_id)))
    assert titles == {"修改后的标题"}


def test_enterprise_user_may_not_start_document_dispatch(db, config):
    with pytest.raises(Forbidden) as err, db.transaction() as s:
        instances.start(s, config, load_user(s, "qiye.hg001"), DISPATCH)
    assert err.value.code == "not_a_starter"


def test_may_start_lists_starters(db, config, user):
    with db.session() as s:
        meta = {"starters": ["dept_head"]}
        assert instances.may_start(user("liu.yang"), meta)
        assert not instances.may_start(user("zhang.wei"), meta)
        assert instances.may_start(user("admin"), meta)
        assert instances.may_start(user("qiye.hg001"), {"starters": "*"})
        startable = [m.key for m, _ in instances.startable_models(s, user("qiye.hg001"))]
    assert DISPATCH not in startable


def test_unknown_process_is_not_found(db, config):
    with pytest.raises(NotFound), db.transaction() as s:
        instances.start(s, config, load_user(s, "zhang.wei"), "no_such_process")


@pytest.mark.parametrize("data", [
    ["not", "an", "object"],
    [],
    "a string",
    "",
    {"blob": "x" * (instances.MAX_START_DATA + 1)},
    {"_private": 1},
    {"__class__": "x"},
    {"not an identifier": 1},
], ids=["list", "empty-list", "string", "empty-string", "huge", "underscore", "dunder", "non-identifier"])
def test_bad_start_data_is_refused(db, config, data):
    with db.session() as s:
        before = s.scalar(select(func.count()).select_from(ProcessInstance))

    with pytest.raises(ValidationFailed) as err, db.transaction() as s:
        instances.start(s, config, load_user(s, "zhang.wei"), DISPATCH, data=data)

    assert err.value.errors
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == before


def test_start_data_reaches_the_workflow(db, config):
    instance_id = start(db, config, "zhang.wei", data={"source": "email"}, business_key="BK-7")

    data = workflow_data(db, instance_id)
    assert (data["source"], data["initiator"], data["business_key"]) == ("email", "zhang.wei", "BK-7")


# -- get / query -----------------------------------------------------------------------------------------
def test_get_returns_a_visible_instance(db, config):
    instance_id = start(db, config, "zhang.wei")
    with db.session() as s:
        assert instances.get(s, load_user(s, "li.na"), instance_id).id == instance_id


def test_get_of_a_missing_instance_is_not_found(db, config):
    with pytest.raises(NotFound), db.session() as s:
        instances.get(s, load_user(s, "admin"), 999_999)


def test_query_filters_by_process_key(db, config):
    deploy_open_process(db)
    dispatch_id = start(db, config, "zhang.wei")
    other_id = start(db, config, "zhang.wei", OPEN_PROCESS)

    assert visible_ids(db, "zhang.wei", process_key=DISPATCH) == {dispatch_id}
    assert visible_ids(db, "zhang.wei", process_key=OPEN_PROCESS) == {other_id}


def test_query_filters_by_status(db, config):
    running = start(db, config, "zhang.wei")
    stopped = start(db, config, "zhang.wei")
    with db.transaction() as s:
        instances.terminate(s, config, load_user(s, "admin"), stopped, "重复发起")

    assert visible_ids(db, "zhang.wei", status="running") == {running}
    assert visible_ids(db, "zhang.wei", status="terminated") == {stopped}


def test_query_filters_by_business_key(db, config):
    wanted = start(db, config, "zhang.wei", business_key="FW-1")
    start(db, config, "zhang.wei", business_key="FW-2")

    assert visible_ids(db, "zhang.wei", business_key="FW-1") == {wanted}


def test_query_searches_titles(db, config):
    flood = start(db, config, "zhang.wei", title="关于防汛工作的通知")
    start(db, config, "zhang.wei", title="关于森林防火的通知")

    assert visible_ids(db, "zhang.wei", q="防汛") == {flood}
    assert visible_ids(db, "zhang.wei", q="100%_") == set()  # wildcards are literal


def test_query_mine_keeps_my_own(db, config):
    mine = start(db, config, "zhang.wei")
    start(db, config, "li.na")

    assert visible_ids(db, "zhang.wei", mine=True) == {mine}
    assert len(visible_ids(db, "zhang.wei")) == 2


def test_query_pages_newest_first(db, config):
    ids = [start(db, config, "zhang.wei", title=f"第{i}号") for i in range(5)]

    with db.session() as s:
        me = load_user(s, "zhang.wei")
        pages = [instances.query(s, me, Filters(), page=p, per_page=2) for p in (1, 2, 3, 4)]

    assert [total for _, total in pages] == [5, 5, 5, 5]
    assert [[i.id for i in items] for items, _ in pages] == [ids[4:2:-1], ids[2:0:-1], ids[:1], []]


# -- data scope ------------------------------------------------------------------------------------------
@pytest.fixture
def city_instances(db, config):
    """One 发文 started in 南宁 (chen.jie) and one in 柳州 (zhao.min)."""
    return {"nanning": start(db, config, "chen.jie"), "liuzhou": start(db, config, "zhao.min")}


def test_nanning_does_not_see_liuzhou(db, city_instances):
    assert not can_get(db, "chen.jie", city_instances["liuzhou"])
    assert visible_ids(db, "chen.jie") == {city_instances["nanning"]}


def test_liuzhou_does_not_see_nanning(db, city_instances):
    assert not can_get(db, "zhao.min", city_instances["nanning"])
    assert visible_ids(db, "zhao.min") == {city_instances["liuzhou"]}


def test_province_sees_every_city(db, city_instances):
    assert can_get(db, "li.na", city_instances["nanning"]) and can_get(db, "li.na", city_instances["liuzhou"])
    assert visible_ids(db, "li.na") == set(city_instances.values())


def test_enterprise_user_sees_only_their_enterprise(db, config, city_instances):
    deploy_open_process(db)
    own = start(db, config, "qiye.hg001", OPEN_PROCESS)

    assert visible_ids(db, "qiye.hg001") == {own}
    assert not can_get(db, "qiye.hg001", city_instances["nanning"])
    assert instance(db, own).region_code == "450102"


def test_enterprise_user_does_not_see_other_instances_of_their_district(db, config):
    deploy_open_process(db)
    with db.transaction() as s:  # a staff member working in 兴宁区 itself
        load_user(s, "chen.jie").region_code = "450102"
    district = start(db, config, "chen.jie", OPEN_PROCESS)
    own = start(db, config, "qiye.hg001", OPEN_PROCESS)

    assert visible_ids(db, "qiye.hg001") == {own}
    assert not can_get(db, "qiye.hg001", district)


def test_city_sees_instances_of_enterprises_below_it(db, config):
    deploy_open_process(db)
    enterprise = start(db, config, "qiye.hg001", OPEN_PROCESS)

    assert can_get(db, "chen.jie", enterprise)
    assert enterprise in visible_ids(db, "chen.jie")
    assert not can_get(db, "zhao.min", enterprise)


def test_a_task_holder_outside_the_region_still_sees_the_instance(db, config):
    deploy_open_process(db, assignee='user("chen.jie")')
    liuzhou = start(db, config, "zhao.min", OPEN_PROCESS)

    assert can_get(db, "chen.jie", liuzhou)
    with db.session() as s:
        chen = load_user(s, "chen.jie")
        [task], _ = tasks.inbox(s, chen, "mine")
        assert task.instance_id == liuzhou and tasks.get(s, chen, task.id).id == task.id


def test_a_task_holder_keeps_seeing_the_instance_after_completing(db, config):
    deploy_open_process(db, assignee='user("chen.jie")')
    liuzhou = start(db, config, "zhao.min", OPEN_PROCESS)
    complete(db, config, "chen.jie", only_task(db, liuzhou).id, {"note": "已填"})

    assert instance(db, liuzhou).status == "completed"
    assert can_get(db, "chen.jie", liuzhou)


# -- admin operations ---------------------------------------------------------------------------------------
def admin_op(db, config, op, username: str, instance_id: int, reason: str = ""):
    with db.transaction() as s:
        return op(s, config, load_user(s, username), instance_id, reason)


def test_admin_suspends_and_resumes(db, config):
    instance_id = start_dispatch(db, config)

    admin_op(db, config, instances.suspend, "admin", instance_id, "待核实")
    assert instance(db, instance_id).status == "suspended"
    admin_op(db, config, instances.resume, "admin", instance_id, "已核实")

    assert instance(db, instance_id).status == "running"
    history = [(e.kind, e.opinion, e.actor_name) for e in events(db, instance_id)][-2:]
    assert history == [("suspended", "待核实", "系统管理员"), ("resumed", "已核实", "系统管理员")]


def test_completing_a_task_of_a_suspended_instance_conflicts(db, config):
    instance_id = start_dispatch(db, config)
    admin_op(db, config, instances.suspend, "admin", instance_id)
    task = only_task(db, instance_id, "review")

    with pytest.raises(Conflict) as err:
        review(db, config, instance_id)

    assert err.value.code == "instance_not_running"
    assert only_task(db, instance_id, "review").id == task.id


def test_a_resumed_instance_moves_on(db, config):
    instance_id = start_dispatch(db, config)
    admin_op(db, config, instances.suspend, "admin", instance_id)
    admin_op(db, config, instances.resume, "admin", instance_id)

    review(db, config, instance_id)

    assert only_task(db, instance_id).bpmn_id == "sign_off"


def test_suspending_twice_conflicts(db, config):
    instance_id = start(db, config, "zhang.wei")
    admin_op(db, config, instances.suspend, "admin", instance_id)
    with pytest.raises(Conflict):
        admin_op(db, config, instances.suspend, "admin", instance_id)


def test_resuming_a_running_instance_conflicts(db, config):
    instance_id = start(db, config, "zhang.wei")
    with pytest.raises(Conflict) as err:
        admin_op(db, config, instances.resume, "admin", instance_id)
    assert err.value.code == "instance_not_suspended"


@pytest.mark.parametrize("op", [instances.suspend, instances.resume, instances.terminate],
                         ids=["suspend", "resume", "terminate"])
def test_admin_operations_are_forbidden_to_others(db, config, op):
    instance_id = start(db, config, "zhang.wei")
    before = event_count(db, instance_id)

    with pytest.raises(Forbidden) as err:
        admin_op(db, config, op, "li.na", instance_id)

    assert err.value.code == "not_admin"
    assert instance(db, instance_id).status == "running"
    assert event_count(db, instance_id) == before


def test_terminate_cancels_open_tasks(db, config):
    instance_id = start_dispatch(db, config, countersign_units=["ZCFGC", "GHCWC"])
    review(db, config, instance_id)
    assert len(open_tasks(db, instance_id)) == 2

    admin_op(db, config, instances.terminate, "admin", instance_id, "文件作废")

    row = instance(db, instance_id)
    assert (row.status, row.active_elements, row.next_timer_at) == ("terminated", [], None)
    assert row.ended_at is not None
    assert open_tasks(db, instance_id) == []
    with db.session() as s:
        states = s.scalars(select(HumanTask.state).where(HumanTask.instance_id == instance_id,
                                                         HumanTask.bpmn_id == "countersign"))
        assert set(states) == {"cancelled"}
    last = events(db, instance_id)[-1]
    assert (last.kind, last.opinion) == ("terminated", "文件作废")


def test_a_task_of_a_terminated_instance_cannot_be_completed(db, config):
    instance_id = start_dispatch(db, config)
    task_id = only_task(db, instance_id, "review").id
    admin_op(db, config, instances.terminate, "admin", instance_id)

    with pytest.raises(Conflict) as err:
        complete(db, config, "li.na", task_id, {"review_decision": "approve"})

    assert err.value.code == "task_closed"


def test_terminate_cancels_pending_jobs(db, config, registry):
    instance_id = start_dispatch(db, config)
    review(db, config, instance_id)
    sign_off(db, config, instance_id)
    [job] = jobs_of(db, instance_id)
    assert job.status == "pending"

    admin_op(db, config, instances.terminate, "admin", instance_id)

    assert [j.status for j in jobs_of(db, instance_id)] == ["cancelled"]
    assert job.id not in jobs.due_jobs(db)
    assert jobs.execute(db, config, registry, job.id) == "skipped"
    assert instance(db, instance_id).status == "terminated"


def test_a_terminated_instance_cannot_be_terminated_or_resumed(db, config):
    instance_id = start(db, config, "zhang.wei")
    admin_op(db, config, instances.terminate, "admin", instance_id)

    with pytest.raises(Conflict):
        admin_op(db, config, instances.terminate, "admin", instance_id)
    with pytest.raises(Conflict):
        admin_op(db, config, instances.resume, "admin", instance_id)


def test_admin_cannot_act_on_an_instance_that_does_not_exist(db, config):
    with pytest.raises(NotFound):
        admin_op(db, config, instances.suspend, "admin", 999_999)
