"""REST: connector settings, secrets, incidents (retry / skip) and callbacks from outside systems."""
from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from engine import clock, jobs, messages
from engine.models import Incident, Job, SystemEvent
from engine.runtime import lock_instance
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    flows,
    jobs_of,
    only_task,
    service_task,
    user_task,
    workflow_data,
)
from tests.outside import OutsideSystem

PROCESS = "report_and_wait"
DEFINITIONS = '<bpmn:message id="answered" name="report.answered"/>'


@pytest.fixture
def outside():
    with OutsideSystem() as server:
        yield server


@pytest.fixture
def platform_(app):
    return app.extensions["emflow"]


@pytest.fixture
def deployed(db, platform_):
    """start → send (http/Request) → wait for 'report.answered' → review → end."""
    send = service_task("send", "http/Request", "sent", {"method": "'POST'", "url": "'/reports'"}).replace(
        "<bpmn:extensionElements>", '<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property '
        'name="callbackMessage" value="report.answered"/></spiffworkflow:properties>', 1)
    body = ('<bpmn:startEvent id="start"/>' + send
            + '<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition messageRef="answered">'
              "<bpmn:extensionElements><spiffworkflow:messageVariable>answer</spiffworkflow:messageVariable>"
              "</bpmn:extensionElements></bpmn:messageEventDefinition></bpmn:intermediateCatchEvent>"
            + user_task("review", "核对部里答复") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "send"), ("send", "wait"), ("wait", "review"), ("review", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body, DEFINITIONS), registry=platform_.registry)


def configure(client, api, outside, token_secret: str = "ministry_token") -> None:
    admin = api("admin")
    assert client.put(f"/api/v1/secrets/{token_secret}", json={"value": "tok-98765-secret"},
                      headers=admin).status_code == 200
    response = client.put("/api/v1/connectors/http/settings", headers=admin, json={
        "config": {"allowed_hosts": [outside.host], "base_url": outside.url,
                   "auth": {"scheme": "bearer", "token": {"$secret": token_secret}}},
        "retries": 0, "timeout": 5})
    assert response.status_code == 200, response.get_json()


def start(client, api) -> int:
    response = client.post("/api/v1/process-instances", headers=api("zhang.wei"),
                           json={"process_key": PROCESS, "title": "向部里报送"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def run(db, platform_, instance_id: int) -> str:
    [job] = [j for j in jobs_of(db, instance_id) if j.status in ("pending", "running")]
    clock.advance(timedelta(minutes=1))
    return jobs.execute(db, platform_.config, platform_.registry, job.id)


def test_settings_and_secrets_are_for_integration_admins_and_never_show_values(client, api, outside, db):
    configure(client, api, outside)
    admin, clerk = api("admin"), api("zhang.wei")

    settings = client.get("/api/v1/connectors/http/settings", headers=admin).get_json()
    assert settings["config"]["auth"]["token"] == {"$secret": "ministry_token"}
    assert settings["retries"] == 0 and settings["config_schema"]["required"] == ["allowed_hosts"]
    listed = client.get("/api/v1/secrets", headers=admin)
    assert [s["name"] for s in listed.get_json()] == ["ministry_token"]
    assert "tok-98765-secret" not in listed.get_data(as_text=True)
    for method, path, body in (("get", "/api/v1/secrets", None), ("put", "/api/v1/secrets/x", {"value": "v"}),
                               ("get", "/api/v1/connectors/http/settings", None),
                               ("put", "/api/v1/connectors/http/settings", {"config": {}})):
        response = getattr(client, method)(path, headers=clerk, json=body)
        assert response.status_code == 403, path
    assert client.delete("/api/v1/secrets/ministry_token", headers=admin).status_code == 409
    assert client.get("/api/v1/connectors/nothing/settings", headers=admin).status_code == 404
    with db.session() as s:
        trail = [(e.kind, e.target) for e in s.query(SystemEvent).order_by(SystemEvent.id)]
        assert ("secret_stored", "ministry_token") in trail and ("connector_configured", "http") in trail
        assert all("tok-98765" not in str(e.detail) for e in s.query(SystemEvent))


def test_invalid_settings_get_field_errors(client, api):
    response = client.put("/api/v1/connectors/http/settings", headers=api("admin"), json={
        "config": {"allowed_hosts": [], "auth": {"scheme": "bearer", "token": "plain"}}, "timeout": 0})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert {"config.auth.token", "timeout"} <= set(errors)


def test_an_incident_is_listed_then_retried_through_the_api(client, api, outside, db, platform_, deployed):
    configure(client, api, outside)
    outside.plan["/reports"] = ["503"]
    instance_id = start(client, api)
    assert run(db, platform_, instance_id) == "failed"

    listed = client.get("/api/v1/incidents", headers=api("admin")).get_json()
    [incident] = listed["items"]
    assert (incident["instance_id"], incident["kind"], incident["operation"]) == (
        instance_id, "service_task", "http/Request")
    assert "answered 503" in incident["message"] and "tok-98765" not in incident["message"]
    assert client.get("/api/v1/incidents", headers=api("zhang.wei")).status_code == 403

    retried = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=api("admin"),
                          json={"reason": "部里系统已恢复"})
    assert retried.status_code == 200 and retried.get_json()["resolution"] == "retried"
    assert run(db, platform_, instance_id) == "done"
    again = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=api("admin"), json={})
    assert again.status_code == 409


def test_skip_needs_a_reason(client, api, outside, db, platform_, deployed):
    configure(client, api, outside)
    outside.plan["/reports"] = ["404"]
    instance_id = start(client, api)
    assert run(db, platform_, instance_id) == "failed"
    with db.session() as s:
        incident_id = s.query(Incident).one().id

    assert client.post(f"/api/v1/incidents/{incident_id}/skip", headers=api("admin"), json={}).status_code == 422
    skipped = client.post(f"/api/v1/incidents/{incident_id}/skip", headers=api("admin"),
                          json={"reason": "已电话报送"})
    assert skipped.status_code == 200
    assert workflow_data(db, instance_id)["sent"] is None


def test_an_answered_call_cannot_answer_the_next_one(client, api, outside, db, platform_):
    # send → wait → review → send again → wait again: the first call's address, replayed, must not answer the second.
    def send(task_id: str) -> str:
        return service_task(task_id, "http/Request", "sent", {"method": "'POST'", "url": "'/reports'"}).replace(
            "<bpmn:extensionElements>", '<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property '
            'name="callbackMessage" value="report.answered"/></spiffworkflow:properties>', 1)

    def wait(event_id: str) -> str:
        return (f'<bpmn:intermediateCatchEvent id="{event_id}"><bpmn:messageEventDefinition messageRef="answered">'
                "<bpmn:extensionElements><spiffworkflow:messageVariable>answer</spiffworkflow:messageVariable>"
                "</bpmn:extensionElements></bpmn:messageEventDefinition></bpmn:intermediateCatchEvent>")

    body = ('<bpmn:startEvent id="start"/>' + send("send") + wait("wait") + user_task("review", "核对部里答复")
            + send("resend") + wait("wait_again") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "send"), ("send", "wait"), ("wait", "review"), ("review", "resend"),
                    ("resend", "wait_again"), ("wait_again", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body, DEFINITIONS), registry=platform_.registry)
    configure(client, api, outside)
    instance_id = start(client, api)
    assert run(db, platform_, instance_id) == "done"
    first = outside.requests[0]["headers"]["x-emflow-callback"].split("127.0.0.1:5000", 1)[1]
    assert client.post(first, json={"message": "report.answered", "payload": {"批示": "第一次"}}).status_code == 200
    review = only_task(db, instance_id)
    assert client.post(f"/api/v1/tasks/{review.id}/complete", headers=api("zhang.wei"),
                       json={"data": {"note": "已核对"}}).status_code == 200
    assert run(db, platform_, instance_id) == "done"  # the second call: the process waits for an answer again

    replayed = client.post(first, json={"message": "report.answered", "payload": {"批示": "伪造的第二次"}})
    assert (replayed.status_code, replayed.get_json()["code"]) == (409, "callback_not_waiting")
    assert workflow_data(db, instance_id)["answer"]["批示"] == "第一次"
    second = outside.requests[1]["headers"]["x-emflow-callback"].split("127.0.0.1:5000", 1)[1]
    assert second != first
    assert client.post(second, json={"message": "report.answered", "payload": {"批示": "第二次"}}).status_code == 200
    assert workflow_data(db, instance_id)["answer"]["批示"] == "第二次"


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL")
def test_a_callback_waits_for_the_job_runner_and_never_deadlocks_with_it(client, api, outside, db, platform_,
                                                                         deployed):
    # The job runner locks the instance, then writes the job row; an answer arriving meanwhile must queue behind it.
    configure(client, api, outside)
    instance_id = start(client, api)
    assert run(db, platform_, instance_id) == "done"
    token = outside.requests[0]["headers"]["x-emflow-callback"].rsplit("/", 1)[1]
    [job_id] = [j.id for j in jobs_of(db, instance_id)]
    holding, released = threading.Event(), threading.Event()

    def runner():
        with db.transaction() as s:
            lock_instance(s, instance_id)
            holding.set()
            released.wait(30)
            s.execute(update(Job).where(Job.id == job_id).values(updated_at=clock.now()))

    def answer():
        holding.wait(30)
        with db.transaction() as s:
            return messages.deliver_callback(s, platform_.config, token, "report.answered", {"批示": "收到"})

    ran, answered, _ = in_threads(runner, answer, lambda: release_when_waiting(db, released))

    assert ran is None and answered == instance_id, (ran, answered)
    assert workflow_data(db, instance_id)["answer"]["批示"] == "收到"


def test_a_callback_reaches_the_instance_once_and_forged_ones_are_refused(client, api, outside, db, platform_,
                                                                         deployed):
    configure(client, api, outside)
    instance_id = start(client, api)
    assert run(db, platform_, instance_id) == "done"
    callback = outside.requests[0]["headers"]["x-emflow-callback"]
    path = callback.split("127.0.0.1:5000", 1)[1]

    answer = {"message": "report.answered", "payload": {"批示": "请做好防范"}}
    assert client.post(path, json=answer).status_code == 200  # no bearer token: the address is the credential
    assert only_task(db, instance_id).bpmn_id == "review"
    assert workflow_data(db, instance_id)["answer"]["批示"] == "请做好防范"

    again = client.post(path, json=answer)
    assert (again.status_code, again.get_json()["code"]) == (409, "callback_not_waiting")
    forged = client.post(path[:-2] + "00", json=answer)
    assert (forged.status_code, forged.get_json()["code"]) == (404, "callback_unknown")
    other_message = client.post(path, json={"message": "ministry.instruction", "payload": {}})
    assert (other_message.status_code, other_message.get_json()["code"]) == (404, "callback_unknown")
    assert client.post(path, json={"payload": {}}).status_code == 422
