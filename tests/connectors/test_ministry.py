"""The ministry connector against a real local command system: an incident report files once (same idempotency key
on every attempt), and the ministry's signed instructions reach the instance waiting on that incident, each once:
sent again (the ministry's retry, or a captured request replayed) it answers 200 as a duplicate and delivers nothing,
even to a process that waits on that incident again, and even when both copies arrive at the same moment."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.base import ConnectorError
from connectors.ministry import MinistryConnector
from engine import clock, connectors, jobs, ministry, secrets
from engine.connectors import EngineContext
from engine.models import MessageSubscription, SystemEvent
from engine.models.integration import MinistryInstruction
from engine.runtime import correlation_key
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.helpers import (
    assert_state_round_trips,
    bpmn,
    deploy_bundle,
    events,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    open_tasks,
    service_task,
    start,
    user_task,
    workflow_data,
)
from tests.outside import OutsideSystem
from tests.webhooks import MINISTRY_SECRET, encode, make_client, sign

PROCESS = "incident_report"
TOKEN = "ministry-token-77aa"
INCIDENT = "MEM-2026-000123"
REPORT = {"title": "柳州市某化工厂储罐泄漏", "level": "较大", "region": "450200",
          "occurred_at": "2026-11-29T08:30:00+08:00", "casualties": {"deaths": 0, "injured": 3},
          "description": "储罐阀门破裂，已疏散周边群众", "reporter": "赵敏"}
DEFINITIONS = f"""
  <bpmn:collaboration id="collab">
    <bpmn:participant id="p_report" processRef="{PROCESS}"/>
    <bpmn:correlationKey name="incident_key">
      <bpmn:correlationPropertyRef>ministry_incident_id</bpmn:correlationPropertyRef>
    </bpmn:correlationKey>
  </bpmn:collaboration>
  <bpmn:message id="ministry_instruction" name="ministry.instruction"/>
  <bpmn:correlationProperty id="ministry_incident_id" name="部指挥系统事件编号">
    <bpmn:correlationPropertyRetrievalExpression messageRef="ministry_instruction">
      <bpmn:formalExpression>ministry_incident_id</bpmn:formalExpression>
    </bpmn:correlationPropertyRetrievalExpression>
  </bpmn:correlationProperty>"""
BODY = ('<bpmn:startEvent id="start"/>'
        + service_task("report", "ministry/ReportIncident", "report", {k: k for k in REPORT})
        + '<bpmn:scriptTask id="keep" name="记录部事件编号">'
          "<bpmn:script>ministry_incident_id = report['incident_id']</bpmn:script></bpmn:scriptTask>"
        + """<bpmn:intermediateCatchEvent id="wait" name="等待部指示">
      <bpmn:messageEventDefinition messageRef="ministry_instruction">
        <bpmn:extensionElements>
          <spiffworkflow:messageVariable>instruction</spiffworkflow:messageVariable>
          <spiffworkflow:processVariableCorrelation>
            <spiffworkflow:propertyId>ministry_incident_id</spiffworkflow:propertyId>
            <spiffworkflow:expression>ministry_incident_id</spiffworkflow:expression>
          </spiffworkflow:processVariableCorrelation>
        </bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:intermediateCatchEvent>"""
        + user_task("act", "落实部指示") + '<bpmn:endEvent id="end"/>'
        + flows(("start", "report"), ("report", "keep"), ("keep", "wait"), ("wait", "act"), ("act", "end")))


# The same report, then a loop: each instruction is appended to ``received`` and the process waits for the next.
LOOP = "incident_instructions"
LOOP_BODY = ('<bpmn:startEvent id="start"/>'
             + service_task("report", "ministry/ReportIncident", "report", {k: k for k in REPORT})
             + '<bpmn:scriptTask id="keep" name="记录部事件编号"><bpmn:script>'
               "ministry_incident_id = report['incident_id']\nreceived = []</bpmn:script></bpmn:scriptTask>"
             + '<bpmn:exclusiveGateway id="next"/>'
             + BODY[BODY.index('<bpmn:intermediateCatchEvent'):BODY.index("</bpmn:intermediateCatchEvent>")]
             + "</bpmn:intermediateCatchEvent>"
             + '<bpmn:scriptTask id="record" name="登记部指示">'
               "<bpmn:script>received = received + [instruction['instruction']]</bpmn:script></bpmn:scriptTask>"
             + flows(("start", "report"), ("report", "keep"), ("keep", "next"), ("next", "wait"), ("wait", "record"),
                     ("record", "next")))


@pytest.fixture
def outside():
    with OutsideSystem() as server:
        server.answers["/api/incidents"] = lambda request: {"incident_id": INCIDENT, "status": "received"}
        yield server


@pytest.fixture
def ministry_registry(registry):
    registry.register(MinistryConnector)  # setup.cfg's entry point makes discover() find it once installed
    return registry


@pytest.fixture
def configured(db, config, ministry_registry, outside):
    with db.transaction() as s:
        secrets.put(s, config, "ministry_token", TOKEN)
        secrets.put(s, config, "ministry_webhook", MINISTRY_SECRET)
        connectors.configure(s, config, ministry_registry, load_user(s, "admin"), "ministry", {
            "base_url": outside.url, "allowed_hosts": [outside.host], "token": {"$secret": "ministry_token"},
            "webhook_secret": {"$secret": "ministry_webhook"}}, retries=2)


@pytest.fixture
def process(db, ministry_registry, configured):
    deploy_bundle(db, PROCESS, bpmn(PROCESS, BODY, DEFINITIONS), registry=ministry_registry)


@pytest.fixture
def loop(db, ministry_registry, configured):
    deploy_bundle(db, LOOP, bpmn(LOOP, LOOP_BODY, DEFINITIONS.replace(f'"{PROCESS}"', f'"{LOOP}"')),
                  registry=ministry_registry)


@pytest.fixture
def client(config, ministry_registry):
    test_client, platform = make_client(config, ministry_registry)
    yield test_client
    platform.stop()


def call(db, outside, operation: str, params: dict, key: str = "key-mem-1"):
    context = EngineContext(db, key, None, 5.0)
    settings = {"base_url": outside.url, "allowed_hosts": [outside.host], "token": TOKEN}
    return MinistryConnector(settings).call(operation, params, context)


def report(db, config, registry, key: str = PROCESS) -> int:
    """Start the test process, run its report job to the end; returns the instance id."""
    instance_id = start(db, config, "zhao.min", key, data=dict(REPORT))
    [job] = jobs_of(db, instance_id)
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=5))
        outcomes.append(jobs.execute(db, config, registry, job.id))
    assert outcomes[-1] == "done", outcomes
    return instance_id


def instruction(incident_id: str = INCIDENT, **overrides) -> bytes:
    return encode({"incident_id": incident_id, "instruction": "立即组织专家组赶赴现场，严防次生灾害",
                   "issued_by": "应急管理部指挥中心", "issued_at": "2026-11-29T09:10:00+08:00", **overrides})


def instruct(client, incident_id: str = INCIDENT, key: str = MINISTRY_SECRET, body: bytes | None = None,
             **overrides):
    body = body or instruction(incident_id, **overrides)
    return client.post("/api/v1/ministry/instructions", data=body, content_type="application/json",
                       headers={"X-Ministry-Signature": sign(key, body)})


def received(db, instance_id: int) -> list[str]:
    """The instructions the loop process has taken, in order."""
    return workflow_data(db, instance_id)["received"]


def repeats(db) -> list[tuple[str, dict]]:
    """(target, detail) of the audit trail's repeated-instruction events."""
    with db.session() as s:
        return [(e.target, e.detail) for e in s.scalars(select(SystemEvent).where(
            SystemEvent.kind == "ministry_instruction_repeated").order_by(SystemEvent.seq))]


# -- the connector on its own ---------------------------------------------------------------------------------
def test_a_report_is_posted_with_token_and_key_and_returns_the_ministry_id(db, outside):
    assert call(db, outside, "ReportIncident", REPORT, key="job-9") == {"incident_id": INCIDENT}
    call(db, outside, "UpdateIncident", {"incident_id": INCIDENT, "casualties": {"deaths": 1, "injured": 3},
                                         "status": "处置中"}, key="job-10")

    filed, update = outside.requests
    assert (filed["method"], filed["path"], json.loads(filed["body"])) == ("POST", "/api/incidents", REPORT)
    assert (filed["headers"]["authorization"], filed["headers"]["idempotency-key"]) == (f"Bearer {TOKEN}", "job-9")
    assert (update["method"], update["path"], update["headers"]["idempotency-key"]) == (
        "PATCH", f"/api/incidents/{INCIDENT}", "job-10")
    assert json.loads(update["body"]) == {"casualties": {"deaths": 1, "injured": 3}, "status": "处置中"}


def test_faults_are_named_and_only_transient_ones_retried(db, outside):
    for behaviour, code, retryable in (("503", "ministry.503", True), ("401", "ministry.401", False),
                                       ("malformed", "ministry.malformed", False)):
        outside.plan["/api/incidents"] = [behaviour]
        with pytest.raises(ConnectorError) as failed:
            call(db, outside, "ReportIncident", REPORT)
        assert (failed.value.code, failed.value.retryable) == (code, retryable)
    outside.answers["/api/incidents"] = lambda request: {"status": "received"}
    with pytest.raises(ConnectorError) as no_id:
        call(db, outside, "ReportIncident", REPORT)
    assert no_id.value.code == "ministry.malformed"


# -- a process reports an incident and waits for the ministry's instruction -----------------------------------------
def test_the_report_is_retried_with_the_same_key_and_the_ministry_id_kept(db, config, ministry_registry, outside,
                                                                        process):
    outside.plan["/api/incidents"] = ["500"]

    instance_id = report(db, config, ministry_registry)

    keys = outside.keys("/api/incidents")
    assert len(keys) == 2 and set(keys) == {jobs_of(db, instance_id)[0].id}
    assert workflow_data(db, instance_id)["ministry_incident_id"] == INCIDENT
    assert instance(db, instance_id).active_elements == ["wait"]
    with db.session() as s:
        subscribed = s.scalars(select(MessageSubscription).where(MessageSubscription.instance_id == instance_id)).all()
    assert [(m.message_name, m.correlation_key) for m in subscribed] == [
        ("ministry.instruction", correlation_key({"ministry_incident_id": INCIDENT}))]


def test_an_instruction_reaches_the_waiting_instance(db, config, ministry_registry, outside, process, client):
    instance_id = report(db, config, ministry_registry)

    answer = instruct(client)

    assert (answer.status_code, answer.get_json()) == (200, {"delivered": [instance_id]})
    assert only_task(db, instance_id).bpmn_id == "act"
    received = workflow_data(db, instance_id)["instruction"]
    assert (received["instruction"], received["issued_by"], received["ministry_incident_id"]) == (
        "立即组织专家组赶赴现场，严防次生灾害", "应急管理部指挥中心", INCIDENT)
    [event] = events(db, instance_id, "message_received")
    assert event.detail["message"] == "ministry.instruction" and event.actor_id is None
    assert_state_round_trips(db, instance_id)
    again = instruct(client)  # the ministry's retry after a lost answer, or a replay: the first answer, nothing new
    assert (again.status_code, again.get_json()) == (200, {"delivered": [instance_id], "duplicate": True})
    assert len(events(db, instance_id, "message_received")) == 1 and only_task(db, instance_id).bpmn_id == "act"


def test_unknown_incidents_bad_signatures_and_malformed_instructions_are_refused(db, config, ministry_registry,
                                                                               outside, process, client):
    instance_id = report(db, config, ministry_registry)

    unknown = instruct(client, incident_id="MEM-2026-999999")
    assert (unknown.status_code, unknown.get_json()["code"]) == (404, "no_receiver")
    assert instruct(client, key="guessed").status_code == 401
    assert client.post("/api/v1/ministry/instructions", data=b"{}", content_type="application/json"
                       ).status_code == 401
    malformed = instruct(client, instruction="")
    assert (malformed.status_code, list(malformed.get_json()["errors"])) == (422, ["instruction"])
    assert open_tasks(db, instance_id) == [] and instance(db, instance_id).active_elements == ["wait"]


# -- each instruction is delivered once --------------------------------------------------------------------------
def test_a_replay_is_not_delivered_to_a_process_that_waits_again_but_a_new_instruction_is(
        db, config, ministry_registry, outside, loop, client):
    instance_id = report(db, config, ministry_registry, LOOP)
    body = instruction()

    first = instruct(client, body=body)
    assert (first.status_code, first.get_json()) == (200, {"delivered": [instance_id]})
    assert instance(db, instance_id).active_elements == ["wait"]  # waiting on the same incident again

    replayed = instruct(client, body=body)
    reserialized = instruct(client, body=json.dumps(json.loads(body), indent=1, sort_keys=True).encode())
    for answer in (replayed, reserialized):
        assert (answer.status_code, answer.get_json()) == (200, {"delivered": [instance_id], "duplicate": True})
    assert received(db, instance_id) == ["立即组织专家组赶赴现场，严防次生灾害"]
    assert len(events(db, instance_id, "message_received")) == 1
    digest = ministry.digest(ministry.parse(body))
    assert repeats(db) == [(INCIDENT, {"digest": digest, "delivered": [instance_id],
                                       "issued_at": "2026-11-29T09:10:00+08:00"})] * 2

    later = instruct(client, instruction="增派救援力量", issued_at="2026-11-29T11:00:00+08:00")
    assert (later.status_code, later.get_json()) == (200, {"delivered": [instance_id]})
    assert received(db, instance_id) == ["立即组织专家组赶赴现场，严防次生灾害", "增派救援力量"]
    with db.session() as s:
        assert sorted(s.scalars(select(MinistryInstruction.incident_id))) == [INCIDENT, INCIDENT]


def test_an_instruction_nobody_waited_for_is_delivered_when_the_ministry_sends_it_again(
        db, config, ministry_registry, outside, loop, client):
    body = instruction()
    assert instruct(client, body=body).status_code == 404  # sent before the process reached its wait

    instance_id = report(db, config, ministry_registry, LOOP)
    retried = instruct(client, body=body)

    assert (retried.status_code, retried.get_json()) == (200, {"delivered": [instance_id]})
    assert received(db, instance_id) == ["立即组织专家组赶赴现场，严防次生灾害"] and repeats(db) == []


# -- the same instruction twice at the same moment, each request in its own transaction (two gunicorn workers) ------
def post(db, config, body: bytes, between: Callable[[], None] = lambda: None,
         after: Callable[[], None] = lambda: None) -> dict:
    """What the endpoint does: ``between`` runs once the transaction is open, ``after`` just before it commits."""
    with db.transaction() as s:
        between()
        ministry.check_signature(s, config, body, sign(MINISTRY_SECRET, body))
        answer = ministry.receive(s, config, body)
        after()
    return answer




def test_the_same_instruction_twice_at_once_is_delivered_once(db, config, ministry_registry, outside, loop):
    instance_id = report(db, config, ministry_registry, LOOP)
    sent = [f"第{n}条指示" for n in range(1, 6)]
    for words in sent:
        body, barrier = instruction(instruction=words), threading.Barrier(2)
        # The barrier is passed before either request's first statement: on SQLite the first one to write holds
        # the database (BEGIN IMMEDIATE), so waiting after it would leave the other one blocked outside.
        answers = in_threads(*[lambda b=body, w=barrier.wait: post(db, config, b, between=w)] * 2)

        assert not any(isinstance(a, Exception) for a in answers), answers
        assert sorted(answers, key=len) == [{"delivered": [instance_id]},
                                            {"delivered": [instance_id], "duplicate": True}]
    assert received(db, instance_id) == sent
    assert len(events(db, instance_id, "message_received")) == len(sent) and len(repeats(db)) == len(sent)




@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL")
@pytest.mark.parametrize("rollback", [False, True], ids=["first-commits", "first-rolls-back"])
def test_a_copy_arriving_during_the_first_delivery_waits_for_its_outcome(db, config, ministry_registry, outside,
                                                                        loop, rollback):
    instance_id = report(db, config, ministry_registry, LOOP)
    body = instruction()
    delivering, release = threading.Event(), threading.Event()

    def hold() -> None:
        delivering.set()
        assert release.wait(30)
        if rollback:
            raise RuntimeError("the first request fails after delivering")

    def second() -> dict:
        assert delivering.wait(30)
        return post(db, config, body)

    first, copy, _ = in_threads(lambda: post(db, config, body, after=hold), second,
                                lambda: release_when_waiting(db, release))

    if rollback:
        assert isinstance(first, RuntimeError) and copy == {"delivered": [instance_id]}
    else:
        assert (first, copy) == ({"delivered": [instance_id]}, {"delivered": [instance_id], "duplicate": True})
    assert received(db, instance_id) == ["立即组织专家组赶赴现场，严防次生灾害"]
