"""processes/document_receipt (收文): every path, with the stored state round-tripping after every step, the
history holding every opinion in order, and an intact audit chain.

签收 (a clerk of the group claims it) → 登记 (a registration number per year, by a service job) → 初审 (or
returned to the issuing unit, which ends it) → 办件: 拟办 → 批办 → 承办 (deadline from the form, reminders)
→ 办结 → 归档; 阅件: 传阅 among the chosen readers → 归档. Incoming documents may also arrive as a message, or
from the government OA (webhook), which then hears of the 签收 and the 办结 through the oa connector.
"""
from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connectors.oa import OaConnector
from engine import audit, clock, files, incidents, jobs, messages, notifications, operations, tasks
from engine.errors import Conflict, Forbidden, ValidationFailed
from engine.models import Attachment, HumanTask, Incident, Signature
from tests.engine.helpers import (
    assert_state_round_trips,
    assignee,
    claim,
    clear_of_midnight,
    data_url,
    events,
    instance,
    jobs_of,
    load_user,
    open_tasks,
    png,
    run_jobs,
    start,
    view,
    workflow_data,
)
from tests.outside import OutsideSystem
from tests.webhooks import (
    OA_SECRET,
    OA_TOKEN,
    configure_oa,
    encode,
    make_client,
    oa_document,
    publish,
    sign,
)

RECEIPT = "document_receipt"
TITLE = "关于做好寒潮防御工作的通知"
NAMES = {"zhang.wei": "张伟", "li.na": "李娜", "wang.fang": "王芳", "zhou.qiang": "周强", "liu.yang": "刘洋"}


def today(config) -> date:
    return clock.now().astimezone(ZoneInfo(config.timezone)).date()


def sign_in_data(file_id: str, **overrides) -> dict:
    """A valid 签收 form: the incoming document as registered."""
    data = {"title": TITLE, "source_unit": "应急管理部", "source_number": "应急〔2026〕12号", "copies": 2,
            "secrecy": "公开", "urgency": "加急", "received_on": "2026-11-29", "handling_type": "办理",
            "file": file_id, "summary": "部署寒潮防御工作"}
    data.update(overrides)
    return data


class Receipt:
    """Drives one 收文 instance step by step; after every step the stored state must round-trip."""

    def __init__(self, db, config, registry, instance_id: int | None = None):
        self.db, self.config, self.registry = db, config, registry
        self.id = instance_id or start(db, config, "zhang.wei", RECEIPT, business_key="SW-TEST")
        self.checked()

    def checked(self) -> None:
        assert_state_round_trips(self.db, self.id)

    def task(self, bpmn_id: str, loop_item: str | None = None) -> HumanTask:
        found = [t for t in open_tasks(self.db, self.id, bpmn_id) if loop_item is None or t.loop_item == loop_item]
        assert len(found) == 1, (bpmn_id, loop_item, self.open())
        return found[0]

    def act(self, username: str, operation, *args, **kw):
        with self.db.transaction() as s:
            result = operation(s, self.config, load_user(s, username), *args, **kw)
        self.checked()
        return result

    def approve(self, username: str, bpmn_id: str, data: dict | None = None, loop_item: str | None = None, **kw):
        return self.act(username, operations.approve, self.task(bpmn_id, loop_item).id, data or {}, **kw)

    def upload(self) -> str:
        with self.db.transaction() as s:
            return files.store(s, self.config, load_user(s, "zhang.wei"), "来文.pdf", "application/pdf",
                               io.BytesIO(b"%PDF-1.4 incoming document")).id

    def sign_in(self, **overrides) -> None:
        task = self.task("sign_in")
        claim(self.db, self.config, "zhang.wei", task.id)
        self.approve("zhang.wei", "sign_in", sign_in_data(self.upload(), **overrides), opinion="已清点，2份")

    def register(self) -> str:
        assert open_tasks(self.db, self.id) == []
        assert run_jobs(self.db, self.config, self.registry) == ["done"]
        self.checked()
        return workflow_data(self.db, self.id)["registration_number"]

    def screen(self, opinion: str = "格式规范，属本厅职责", **data) -> None:
        self.approve("zhang.wei", "screen", data, opinion=opinion)

    def propose(self, lead_unit: str = "ZCFGC", opinion: str = "拟请刘厅长批示，政策法规处主办", **data) -> None:
        self.approve("li.na", "propose", {"lead_unit": lead_unit, **data}, opinion=opinion)

    def instruct(self, opinion: str = "同意，请政策法规处抓好落实", **kw) -> None:
        self.approve("liu.yang", "instruct", {}, opinion=opinion, **kw)

    def handle(self, username: str = "wang.fang", result: str = "已制定寒潮防御工作方案并下发", **kw) -> None:
        self.approve(username, "handle", {"result": result}, **kw)

    def conclude(self, opinion: str = "已办结") -> None:
        self.approve("zhang.wei", "conclude", {"concluded_on": "2026-12-04"}, opinion=opinion)

    @property
    def status(self) -> str:
        return instance(self.db, self.id).status

    def open(self) -> list[tuple[str, str | None, str | None]]:
        return [(t.bpmn_id, t.loop_item, assignee(self.db, t)) for t in open_tasks(self.db, self.id)]

    def signatures(self) -> list[tuple[str, str, str | None]]:
        """(who, step, opinion) of every completed task, in order."""
        return [(e.actor_name, e.task_name, e.opinion) for e in events(self.db, self.id, "task_completed")]

    def chain_intact(self) -> bool:
        with self.db.session() as s:
            return audit.verify_instance(s, self.id) is None


@pytest.fixture
def receipt(db, config, registry) -> Receipt:
    return Receipt(db, config, registry)


def signed(*rows: tuple[str, str, str | None]) -> list[tuple[str, str, str | None]]:
    return [(NAMES[who], step, opinion) for who, step, opinion in rows]


def to_handle(receipt: Receipt, **sign_in) -> None:
    receipt.sign_in(**sign_in)
    receipt.register()
    receipt.screen()
    receipt.propose()
    receipt.instruct()


# -- 办件: straight through ------------------------------------------------------------------------------------
def test_a_document_for_action_goes_all_the_way_to_the_archive(receipt, db, config):
    year = clear_of_midnight(config).year  # still the year when the job below allocates the number
    sign_in = receipt.task("sign_in")
    assert (sign_in.assignee_id, receipt.open()) == (None, [("sign_in", None, None)])  # offered to the clerks' group
    with db.session() as s:
        assert [t.id for t in tasks.inbox(s, load_user(s, "zhang.wei"), "group")[0]] == [sign_in.id]
    with pytest.raises(Forbidden):
        claim(db, config, "li.na", sign_in.id)

    receipt.sign_in()
    assert instance(db, receipt.id).title == TITLE
    assert [j.payload["operation"] for j in jobs_of(db, receipt.id)] == ["docnumber/Allocate"]
    assert receipt.register() == f"收文〔{year}〕1号"
    assert receipt.open() == [("screen", None, "zhang.wei")]
    assert view(db, config, "zhang.wei", receipt.task("screen").id).data["registration_number"] == f"收文〔{year}〕1号"
    receipt.screen()
    assert receipt.open() == [("propose", None, "li.na")]
    receipt.propose()
    assert receipt.open() == [("instruct", None, "liu.yang")]
    receipt.instruct()
    assert receipt.open() == [("handle", None, "wang.fang")]  # the leader of the lead unit 政策法规处
    receipt.handle()
    assert receipt.open() == [("conclude", None, "zhang.wei")]
    receipt.conclude()

    assert receipt.status == "completed"
    row = instance(db, receipt.id)
    assert row.ended_at is not None and row.active_elements == []
    assert {"sign_in", "register", "screen", "propose", "instruct", "handle", "conclude", "archive", "end"} \
        <= set(row.completed_elements)
    assert "circulate" not in row.completed_elements
    data = workflow_data(db, receipt.id)
    assert (data["archive_status"], data["lead_unit"], data["result"]) == (
        "已归档", "ZCFGC", "已制定寒潮防御工作方案并下发")
    assert receipt.signatures() == signed(
        ("zhang.wei", "签收", "已清点，2份"), ("zhang.wei", "初审", "格式规范，属本厅职责"),
        ("li.na", "拟办", "拟请刘厅长批示，政策法规处主办"), ("liu.yang", "批办", "同意，请政策法规处抓好落实"),
        ("wang.fang", "承办", None), ("zhang.wei", "办结", "已办结"))
    assert [e.kind for e in events(db, receipt.id)][-1] == "completed"
    assert receipt.chain_intact()


def test_a_document_waiting_to_be_signed_in_is_urged_to_the_clerks_group(receipt, db, config):
    assert receipt.act("li.na", operations.urge, receipt.id, "来文请及时签收") == 1

    with db.session() as s:
        notes, _ = notifications.for_user(s, load_user(s, "zhang.wei"))
    assert [(n.title, n.body) for n in notes] == [(f"催办：{instance(db, receipt.id).title}", "来文请及时签收")]
    assert events(db, receipt.id, "urged")[0].detail["to"][0]["name"] == "张伟"


def test_registration_numbers_follow_each_other_and_restart_each_year(db, config, registry):
    tz = ZoneInfo(config.timezone)
    year = clear_of_midnight(config).year  # still the year when the jobs below allocate the numbers
    numbers = []
    for _ in range(2):
        r = Receipt(db, config, registry)
        r.sign_in()
        numbers.append(r.register())
    assert numbers == [f"收文〔{year}〕1号", f"收文〔{year}〕2号"]

    clock.advance(datetime(year + 1, 1, 2, 9, 0, tzinfo=tz) - clock.now())
    r = Receipt(db, config, registry)
    r.sign_in()
    assert r.register() == f"收文〔{year + 1}〕1号"


# -- 初审: back to the issuing unit ------------------------------------------------------------------------------
def test_screening_returns_the_document_to_its_issuer(receipt, db, config):
    receipt.sign_in()
    receipt.register()
    screen = receipt.task("screen").id

    with pytest.raises(ValidationFailed) as err, db.transaction() as s:
        operations.reject(s, config, load_user(s, "zhang.wei"), screen)  # a reason is required
    assert list(err.value.errors) == ["opinion"]
    receipt.act("zhang.wei", operations.reject, screen, "不属于本厅职责，退回来文单位")

    row = instance(db, receipt.id)
    assert (row.status, row.active_elements) == ("terminated", [])
    assert receipt.open() == []
    last = events(db, receipt.id)[-1]
    assert (last.kind, last.actor_name, last.opinion) == ("rejected", "张伟", "不属于本厅职责，退回来文单位")
    assert events(db, receipt.id, "task_completed")[-1].detail["decision"] == "reject"
    assert [e.bpmn_id for e in events(db, receipt.id, "task_created")] == ["sign_in", "screen"]
    assert receipt.chain_intact()


# -- 拟办 / 批办 ------------------------------------------------------------------------------------------------
def test_the_instruction_needs_an_opinion_and_may_carry_a_signature(receipt, db, config):
    receipt.sign_in()
    receipt.register()
    receipt.screen()
    receipt.propose()

    with pytest.raises(ValidationFailed) as err:
        receipt.instruct(opinion="")
    assert list(err.value.errors) == ["opinion"]
    receipt.instruct(signature=data_url(png()))

    completed = events(db, receipt.id, "task_completed")[-1]
    assert (completed.bpmn_id, completed.actor_name) == ("instruct", "刘洋")
    with db.session() as s:
        assert s.get(Signature, completed.detail["signature"]).user_id == load_user(s, "liu.yang").id
    assert receipt.open() == [("handle", None, "wang.fang")]


def test_the_leader_returns_the_proposal_and_gets_it_straight_back(receipt, db, config):
    receipt.sign_in()
    receipt.register()
    receipt.screen()
    receipt.propose()
    instruct = receipt.task("instruct").id
    with db.session() as s:
        assert [t["bpmn_id"] for t in operations.return_targets(s, config, load_user(s, "liu.yang"), instruct)] == [
            "propose", "screen", "sign_in"]

    receipt.act("liu.yang", operations.send_back, instruct, "propose", "请补充协办单位", straight_back=True)
    assert receipt.open() == [("propose", None, "li.na")]
    assert view(db, config, "li.na", receipt.task("propose").id).data["lead_unit"] == "ZCFGC"
    receipt.propose(opinion="已补充规划财务处协办", assist_units=["GHCWC"])
    assert receipt.open() == [("instruct", None, "liu.yang")]
    receipt.instruct()
    assert workflow_data(db, receipt.id)["assist_units"] == ["GHCWC"]  # what was resubmitted went along
    receipt.handle()
    receipt.conclude()

    assert receipt.status == "completed"
    assert [s for s in receipt.signatures() if s[1] in ("拟办", "批办")] == signed(
        ("li.na", "拟办", "拟请刘厅长批示，政策法规处主办"), ("li.na", "拟办", "已补充规划财务处协办"),
        ("liu.yang", "批办", "同意，请政策法规处抓好落实"))
    assert events(db, receipt.id, "task_returned")[0].opinion == "请补充协办单位"
    assert receipt.chain_intact()


def test_the_clerk_records_the_leaders_paper_instruction(receipt, db, config):
    receipt.sign_in()
    receipt.register()
    receipt.screen()
    receipt.propose()

    receipt.approve("zhang.wei", "instruct", {}, opinion="同意，请政策法规处办理", on_behalf_of="liu.yang")

    completed = events(db, receipt.id, "task_completed")[-1]
    assert (completed.actor_name, completed.detail["on_behalf_of"]["name"]) == ("张伟", "刘洋")
    with db.session() as s:
        row = s.get(HumanTask, completed.task_id)
        assert row.completed_by_id == load_user(s, "liu.yang").id
    assert receipt.open() == [("handle", None, "wang.fang")]


# -- 承办: deadline, reminders, the overdue list ----------------------------------------------------------------
def test_the_handling_deadline_comes_from_the_form_and_reminders_follow(receipt, db, config):
    tz = ZoneInfo(config.timezone)
    deadline = today(config) + timedelta(days=7)
    to_handle(receipt, deadline=deadline.isoformat())
    handle = receipt.task("handle")
    assert handle.due_at == datetime.combine(deadline, datetime.min.time().replace(hour=17, minute=30), tz)

    assert operations.handle_timeouts(receipt.db, config) == 0
    clock.advance(handle.due_at - clock.now() + timedelta(minutes=1))
    reminded = 0
    for _ in range(12):  # remind:5, one working day apart
        reminded += operations.handle_timeouts(receipt.db, config)
        clock.advance(timedelta(days=1))
    assert reminded == 5

    with db.session() as s:
        row = s.get(HumanTask, handle.id)
        assert (row.state, row.reminders_sent, row.next_action_at) == ("open", 5, None)
        notes, _ = notifications.for_user(s, load_user(s, "wang.fang"), per_page=50)
    assert [n.title for n in notes] == ["超期提醒：承办"] * 5
    assert [e.detail["reminder"] for e in events(db, receipt.id, "task_overdue_reminded")] == [1, 2, 3, 4, 5]
    receipt.handle()
    receipt.conclude()
    assert receipt.status == "completed"


def test_the_overdue_list_is_for_the_office_director(receipt, db, config):
    to_handle(receipt, deadline=(today(config) + timedelta(days=2)).isoformat())
    handle = receipt.task("handle")

    def overdue(username: str) -> list[str]:
        with db.session() as s:
            items, total = operations.overdue(s, load_user(s, username))
        assert total == len(items)
        return [t.id for t in items]

    assert overdue("li.na") == []
    clock.advance(handle.due_at - clock.now() + timedelta(hours=1))
    assert overdue("li.na") == [handle.id]
    assert overdue("admin") == [handle.id]
    for outsider in ("zhang.wei", "wang.fang", "chen.jie"):
        with pytest.raises(Forbidden) as err:
            overdue(outsider)
        assert err.value.code == "not_supervisor"

    receipt.handle()
    assert overdue("li.na") == []


def test_the_office_director_urges_the_handler(receipt, db, config):
    to_handle(receipt)

    assert receipt.act("li.na", operations.urge, receipt.id, "请于本周内办结") == 1
    with pytest.raises(Conflict) as err:
        receipt.act("li.na", operations.urge, receipt.id)
    assert err.value.code == "urged_recently"
    with db.session() as s:
        notes, _ = notifications.for_user(s, load_user(s, "wang.fang"))
    assert [n.body for n in notes] == ["请于本周内办结"]


def test_the_handler_delegates_and_copies_then_finishes(receipt, db, config):
    to_handle(receipt)
    handle = receipt.task("handle").id

    receipt.act("wang.fang", operations.delegate, handle, "zhou.qiang", "请周处拟定落实方案")
    receipt.approve("zhou.qiang", "handle", {"result": "已拟定落实方案"}, opinion="方案已拟")
    assert receipt.open() == [("handle", None, "wang.fang")]
    receipt.act("wang.fang", operations.copy_to, handle, ["chen.jie"], note="请南宁市局参照执行")
    receipt.handle(result="已印发落实方案")
    receipt.conclude()

    assert receipt.status == "completed"
    assert workflow_data(db, receipt.id)["result"] == "已印发落实方案"
    with db.session() as s:
        copies, _ = operations.copies(s, load_user(s, "chen.jie"))
    assert [c[0].instance_id for c in copies] == [receipt.id]
    assert receipt.chain_intact()


def test_the_handler_withdraws_a_finished_handling_before_it_is_concluded(receipt, db, config):
    to_handle(receipt)
    handle = receipt.task("handle").id
    receipt.handle()

    receipt.act("wang.fang", operations.withdraw, handle, "结果需补充")

    assert receipt.open() == [("handle", None, "wang.fang")]
    receipt.handle(result="已补充办理结果")
    receipt.conclude()
    assert receipt.status == "completed"
    assert workflow_data(db, receipt.id)["result"] == "已补充办理结果"


def test_the_initiator_may_cancel_a_receipt(receipt, db, config):
    receipt.sign_in()
    receipt.register()

    with pytest.raises(Forbidden):
        receipt.act("li.na", operations.cancel, receipt.id)
    receipt.act("zhang.wei", operations.cancel, receipt.id, "重复登记")

    assert receipt.status == "terminated"
    assert receipt.open() == []


# -- 阅件: circulation among the chosen readers -------------------------------------------------------------------
def test_a_document_for_reading_circulates_among_the_readers_then_is_archived(receipt, db, config):
    receipt.sign_in(handling_type="阅知")
    receipt.register()

    with pytest.raises(ValidationFailed) as err:
        receipt.screen()  # a document for reading needs its readers
    assert "readers" in err.value.errors
    receipt.screen(readers=["li.na", "wang.fang", "zhou.qiang"])

    assert receipt.open() == [("circulate", "li.na", "li.na"), ("circulate", "wang.fang", "wang.fang"),
                              ("circulate", "zhou.qiang", "zhou.qiang")]
    receipt.approve("wang.fang", "circulate", loop_item="wang.fang", opinion="已阅")
    receipt.approve("li.na", "circulate", loop_item="li.na", opinion="已阅，请按要求落实")
    assert receipt.open() == [("circulate", "zhou.qiang", "zhou.qiang")]
    with pytest.raises(Forbidden):
        receipt.approve("li.na", "circulate", loop_item="zhou.qiang")
    receipt.approve("zhou.qiang", "circulate", loop_item="zhou.qiang")

    assert receipt.status == "completed"
    row = instance(db, receipt.id)
    assert not {"propose", "instruct", "handle", "conclude"} & set(row.completed_elements)
    assert {"circulate", "archive", "end"} <= set(row.completed_elements)
    assert workflow_data(db, receipt.id)["archive_status"] == "已归档"
    assert [(e.actor_name, e.detail["loop_item"], e.opinion) for e in events(db, receipt.id, "task_completed")
            if e.bpmn_id == "circulate"] == [("王芳", "wang.fang", "已阅"), ("李娜", "li.na", "已阅，请按要求落实"),
                                             ("周强", "zhou.qiang", None)]
    assert receipt.chain_intact()


# -- 来文 by message ---------------------------------------------------------------------------------------------
def test_an_incoming_document_message_starts_a_receipt_with_its_payload(db, config, registry):
    payload = {"title": "关于开展安全生产大检查的通知", "source_unit": "应急管理部",
               "source_number": "应急〔2026〕30号", "copies": 1, "secrecy": "公开", "urgency": "特急",
               "received_on": "2026-11-29", "handling_type": "办理"}

    with pytest.raises(Forbidden), db.transaction() as s:
        messages.deliver(s, config, load_user(s, "zhang.wei"), "incoming_document", {}, payload)
    with db.transaction() as s:
        result = messages.deliver(s, config, load_user(s, "admin"), "incoming_document",
                                  {"business_key": "EXT-2026-30"}, payload)

    assert result["delivered"] == []
    [instance_id] = result["started"]
    row = instance(db, instance_id)
    assert (row.process_key, row.business_key, row.status) == (RECEIPT, "EXT-2026-30", "running")
    receipt = Receipt(db, config, registry, instance_id)
    sign_in = receipt.task("sign_in")
    shown = view(db, config, "zhang.wei", sign_in.id).data
    assert {k: shown[k] for k in payload} == payload
    assert events(db, instance_id)[0].kind == "started"

    receipt.sign_in(**payload)  # the clerk checks it, attaches the file and signs it in
    assert receipt.register().startswith("收文〔")
    assert instance(db, instance_id).title == "关于开展安全生产大检查的通知"
    assert receipt.open() == [("screen", None, "zhang.wei")]


# -- 来文 from the government OA: started by webhook, 签收 and 办结 reported back ------------------------------------
@pytest.fixture
def outside():
    with OutsideSystem() as server:
        yield server


@pytest.fixture
def oa_registry(registry):
    registry.register(OaConnector)  # setup.cfg's entry point makes discover() find it once installed
    return registry


@pytest.fixture
def from_oa(db, config, oa_registry, outside) -> Receipt:
    """An OA document posted to the webhook: the 收文 it started, ready for 签收. Posted at least an hour before
    local midnight, so the day it arrived and the day its tests read after their jobs moved the clock are one."""
    clear_of_midnight(config)
    configure_oa(db, config, oa_registry, outside)
    document = oa_document(outside, 12, title=TITLE)
    publish(outside, [document])
    client, platform = make_client(config, oa_registry)
    body = encode(document)
    answer = client.post("/api/v1/oa/documents", data=body, content_type="application/json",
                         headers={"X-OA-Signature": sign(OA_SECRET, body)})
    platform.stop()
    assert answer.status_code == 201, answer.get_json()
    return Receipt(db, config, oa_registry, answer.get_json()["instance_id"])


def oa_sign_in(receipt: Receipt, **overrides) -> None:
    """The clerk checks what the OA filled in, keeps its file, chooses the handling and signs it in."""
    task = receipt.task("sign_in")
    claim(receipt.db, receipt.config, "zhang.wei", task.id)
    shown = view(receipt.db, receipt.config, "zhang.wei", task.id).data
    receipt.approve("zhang.wei", "sign_in", {**shown, "handling_type": "办理", **overrides}, opinion="OA 来文，已签收")


def run_job(receipt: Receipt, operation: str) -> list[str]:
    """Run the instance's one open job of ``operation`` until it is done or failed for good."""
    [job] = [j for j in jobs_of(receipt.db, receipt.id) if j.payload["operation"] == operation]
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=5))
        outcomes.append(jobs.execute(receipt.db, receipt.config, receipt.registry, job.id))
    receipt.checked()
    return outcomes


def oa_bodies(outside, kind: str) -> list[dict]:
    return [json.loads(r["body"]) for r in outside.requests if r["path"].endswith(f"/{kind}")]


def test_an_oa_document_is_signed_in_with_its_file_and_both_reports_reach_the_oa(from_oa, db, config, outside):
    receipt = from_oa
    received_on = today(config).isoformat()  # the jobs below move the clock, maybe past midnight
    row = instance(db, receipt.id)
    assert (row.business_key, row.title) == ("OA-GXZF-2026-0012", TITLE)
    assert workflow_data(db, receipt.id)["received_on"] == received_on
    with db.session() as s:
        [attachment] = s.scalars(select(Attachment).where(Attachment.instance_id == receipt.id)).all()
    assert attachment.filename == "来文12.pdf"

    oa_sign_in(receipt)
    assert workflow_data(db, receipt.id)["file"] == attachment.id  # the OA's file, not a fresh upload
    assert run_job(receipt, "docnumber/Allocate") == ["done"]
    registration = workflow_data(db, receipt.id)["registration_number"]
    assert receipt.open() == []  # 初审 waits for the OA to hear of the receipt
    outside.plan["/api/documents/GXZF-2026-0012/receipt"] = ["500"]
    assert run_job(receipt, "oa/ReportReceipt") == ["retry", "done"]

    [receipt_job] = [j for j in jobs_of(db, receipt.id) if j.payload["operation"] == "oa/ReportReceipt"]
    assert outside.keys("/api/documents/GXZF-2026-0012/receipt") == [receipt_job.id, receipt_job.id]
    assert oa_bodies(outside, "receipt")[-1] == {"status": "signed", "signed_by": "自治区应急管理厅办公室",
                                                 "signed_at": received_on, "registration_no": registration}
    assert receipt.open() == [("screen", None, "zhang.wei")]
    receipt.screen()
    receipt.propose()
    receipt.instruct()
    receipt.handle()
    receipt.conclude()
    assert receipt.status == "running" and receipt.open() == []  # 归档 waits for the completion report
    assert run_job(receipt, "oa/ReportCompletion") == ["done"]

    assert receipt.status == "completed"
    assert oa_bodies(outside, "completion") == [{"outcome": "已制定寒潮防御工作方案并下发",
                                                 "completed_at": "2026-12-04"}]
    [completion_job] = [j for j in jobs_of(db, receipt.id) if j.payload["operation"] == "oa/ReportCompletion"]
    assert outside.keys("/api/documents/GXZF-2026-0012/completion") == [completion_job.id]
    assert {"report_receipt", "report_completion", "archive", "end"} <= set(instance(db, receipt.id).completed_elements)
    assert [e.detail["operation"] for e in events(db, receipt.id, "service_call_completed")] == [
        "docnumber/Allocate", "oa/ReportReceipt", "oa/ReportCompletion"]
    assert receipt.chain_intact()


def test_an_oa_document_for_reading_reports_its_circulation(from_oa, db, config, outside):
    receipt = from_oa
    oa_sign_in(receipt, handling_type="阅知")
    run_job(receipt, "docnumber/Allocate")
    run_job(receipt, "oa/ReportReceipt")
    receipt.screen(readers=["li.na"])
    receipt.approve("li.na", "circulate", loop_item="li.na", opinion="已阅")
    assert run_job(receipt, "oa/ReportCompletion") == ["done"]

    assert receipt.status == "completed"
    [completion] = oa_bodies(outside, "completion")
    assert completion["outcome"] == "已传阅" and completion["completed_at"].startswith(today(config).isoformat())


def test_an_oa_that_stays_down_raises_an_incident_that_an_administrator_retries(from_oa, db, config, outside):
    receipt = from_oa
    oa_sign_in(receipt)
    run_job(receipt, "docnumber/Allocate")
    path = "/api/documents/GXZF-2026-0012/receipt"
    outside.plan[path] = ["503"] * 3

    assert run_job(receipt, "oa/ReportReceipt") == ["retry", "retry", "failed"]  # retries=2 in the settings

    row = instance(db, receipt.id)
    assert row.status == "error" and "answered 503" in row.error
    with db.session() as s:
        incident = s.scalars(select(Incident).where(Incident.instance_id == receipt.id)).one()
        assert (incident.operation, incident.attempts) == ("oa/ReportReceipt", 3)
        assert OA_TOKEN not in incident.message
    with db.transaction() as s:
        incidents.retry(s, config, load_user(s, "admin"), incident.id, "OA 已恢复")
    assert run_job(receipt, "oa/ReportReceipt") == ["done"]
    assert len(set(outside.keys(path))) == 1 and len(outside.keys(path)) == 4  # one key for every attempt
    assert receipt.status == "running" and receipt.open() == [("screen", None, "zhang.wei")]


def test_a_receipt_without_an_oa_id_never_calls_the_oa(receipt, db, config, registry):
    to_handle(receipt)
    receipt.handle()
    receipt.conclude()

    assert receipt.status == "completed"
    assert [j.payload["operation"] for j in jobs_of(db, receipt.id)] == ["docnumber/Allocate"]
    assert workflow_data(db, receipt.id)["oa_id"] is None
