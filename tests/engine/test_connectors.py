"""engine.connectors and engine.incidents: stored config with secrets, schemas, error boundaries, incidents."""
from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest
from cryptography.fernet import Fernet

from connectors.base import Connector, ConnectorError, Operation
from engine import clock, connectors, incidents, instances, jobs, secrets
from engine.connectors import Registry, callback_token, job_of_token
from engine.errors import Conflict, Forbidden, ValidationFailed
from engine.models import ConnectorConfig, Incident, Job
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    events,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    service_task,
    start,
    user_task,
    workflow_data,
)

PROCESS = "remote_call"
ERRORS = '<bpmn:error id="not_found" name="not_found" errorCode="remote.404"/>'


class Remote(Connector):
    """A test connector whose calls follow ``plan`` and that reports the config it was built with."""

    name = "remote"
    config_schema: ClassVar[dict] = {
        "type": "object", "properties": {"token": {"type": "string", "minLength": 8}, "region": {"type": "string"}},
        "required": ["token"]}
    operations: ClassVar[dict] = {
        "Fetch": Operation(method="fetch", retries=1,
                           params={"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
                                   "required": ["id"], "additionalProperties": False},
                           result={"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}),
    }
    plan: ClassVar[list[str]] = []
    seen: ClassVar[list[dict]] = []

    def check(self) -> None:
        return None

    def fetch(self, context, id: int) -> dict:
        Remote.seen.append({"config": self.config, "key": context.idempotency_key, "timeout": context.timeout,
                            "callback": context.callback_url})
        outcome = Remote.plan.pop(0) if Remote.plan else "ok"
        if outcome == "404":
            raise ConnectorError(f"record {id} not found", retryable=False, code="remote.404")
        if outcome == "down":
            raise ConnectorError("the remote system is down")
        if outcome == "leak":
            raise ConnectorError(f"login refused for token {self.config['token']}", retryable=False)
        if outcome == "malformed":
            return {"name": "no id here"}
        if outcome == "not-json":
            return {"when": clock.now()}
        if outcome == "echo":
            return {"id": id, "note": f"authorised by {self.config['token']}"}
        return {"id": id}


@pytest.fixture
def remote():
    Remote.plan, Remote.seen = [], []
    registry = Registry()
    registry.register(Remote)
    yield registry
    Remote.plan, Remote.seen = [], []


def configure(db, config, **settings) -> None:
    """Store the connector's settings with its token as a secret reference."""
    with db.transaction() as s:
        secrets.put(s, config, "remote_token", "s3cret-token-value")
        s.merge(ConnectorConfig(name="remote", config={"token": {"$secret": "remote_token"}, "region": "450000"},
                                **settings))


def deploy(db, registry, boundaries: str = "", params: dict | None = None) -> None:
    """start → call (remote/Fetch) → done (user task) → end, plus optional boundary events on call."""
    body = ('<bpmn:startEvent id="start"/>'
            + service_task("call", "remote/Fetch", "record", params or {"id": "7"})
            + user_task("done", "核对结果") + '<bpmn:endEvent id="end"/>' + boundaries
            + flows(("start", "call"), ("call", "done"), ("done", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body, definitions=ERRORS), registry=registry)


def boundary(event_id: str, error_ref: str | None, target: str) -> str:
    definition = f'<bpmn:errorEventDefinition errorRef="{error_ref}"/>' if error_ref else "<bpmn:errorEventDefinition/>"
    return (f'<bpmn:boundaryEvent id="{event_id}" attachedToRef="call">{definition}</bpmn:boundaryEvent>'
            + user_task(target, f"人工处理 {target}") + f'<bpmn:endEvent id="{target}_end"/>'
            + flows((event_id, target), (target, f"{target}_end")))


def run_out(db, config, registry, instance_id: int) -> list[str]:
    """Execute the instance's job until it stops retrying."""
    [job] = jobs_of(db, instance_id)
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=5))
        outcomes.append(jobs.execute(db, config, registry, job.id))
    return outcomes


def test_a_call_gets_its_stored_config_with_secrets_resolved(db, config, remote):
    configure(db, config, timeout=4.5)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)

    assert run_out(db, config, remote, instance_id) == ["done"]
    [seen] = Remote.seen
    assert seen["config"] == {"token": "s3cret-token-value", "region": "450000"}
    assert seen["timeout"] == 4.5
    assert seen["key"] == jobs_of(db, instance_id)[0].id
    assert seen["callback"] == ""  # the model declares no callbackMessage: no callback address is offered
    assert workflow_data(db, instance_id)["record"] == {"id": 7}


def test_a_connector_error_never_carries_a_secret_into_the_job_the_instance_or_the_trail(db, config, remote):
    configure(db, config)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["leak"]

    assert run_out(db, config, remote, instance_id) == ["failed"]
    [job] = jobs_of(db, instance_id)
    row = instance(db, instance_id)
    trail = " ".join(str(e.detail) for e in events(db, instance_id))
    for text in (job.last_error, row.error, trail):
        assert "s3cret-token-value" not in text
    assert secrets.REDACTED in job.last_error


def test_a_credential_echoed_in_the_result_does_not_reach_task_data(db, config, remote):
    configure(db, config)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["echo"]

    assert run_out(db, config, remote, instance_id) == ["done"]
    assert workflow_data(db, instance_id)["record"]["note"] == f"authorised by {secrets.REDACTED}"
    assert all("s3cret-token-value" not in str(e.detail) for e in events(db, instance_id))


def test_a_call_whose_workers_keep_dying_stops_with_an_incident(db, config, remote):
    configure(db, config)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)
    [job] = jobs_of(db, instance_id)
    with db.transaction() as s:  # as if two workers had each died mid-call (retries=1: two attempts)
        row = s.get(Job, job.id)
        row.status, row.attempts, row.max_attempts = "running", 2, 2
        row.lease_until = clock.now() - timedelta(seconds=1)

    assert jobs.execute(db, config, remote, job.id) == "failed"
    assert Remote.seen == []
    assert "stopped before it finished" in instance(db, instance_id).error


def test_invalid_parameters_fail_at_once_naming_the_field_not_the_value(db, config, remote):
    configure(db, config)
    deploy(db, remote, params={"id": "-5"})
    instance_id = start(db, config, "zhang.wei", PROCESS)

    assert run_out(db, config, remote, instance_id) == ["failed"]
    error = jobs_of(db, instance_id)[0].last_error
    assert "parameters do not match the schema at id: rule 'minimum' failed" in error
    assert "-5" not in error
    assert Remote.seen == []


def test_a_malformed_or_non_json_result_fails_without_retrying(db, config, remote):
    configure(db, config)
    deploy(db, remote)
    first, second = start(db, config, "zhang.wei", PROCESS), start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["malformed"]
    assert run_out(db, config, remote, first) == ["failed"]
    Remote.plan = ["not-json"]
    assert run_out(db, config, remote, second) == ["failed"]

    assert "result do not match the schema" in jobs_of(db, first)[0].last_error
    assert "not JSON" in jobs_of(db, second)[0].last_error


def test_config_that_does_not_match_the_connector_schema_or_a_missing_secret_fails_clearly(db, config, remote):
    deploy(db, remote)
    with db.transaction() as s:
        s.add(ConnectorConfig(name="remote", config={"token": {"$secret": "nowhere"}}))
    missing = start(db, config, "zhang.wei", PROCESS)
    assert run_out(db, config, remote, missing) == ["failed"]
    assert "secret 'nowhere' does not exist" in jobs_of(db, missing)[0].last_error

    with db.transaction() as s:
        s.get(ConnectorConfig, "remote").config = {"token": "short"}
    short = start(db, config, "zhang.wei", PROCESS)
    assert run_out(db, config, remote, short) == ["failed"]
    assert "settings do not match the schema at token: rule 'minLength'" in jobs_of(db, short)[0].last_error


def test_a_disabled_connector_raises_an_incident(db, config, remote):
    configure(db, config, enabled=False)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)

    assert run_out(db, config, remote, instance_id) == ["failed"]
    assert "connector 'remote' is disabled" in instance(db, instance_id).error


def test_retries_follow_the_operation_unless_the_stored_config_overrides_them(db, config, remote):
    configure(db, config)
    deploy(db, remote)
    by_operation = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["down"] * 10
    assert run_out(db, config, remote, by_operation) == ["retry", "failed"]

    with db.transaction() as s:
        s.get(ConnectorConfig, "remote").retries = 3
    overridden = start(db, config, "zhang.wei", PROCESS)
    assert run_out(db, config, remote, overridden) == ["retry"] * 3 + ["failed"]
    assert jobs_of(db, overridden)[0].max_attempts == 4


def test_a_catch_all_error_boundary_takes_over_after_the_last_attempt(db, config, remote):
    configure(db, config)
    deploy(db, remote, boundaries=boundary("failed", None, "manual"))
    instance_id = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["down"] * 10

    assert run_out(db, config, remote, instance_id) == ["retry", "caught"]
    row = instance(db, instance_id)
    assert row.status == "running" and row.error is None
    assert only_task(db, instance_id).bpmn_id == "manual"
    error = workflow_data(db, instance_id)["service_error"]
    assert (error["code"], error["operation"], error["attempts"]) == (None, "remote/Fetch", 2)
    assert "the remote system is down" in error["message"]
    assert jobs_of(db, instance_id)[0].status == "caught"
    assert events(db, instance_id, "service_error_caught")
    with db.session() as s:
        assert s.query(Incident).count() == 0


def test_the_boundary_naming_the_error_code_wins_over_the_catch_all(db, config, remote):
    configure(db, config)
    deploy(db, remote, boundaries=boundary("missing", "not_found", "not_found_task")
           + boundary("failed", None, "manual"))
    coded, other = start(db, config, "zhang.wei", PROCESS), start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["404"]
    assert run_out(db, config, remote, coded) == ["caught"]
    Remote.plan = ["down", "down"]
    assert run_out(db, config, remote, other) == ["retry", "caught"]

    assert only_task(db, coded).bpmn_id == "not_found_task"
    assert workflow_data(db, coded)["service_error"]["code"] == "remote.404"
    assert only_task(db, other).bpmn_id == "manual"


def test_an_error_code_no_boundary_names_raises_an_incident(db, config, remote):
    configure(db, config)
    deploy(db, remote, boundaries=boundary("missing", "not_found", "not_found_task"))
    instance_id = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["down", "down"]

    assert run_out(db, config, remote, instance_id) == ["retry", "failed"]
    with db.session() as s:
        [incident] = s.query(Incident).all()
        assert (incident.kind, incident.bpmn_id, incident.operation, incident.attempts) == (
            "service_task", "call", "remote/Fetch", 2)
        assert incident.resolved_at is None and incident.instance_id == instance_id


@pytest.fixture
def failed(db, config, remote):
    """An instance stopped by an incident after its call was refused."""
    configure(db, config)
    deploy(db, remote)
    instance_id = start(db, config, "zhang.wei", PROCESS)
    Remote.plan = ["404"]
    assert run_out(db, config, remote, instance_id) == ["failed"]
    with db.session() as s:
        return instance_id, s.query(Incident).one().id


def test_admins_list_incidents_and_others_may_not(db, failed):
    instance_id, incident_id = failed
    with db.session() as s:
        rows, total = incidents.search(s, load_user(s, "admin"))
        assert ([r.id for r in rows], total) == ([incident_id], 1)
        assert incidents.search(s, load_user(s, "admin"), state="resolved") == ([], 0)
        with pytest.raises(Forbidden):
            incidents.search(s, load_user(s, "zhang.wei"))


def test_retry_reruns_the_call_with_the_same_idempotency_key(db, config, remote, failed):
    instance_id, incident_id = failed
    with db.transaction() as s:
        incidents.retry(s, config, load_user(s, "admin"), incident_id, "对方系统已恢复")

    assert run_out(db, config, remote, instance_id) == ["done"]
    assert Remote.seen[0]["key"] == Remote.seen[1]["key"]
    assert only_task(db, instance_id).bpmn_id == "done"
    with db.session() as s:
        incident = s.get(Incident, incident_id)
        assert (incident.resolution, incident.reason) == ("retried", "对方系统已恢复")
        with pytest.raises(Conflict):
            incidents.retry(s, config, load_user(s, "admin"), incident_id)


def test_skip_needs_a_reason_then_moves_on_with_an_empty_result(db, config, failed):
    instance_id, incident_id = failed
    with db.transaction() as s, pytest.raises(ValidationFailed):
        incidents.skip(s, config, load_user(s, "admin"), incident_id, " ")
    with db.transaction() as s, pytest.raises(Forbidden):
        incidents.skip(s, config, load_user(s, "zhang.wei"), incident_id, "无需查询")
    with db.transaction() as s:
        incidents.skip(s, config, load_user(s, "admin"), incident_id, "线下已核实，无需查询")

    assert instance(db, instance_id).status == "running"
    assert only_task(db, instance_id).bpmn_id == "done"
    assert workflow_data(db, instance_id)["record"] is None
    assert jobs_of(db, instance_id)[0].status == "skipped"
    [skipped] = events(db, instance_id, "incident_skipped")
    assert skipped.opinion == "线下已核实，无需查询"


def test_resuming_the_instance_resolves_its_incidents(db, config, failed):
    instance_id, incident_id = failed
    with db.transaction() as s:
        instances.resume(s, config, load_user(s, "admin"), instance_id, "手工恢复")
    with db.session() as s:
        assert s.get(Incident, incident_id).resolution == "resumed"


def test_a_callback_token_is_bound_to_its_job_and_message_and_survives_key_rotation(config):
    job = "0b6d8f5e-1111-4222-8333-944455556666"
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = config.with_(secrets_key=old_key)
    token = callback_token(before, job, "report.answered")
    assert job_of_token(before, token, "report.answered") == job
    assert job_of_token(before, token, "ministry.instruction") is None
    assert job_of_token(before, token[:-1] + ("0" if token[-1] != "0" else "1"), "report.answered") is None
    assert job_of_token(before, job[:-1] + "7." + token.split(".")[1], "report.answered") is None
    assert job_of_token(before, "", "report.answered") is None
    assert job_of_token(config.with_(secrets_key=f"{new_key},{old_key}"), token, "report.answered") == job
    assert job_of_token(config.with_(secrets_key=new_key), token, "report.answered") is None


def test_settings_the_connector_itself_refuses_are_not_stored(db, config, registry):
    with db.transaction() as s:
        secrets.put(s, config, "sms_key", "sms-key-123456")
    with db.transaction() as s, pytest.raises(ValidationFailed) as refused:
        connectors.configure(s, config, registry, load_user(s, "admin"), "sms", {
            "endpoint": "https://sms.example/send", "allowed_hosts": ["other.example"], "account": "gx",
            "api_key": {"$secret": "sms_key"}, "sign": "【广西应急】", "templates": {"notice": "{title}"}})
    assert "allow-list" in refused.value.errors["config"][0]["message"]
