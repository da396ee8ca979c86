"""The ministry connector against a real local command system: an incident report files once (same idempotency key
on every attempt), and the ministry's signed instructions reach the instance waiting on that incident."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.base import ConnectorError
from connectors.ministry import MinistryConnector
from engine import clock, connectors, jobs, secrets
from engine.connectors import EngineContext
from engine.models import MessageSubscription
from engine.runtime import correlation_key
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
def client(config, ministry_registry):
    test_client, platform = make_client(config, ministry_registry)
    yield test_client
    platform.stop()


def call(db, outside, operation: str, params: dict, key: str = "key-mem-1"):
    context = EngineContext(db, key, None, 5.0)
    settings = {"base_url": outside.url, "allowed_hosts": [outside.host], "token": TOKEN}
    return MinistryConnector(settings).call(operation, params, context)


def report(db, config, registry) -> int:
    """Start the test process, run its report job to the end; returns the instance id."""
    instance_id = start(db, config, "zhao.min", PROCESS, data=dict(REPORT))
    [job] = jobs_of(db, instance_id)
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=5))
        outcomes.append(jobs.execute(db, config, registry, job.id))
    assert outcomes[-1] == "done", outcomes
    return instance_id


def instruct(client, incident_id: str = INCIDENT, key: str = MINISTRY_SECRET, **overrides):
    body = encode({"incident_id": incident_id, "instruction": "立即组织专家组赶赴现场，严防次生灾害",
                   "issued_by": "应急管理部指挥中心", "issued_at": "2026-11-29T09:10:00+08:00", **overrides})
    return client.post("/api/v1/ministry/instructions", data=body, content_type="application/json",
                       headers={"X-Ministry-Signature": sign(key, body)})


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
    assert instruct(client).status_code == 404  # it no longer waits: a replay changes nothing


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
