"""emflow serve, worker and scheduler as real processes on PostgreSQL + Redis (the production shape)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_PASSWORD, PG_URL, REDIS_URL

pytestmark = [
    pytest.mark.postgres, pytest.mark.redis,
    pytest.mark.skipif(not (PG_URL and REDIS_URL), reason="needs EMFLOW_TEST_DATABASE_URL and EMFLOW_TEST_REDIS_URL"),
]
EMFLOW = str(Path(sys.executable).parent / "emflow")

TIMER_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="wait_a_second" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pause"/>
    <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition>
      <bpmn:timeDuration>"PT1S"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="after"/>
    <bpmn:userTask id="after" name="计时后"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="formJsonSchemaFilename" value="after.schema.json"/>
      <spiffworkflow:property name="assignee" value="initiator"/>
    </spiffworkflow:properties></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def stack(config, tmp_path):
    port, queue = _free_port(), f"emflow-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "EMFLOW_DATABASE_URL": config.database_url, "EMFLOW_REDIS_URL": REDIS_URL,
           "EMFLOW_INSTANCE_PATH": str(tmp_path), "EMFLOW_SECRET_KEY": "integration-secret"}
    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {
        "serve": [EMFLOW, "serve", "--port", str(port), "--workers", "2", "--threads", "4"],
        "worker": [EMFLOW, "worker", "--queue", queue],
        "scheduler": [EMFLOW, "scheduler", "--queue", queue],
    }
    outputs = {name: open(logs / f"{name}.log", "w") for name in commands}  # noqa: SIM115 - closed below
    procs = {name: subprocess.Popen(cmd, env=env, stdout=outputs[name], stderr=subprocess.STDOUT)
             for name, cmd in commands.items()}
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _ping(base), 30, "emflow serve to answer")
        yield base, procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for output in outputs.values():
            output.close()
        from redis import Redis

        redis = Redis.from_url(REDIS_URL)
        for key in redis.scan_iter(f"rq:*{queue}*"):
            redis.delete(key)
        redis.close()


def _ping(base: str) -> bool:
    try:
        return httpx.get(f"{base}/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _client(base: str, username: str) -> httpx.Client:
    token = httpx.post(f"{base}/api/v1/auth/token", json={"username": username, "password": DEMO_PASSWORD},
                       timeout=10).json()["access_token"]
    return httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=20)


def _task(instance: dict, bpmn_id: str) -> dict:
    return next(t for t in instance["tasks"] if t["bpmn_id"] == bpmn_id)


def test_dispatch_runs_across_server_worker_and_scheduler(stack):
    base, procs = stack
    with _client(base, "zhang.wei") as zw, _client(base, "li.na") as ln, _client(base, "wang.fang") as wf, \
            _client(base, "liu.yang") as ly:
        inst = zw.post("/process-instances", json={"process_key": "document_dispatch"}).json()
        body = zw.post("/attachments", files={"file": ("正文.pdf", b"%PDF-1.4 x", "application/pdf")}).json()
        draft = {"title": "集成测试发文", "doc_type": "通知", "secrecy": "公开", "urgency": "平件",
                 "main_recipients": "各市应急管理局", "body_file": body["id"], "countersign_units": ["ZCFGC"]}
        inst = zw.post(f"/tasks/{_task(inst, 'draft')['id']}/complete", json={"data": draft}).json()
        inst = ln.post(f"/tasks/{_task(inst, 'review')['id']}/complete",
                       json={"data": {"review_decision": "approve"}}).json()
        inst = wf.post(f"/tasks/{_task(inst, 'countersign')['id']}/complete",
                       json={"data": {"countersign_decision": "agree"}}).json()
        inst = ly.post(f"/tasks/{_task(inst, 'sign_off')['id']}/complete",
                       json={"data": {"sign_decision": "approve", "opinion": "同意"}}).json()
        assert inst["tasks"] == []  # numbering is a job for the RQ worker process

        def numbered():
            current = zw.get(f"/process-instances/{inst['id']}").json()
            return current if current["tasks"] else None

        current = _until(numbered, 20, "the RQ worker to number the document")
        assert current["data"]["doc_number"].startswith("桂应急发〔") and current["data"]["doc_number"].endswith("1号")
        kinds = [e["kind"] for e in current["history"]]
        assert "service_call_completed" in kinds
        distribute = _task(current, "distribute")
        assert distribute["candidate_groups"] == ["office_clerks"]
        zw.post(f"/tasks/{distribute['id']}/claim").raise_for_status()
        done = zw.post(f"/tasks/{distribute['id']}/complete", json={"data": {
            "seal_applied": True, "print_copies": 10, "distributed_on": "2026-12-01",
            "distribution": [{"recipient": "南宁市应急管理局", "copies": 1, "method": "电子公文"}]}}).json()
        assert done["status"] == "completed"
    assert all(p.poll() is None for p in procs.values())


def test_scheduler_process_fires_timers(stack):
    base, _procs = stack
    with _client(base, "admin") as admin:
        form = '{"type": "object", "properties": {"ok": {"type": "boolean", "title": "确认"}}}'
        admin.post("/process-models", data={"key": "wait_a_second", "name": "计时"}, files=[
            ("files", ("wait.bpmn", TIMER_BPMN.encode(), "application/xml")),
            ("files", ("after.schema.json", form.encode(), "application/json"))]).raise_for_status()
        inst = admin.post("/process-instances", json={"process_key": "wait_a_second"}).json()
        assert inst["tasks"] == []
        started = time.monotonic()
        current = _until(lambda: (c := admin.get(f"/process-instances/{inst['id']}").json())["tasks"] and c,
                         10, "the scheduler to fire a 1-second timer")
        assert current["tasks"][0]["bpmn_id"] == "after"
        assert time.monotonic() - started < 10
        assert "timer_fired" in [e["kind"] for e in current["history"]]
