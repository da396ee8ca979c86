"""The http connector against a real local server: auth, allow-list, idempotency keys and every fault."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from connectors.base import ConnectorError
from connectors.http import HttpConnector, host_allowed
from engine import clock, connectors, jobs, secrets
from engine.connectors import EngineContext
from engine.errors import ValidationFailed
from engine.models import Incident
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    poll,
    service_task,
    start,
    user_task,
    workflow_data,
)
from tests.outside import OutsideSystem

PROCESS = "http_call"


@pytest.fixture
def outside():
    with OutsideSystem() as server:
        yield server


def call(db, config, timeout: float = 5.0, **params):
    """One direct call of http/Request with ``config``, as a worker would make it."""
    context = EngineContext(db, "key-0001", None, timeout, "http://emflow.test/api/v1/callbacks/t")
    return HttpConnector(config).call("Request", params, context)


def test_host_allow_list():
    allowed = ["oa.gxzf.gov.cn", "127.0.0.1:8080", "*.mem.gov.cn"]
    assert host_allowed("https://oa.gxzf.gov.cn/api", allowed)
    assert host_allowed("http://127.0.0.1:8080/x", allowed)
    assert host_allowed("https://cmd.mem.gov.cn/", allowed)
    assert not host_allowed("http://127.0.0.1:8081/x", allowed)
    assert not host_allowed("http://169.254.169.254/latest/meta-data", allowed)
    assert not host_allowed("https://oa.gxzf.gov.cn.evil.com/", allowed)
    assert not host_allowed("https://user:pw@oa.gxzf.gov.cn/", allowed)
    assert not host_allowed("file:///etc/passwd", allowed)
    assert not host_allowed("https://mem.gov.cn.attacker/", allowed)


def test_a_json_call_carries_the_idempotency_key_auth_and_callback(db, outside):
    result = call(db, {"allowed_hosts": [outside.host], "base_url": outside.url,
                       "auth": {"scheme": "bearer", "token": "tok-123456"}, "headers": {"X-Caller": "emflow"}},
                  method="POST", url="/cases", json={"标题": "危化品泄漏"}, query={"page": 1},
                  headers={"Authorization": "forged", "X-Trace": "t1"})

    assert result["status"] == 200
    seen = outside.requests[0]
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/cases", {"page": ["1"]})
    assert json.loads(seen["body"]) == {"标题": "危化品泄漏"}
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer tok-123456"
    assert (headers["idempotency-key"], headers["x-caller"], headers["x-trace"]) == ("key-0001", "emflow", "t1")
    assert headers["x-emflow-callback"] == "http://emflow.test/api/v1/callbacks/t"
    assert result["body"]["received"]["path"] == "/cases"


def test_basic_api_key_and_hmac_auth(db, outside):
    base = {"allowed_hosts": [outside.host], "base_url": outside.url}
    call(db, {**base, "auth": {"scheme": "basic", "username": "emflow", "password": "pw-密码"}}, url="/a")
    call(db, {**base, "auth": {"scheme": "api_key", "header": "X-Key", "key": "k-1"}}, url="/b")
    call(db, {**base, "auth": {"scheme": "hmac", "key": "shared-key"}}, method="PUT", url="/c", form={"n": 1})

    basic, api_key, signed = (r["headers"] for r in outside.requests)
    assert base64.b64decode(basic["authorization"][6:]).decode() == "emflow:pw-密码"
    assert api_key["x-key"] == "k-1"
    expected = hmac.new(b"shared-key", (signed["x-emflow-timestamp"] + "PUT/c").encode() + b"n=1",
                        hashlib.sha256).hexdigest()
    assert signed["x-emflow-signature"] == expected
    assert signed["content-type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(("behaviour", "code", "retryable"), [
    ("500", "http.500", True), ("503", "http.503", True), ("429", "http.429", True),
    ("404", "http.404", False), ("400", "http.400", False), ("302", "http.302", False),
    ("malformed", "http.malformed", False), ("big", "http.too_large", False),
])
def test_faults_become_connector_errors_with_codes(db, outside, behaviour, code, retryable):
    outside.plan["/x"] = [behaviour]
    with pytest.raises(ConnectorError) as caught:
        call(db, {"allowed_hosts": [outside.host], "max_response_bytes": 1024 * 1024}, url=f"{outside.url}/x")
    assert (caught.value.code, caught.value.retryable) == (code, retryable)


def test_a_slow_answer_times_out_and_a_dead_port_is_unreachable(db, outside):
    outside.plan["/slow"] = ["slow:2"]
    with pytest.raises(ConnectorError) as slow:
        call(db, {"allowed_hosts": [outside.host]}, timeout=0.3, url=f"{outside.url}/slow")
    assert (slow.value.code, slow.value.retryable) == ("http.timeout", True)

    with pytest.raises(ConnectorError) as dead:
        call(db, {"allowed_hosts": ["127.0.0.1:9"]}, url="http://127.0.0.1:9/")
    assert (dead.value.code, dead.value.retryable) == ("http.unreachable", True)


def test_a_host_outside_the_allow_list_is_never_contacted(db, outside):
    with pytest.raises(ConnectorError) as caught:
        call(db, {"allowed_hosts": ["oa.gxzf.gov.cn"]}, url=f"{outside.url}/x")
    assert (caught.value.code, caught.value.retryable) == ("http.forbidden_host", False)
    assert outside.requests == []


# -- through the engine: a process calls the connector from a service task ----------------------------------


@pytest.fixture
def process(db, config, outside, registry):
    """Settings with the token as a secret; start → call (http/Request POST /reports) → review → end."""
    with db.transaction() as s:
        secrets.put(s, config, "ministry_token", "tok-ministry-98765")
        connectors.configure(s, config, registry, load_user(s, "admin"), "http", {
            "allowed_hosts": [outside.host], "base_url": outside.url,
            "auth": {"scheme": "bearer", "token": {"$secret": "ministry_token"}}}, retries=2)
    body = ('<bpmn:startEvent id="start"/>'
            + service_task("call", "http/Request", "reply",
                           {"method": "'POST'", "url": "'/reports'", "json": "{'title': title}"})
            + user_task("review", "核对回执") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "call"), ("call", "review"), ("review", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body), registry=registry)


def launch(db, config) -> int:
    return start(db, config, "zhang.wei", PROCESS, data={"title": "尾矿库位移超限"})


def drain(db, config, registry, instance_id: int) -> list[str]:
    [job] = jobs_of(db, instance_id)
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=10))
        outcomes.append(jobs.execute(db, config, registry, job.id))
    return outcomes


def test_a_service_task_posts_with_the_secret_and_stores_the_reply(db, config, registry, outside, process):
    instance_id = launch(db, config)

    assert drain(db, config, registry, instance_id) == ["done"]
    [seen] = outside.requests
    assert seen["headers"]["authorization"] == "Bearer tok-ministry-98765"
    assert json.loads(seen["body"]) == {"title": "尾矿库位移超限"}
    reply = workflow_data(db, instance_id)["reply"]
    assert reply["status"] == 200 and reply["body"]["received"]["path"] == "/reports"
    assert only_task(db, instance_id).bpmn_id == "review"


def test_500s_are_retried_with_the_same_key_until_the_system_recovers(db, config, registry, outside, process):
    outside.plan["/reports"] = ["500", "503"]
    instance_id = launch(db, config)

    assert drain(db, config, registry, instance_id) == ["retry", "retry", "done"]
    keys = outside.keys("/reports")
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0] == jobs_of(db, instance_id)[0].id


def test_a_system_that_stays_down_raises_an_incident_without_the_token(db, config, registry, outside, process):
    outside.plan["/reports"] = ["502"] * 5
    instance_id = launch(db, config)

    assert drain(db, config, registry, instance_id) == ["retry", "retry", "failed"]
    row = instance(db, instance_id)
    assert row.status == "error" and "answered 502" in row.error
    with db.session() as s:
        incident = s.query(Incident).one()
        assert (incident.operation, incident.attempts) == ("http/Request", 3)
        assert "tok-ministry-98765" not in incident.message


def test_secret_fields_must_be_references_and_the_settings_must_fit_the_schema(db, config, registry):
    with db.transaction() as s:
        admin = load_user(s, "admin")
        with pytest.raises(ValidationFailed) as plain:
            connectors.configure(s, config, registry, admin, "http",
                                 {"allowed_hosts": ["a.gov.cn"], "auth": {"scheme": "bearer", "token": "inline"}})
        assert "config.auth.token" in plain.value.errors
        with pytest.raises(ValidationFailed) as bad:
            connectors.configure(s, config, registry, admin, "http", {"allowed_hosts": []})
        assert "config.allowed_hosts" in bad.value.errors
        with pytest.raises(ValidationFailed) as unknown:
            connectors.configure(s, config, registry, admin, "http", {
                "allowed_hosts": ["a.gov.cn"], "auth": {"scheme": "bearer", "token": {"$secret": "nope"}}})
        assert "nope" in unknown.value.message


WORKER = """
import sys
from engine import clock, jobs
from engine.config import Config
from engine.connectors import Registry
from engine.db import Database
clock.install()
config = Config.from_env()
jobs.execute(Database(config), config, Registry.discover(), sys.argv[1])
"""


def test_a_worker_killed_mid_call_is_replaced_and_the_system_sees_the_same_key(db, config, registry, outside,
                                                                             process):
    outside.plan["/reports"] = ["slow:30"]
    instance_id = launch(db, config)
    [job] = jobs_of(db, instance_id)
    env = {**os.environ, "EMFLOW_DATABASE_URL": config.database_url,
           "EMFLOW_INSTANCE_PATH": str(config.instance_path)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, job.id], env=env)
    try:
        poll(lambda: outside.keys("/reports"), timeout=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert jobs_of(db, instance_id)[0].status == "running"  # the dead worker's lease is still on it

    clock.advance(timedelta(seconds=config.job_lease_seconds + 1))
    assert jobs.due_jobs(db) == [job.id]
    assert jobs.execute(db, config, registry, job.id) == "done"

    assert outside.keys("/reports") == [job.id, job.id]
    assert only_task(db, instance_id).bpmn_id == "review"
    assert instance(db, instance_id).status == "running"
