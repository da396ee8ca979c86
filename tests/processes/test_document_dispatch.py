"""processes/document_dispatch (发文): every path, with the stored state round-tripping after every step,
the history holding every opinion and signer in order, and an intact audit chain."""
from __future__ import annotations

import pytest

from engine import audit
from engine.models import HumanTask
from tests.engine.helpers import (
    assert_state_round_trips,
    assignee,
    claim,
    clear_of_midnight,
    complete,
    distribute_payload,
    draft_payload,
    events,
    instance,
    jobs_of,
    open_tasks,
    run_jobs,
    start,
    upload,
    view,
    workflow_data,
)

TITLE = "关于加强汛期安全生产工作的通知"
NAMES = {"zhang.wei": "张伟", "li.na": "李娜", "wang.fang": "王芳", "zhou.qiang": "周强", "liu.yang": "刘洋"}


class Dispatch:
    """Drives one 发文 instance step by step; after every step the stored state must round-trip."""

    def __init__(self, db, config, registry):
        self.db, self.config, self.registry = db, config, registry
        self.id = start(db, config, "zhang.wei", business_key="FW-TEST")
        self.body_file = upload(db, config, "zhang.wei")
        self.state_sizes: list[int] = []
        self.checked()

    def checked(self) -> None:
        self.state_sizes.append(len(assert_state_round_trips(self.db, self.id)))

    def task(self, bpmn_id: str, loop_item: str | None = None) -> HumanTask:
        found = [t for t in open_tasks(self.db, self.id, bpmn_id) if loop_item is None or t.loop_item == loop_item]
        assert len(found) == 1, (bpmn_id, loop_item, [t.loop_item for t in open_tasks(self.db, self.id)])
        return found[0]

    def do(self, username: str, task: HumanTask, data: dict) -> None:
        complete(self.db, self.config, username, task.id, data)
        self.checked()

    def draft(self, opinion: str = "请审核", prefill: bool = True, **overrides) -> None:
        task = self.task("draft")
        # A resubmission starts from the last draft, as the form shows it.
        shown = view(self.db, self.config, "zhang.wei", task.id).data if prefill else {}
        data = {**draft_payload(self.body_file), **shown, **overrides, "opinion": opinion}
        self.do("zhang.wei", task, data)

    def review(self, decision: str = "approve", opinion: str = "同意") -> None:
        self.do("li.na", self.task("review"), {"review_decision": decision, "opinion": opinion})

    def countersign(self, unit: str, username: str, decision: str = "agree", opinion: str = "无意见") -> None:
        task = self.task("countersign", unit)
        assert assignee(self.db, task) == username
        self.do(username, task, {"countersign_decision": decision, "opinion": opinion})

    def sign_off(self, decision: str = "approve", opinion: str = "同意印发") -> None:
        self.do("liu.yang", self.task("sign_off"), {"sign_decision": decision, "opinion": opinion})

    def number(self) -> str:
        assert open_tasks(self.db, self.id) == []
        assert run_jobs(self.db, self.config, self.registry) == ["done"]
        self.checked()
        return workflow_data(self.db, self.id)["doc_number"]

    def distribute(self, opinion: str = "已分发") -> None:
        task = self.task("distribute")
        assert task.assignee_id is None
        claim(self.db, self.config, "zhang.wei", task.id)
        self.checked()
        self.do("zhang.wei", task, distribute_payload(opinion=opinion))

    @property
    def status(self) -> str:
        return instance(self.db, self.id).status

    def open(self) -> list[tuple[str, str | None, str | None]]:
        return [(t.bpmn_id, t.loop_item, assignee(self.db, t)) for t in open_tasks(self.db, self.id)]

    def signatures(self) -> list[tuple[str, str, str | None]]:
        """(signer, step, opinion) of every completed task, in order."""
        return [(e.actor_name, e.task_name, e.opinion) for e in events(self.db, self.id, "task_completed")]

    def chain_intact(self) -> bool:
        with self.db.session() as s:
            return audit.verify_instance(s, self.id) is None


@pytest.fixture
def dispatch(db, config, registry) -> Dispatch:
    return Dispatch(db, config, registry)


@pytest.fixture
def year(config) -> int:
    """The year the docnumber connector numbers by: the engine clock's in the platform's time zone, not the
    host's; still the year when the test's jobs allocate their numbers."""
    return clear_of_midnight(config).year


def signed(*rows: tuple[str, str, str | None]) -> list[tuple[str, str, str | None]]:
    return [(NAMES[who], step, opinion) for who, step, opinion in rows]


# -- straight through ---------------------------------------------------------------------------------
def test_straight_through_without_countersign(dispatch, year):
    assert dispatch.open() == [("draft", None, "zhang.wei")]
    dispatch.draft(title=TITLE)
    assert dispatch.open() == [("review", None, "li.na")]
    dispatch.review()
    assert dispatch.open() == [("sign_off", None, "liu.yang")]
    dispatch.sign_off()

    assert dispatch.number() == f"桂应急发〔{year}〕1号"
    dispatch.distribute()

    assert dispatch.status == "completed"
    row = instance(dispatch.db, dispatch.id)
    assert row.title == TITLE and row.ended_at is not None and row.active_elements == []
    assert {"draft", "review", "sign_off", "numbering", "distribute", "end"} <= set(row.completed_elements)
    assert not {"countersign", "prepare_countersign"} & set(row.completed_elements)
    assert dispatch.signatures() == signed(
        ("zhang.wei", "拟稿", "请审核"), ("li.na", "核稿", "同意"), ("liu.yang", "签发", "同意印发"),
        ("zhang.wei", "用印/分发", "已分发"))
    assert [e.kind for e in events(dispatch.db, dispatch.id)][-1] == "completed"
    assert dispatch.chain_intact()


def test_the_number_and_the_distribution_task(dispatch, db, config, year):
    dispatch.draft(title=TITLE)
    dispatch.review()
    dispatch.sign_off()
    [job] = jobs_of(db, dispatch.id)
    assert (job.status, job.payload["operation"], job.payload["params"]) == (
        "pending", "docnumber/Allocate", {"prefix": "桂应急发"})

    number = dispatch.number()

    assert number == f"桂应急发〔{year}〕1号"
    completed = events(db, dispatch.id, "service_call_completed")[0]
    assert completed.detail["result"] == {"number": number, "year": year, "sequence": 1}
    task = dispatch.task("distribute")
    assert dispatch.open() == [("distribute", None, None)]
    shown = view(db, config, "zhang.wei", task.id)
    assert (shown.data["doc_number"], shown.data["title"], shown.can_act) == (number, TITLE, True)
    assert not view(db, config, "li.na", task.id).can_act

    dispatch.distribute()

    assert events(db, dispatch.id, "task_claimed")[0].actor_name == "张伟"
    assert dispatch.status == "completed"


def test_numbers_follow_each_other_across_documents(db, config, registry, year):
    numbers = []
    for _ in range(3):
        d = Dispatch(db, config, registry)
        d.draft()
        d.review()
        d.sign_off()
        numbers.append(d.number())

    assert numbers == [f"桂应急发〔{year}〕{n}号" for n in (1, 2, 3)]


# -- countersign ------------------------------------------------------------------------------------------
def test_countersign_by_two_units_all_agree(dispatch):
    dispatch.draft(countersign_units=["ZCFGC", "GHCWC"])
    dispatch.review()
    assert dispatch.open() == [("countersign", "ZCFGC", "wang.fang"), ("countersign", "GHCWC", "zhou.qiang")]

    dispatch.countersign("GHCWC", "zhou.qiang", opinion="经费已落实")
    assert dispatch.open() == [("countersign", "ZCFGC", "wang.fang")]
    dispatch.countersign("ZCFGC", "wang.fang", opinion="合法性审查通过")
    assert dispatch.open() == [("sign_off", None, "liu.yang")]
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert dispatch.signatures() == signed(
        ("zhang.wei", "拟稿", "请审核"), ("li.na", "核稿", "同意"), ("zhou.qiang", "会签", "经费已落实"),
        ("wang.fang", "会签", "合法性审查通过"), ("liu.yang", "签发", "同意印发"), ("zhang.wei", "用印/分发", "已分发"))
    assert [e.detail["loop_item"] for e in events(dispatch.db, dispatch.id, "task_completed")][2:4] == [
        "GHCWC", "ZCFGC"]
    assert workflow_data(dispatch.db, dispatch.id)["countersign_decisions"] == ["agree", "agree"]
    assert dispatch.chain_intact()


def test_one_countersigner_disagrees_then_resubmit_and_finish(dispatch):
    dispatch.draft(countersign_units=["ZCFGC", "GHCWC"])
    dispatch.review()
    other = dispatch.task("countersign", "GHCWC")

    dispatch.countersign("ZCFGC", "wang.fang", "disagree", "第三条与现行规定冲突")

    assert dispatch.open() == [("draft", None, "zhang.wei")]
    cancelled = events(dispatch.db, dispatch.id, "task_cancelled")
    assert [e.task_id for e in cancelled] == [other.id]
    with dispatch.db.session() as s:
        assert s.get(HumanTask, other.id).state == "cancelled"

    dispatch.draft("已按政策法规处意见修改")
    dispatch.review(opinion="修改后同意")
    assert [t[:2] for t in dispatch.open()] == [("countersign", "ZCFGC"), ("countersign", "GHCWC")]
    dispatch.countersign("ZCFGC", "wang.fang", opinion="同意")
    dispatch.countersign("GHCWC", "zhou.qiang", opinion="同意")
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert dispatch.signatures() == signed(
        ("zhang.wei", "拟稿", "请审核"), ("li.na", "核稿", "同意"), ("wang.fang", "会签", "第三条与现行规定冲突"),
        ("zhang.wei", "拟稿", "已按政策法规处意见修改"), ("li.na", "核稿", "修改后同意"), ("wang.fang", "会签", "同意"),
        ("zhou.qiang", "会签", "同意"), ("liu.yang", "签发", "同意印发"), ("zhang.wei", "用印/分发", "已分发"))
    assert dispatch.chain_intact()


def test_a_disagreement_needs_a_reason(dispatch):
    from engine.errors import ValidationFailed

    dispatch.draft(countersign_units=["ZCFGC"])
    dispatch.review()

    with pytest.raises(ValidationFailed) as err:
        dispatch.countersign("ZCFGC", "wang.fang", "disagree", None)

    assert list(err.value.errors) == ["opinion"]
    assert dispatch.open() == [("countersign", "ZCFGC", "wang.fang")]


# -- returns ----------------------------------------------------------------------------------------------------
def test_review_returns_to_the_drafter_and_resubmission_works(dispatch, db, config):
    dispatch.draft(title="关于做好防汛工作的通知（征求意见稿）")
    dispatch.review("return", "标题去掉括号内容")

    assert dispatch.open() == [("draft", None, "zhang.wei")]
    shown = view(db, config, "zhang.wei", dispatch.task("draft").id)
    assert shown.data["title"] == "关于做好防汛工作的通知（征求意见稿）"  # the last draft is offered again
    dispatch.draft("已修改标题", title="关于做好防汛工作的通知")
    assert dispatch.open() == [("review", None, "li.na")]
    dispatch.review()
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert instance(db, dispatch.id).title == "关于做好防汛工作的通知"
    assert dispatch.signatures() == signed(
        ("zhang.wei", "拟稿", "请审核"), ("li.na", "核稿", "标题去掉括号内容"), ("zhang.wei", "拟稿", "已修改标题"),
        ("li.na", "核稿", "同意"), ("liu.yang", "签发", "同意印发"), ("zhang.wei", "用印/分发", "已分发"))
    assert dispatch.chain_intact()


def test_sign_off_returns_to_the_drafter(dispatch):
    dispatch.draft()
    dispatch.review()
    dispatch.sign_off("return", "请补充责任分工")

    assert dispatch.open() == [("draft", None, "zhang.wei")]
    assert jobs_of(dispatch.db, dispatch.id) == []
    dispatch.draft("已补充责任分工")
    dispatch.review()
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert dispatch.signatures() == signed(
        ("zhang.wei", "拟稿", "请审核"), ("li.na", "核稿", "同意"), ("liu.yang", "签发", "请补充责任分工"),
        ("zhang.wei", "拟稿", "已补充责任分工"), ("li.na", "核稿", "同意"), ("liu.yang", "签发", "同意印发"),
        ("zhang.wei", "用印/分发", "已分发"))
    assert dispatch.chain_intact()


def test_sign_off_return_after_a_countersign_runs_a_fresh_countersign(dispatch):
    dispatch.draft(countersign_units=["ZCFGC"])
    dispatch.review()
    dispatch.countersign("ZCFGC", "wang.fang")
    dispatch.sign_off("return", "请重新会签")
    dispatch.draft("已修改", countersign_units=["ZCFGC", "GHCWC"])
    dispatch.review()

    assert [t[:2] for t in dispatch.open()] == [("countersign", "ZCFGC"), ("countersign", "GHCWC")]
    dispatch.countersign("ZCFGC", "wang.fang")
    dispatch.countersign("GHCWC", "zhou.qiang")
    assert workflow_data(dispatch.db, dispatch.id)["countersign_decisions"] == ["agree", "agree"]
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert dispatch.chain_intact()


def test_the_drafter_may_drop_the_countersign_on_resubmission(dispatch):
    dispatch.draft(countersign_units=["ZCFGC"])
    dispatch.review()
    dispatch.countersign("ZCFGC", "wang.fang", "disagree", "不属于本处职责")
    dispatch.draft("取消会签", countersign_units=[])
    dispatch.review()

    assert dispatch.open() == [("sign_off", None, "liu.yang")]


@pytest.mark.slow
def test_six_hundred_returns_between_draft_and_review(dispatch, db):
    rounds = 600
    dispatch.draft()
    first = len(dispatch.state_sizes)
    for i in range(rounds):
        dispatch.review("return", f"第{i + 1}次退回")
        dispatch.draft(f"第{i + 1}次修改", prefill=i % 100 == 0)
    sizes = dispatch.state_sizes[first:]

    dispatch.review()
    dispatch.sign_off()
    dispatch.number()
    dispatch.distribute()

    assert dispatch.status == "completed"
    assert len(sizes) == 2 * rounds
    assert max(sizes) <= min(sizes) + 1024, (min(sizes), max(sizes))  # compacted: no growth with history
    opinions = [o for _, step, o in dispatch.signatures() if step == "核稿"]
    assert opinions == [f"第{i + 1}次退回" for i in range(rounds)] + ["同意"]
    assert len(dispatch.signatures()) == 1 + 2 * rounds + 3
    assert dispatch.chain_intact()
