"""Shared helpers for engine and process tests: drive instances, tasks and jobs at engine level.

Every write goes through ``db.transaction()`` exactly as the web layer does; every read through
``db.session()``. Users are passed around by username and loaded in the session that uses them.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from engine import clock, files, instances, jobs, tasks
from engine.bpmn.serializer import state_from_json, state_to_json
from engine.config import Config
from engine.connectors import Registry
from engine.db import Database
from engine.deploy import Bundle, deploy
from engine.models import HumanTask, InstanceEvent, Job, ProcessInstance, User
from engine.versions import VERSIONS

PDF = b"%PDF-1.4 test document body"
DISPATCH = "document_dispatch"


# -- users --------------------------------------------------------------------------------------
def load_user(session, username: str) -> User:
    """The user with this username, loaded in ``session``."""
    found = session.scalar(select(User).where(User.username == username))
    assert found is not None, f"no user {username!r}"
    return found


def png(width: int = 120, height: int = 40) -> bytes:
    """A real PNG image, as a signature pad draws it: a grey diagonal stroke on white."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes(0x40 if abs(x - 3 * y) < 3 else 0xFF for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def data_url(image: bytes, kind: str = "png") -> str:
    """An image as the data URL a signature pad posts."""
    return f"data:image/{kind};base64," + base64.b64encode(image).decode()


# -- the engine clock ---------------------------------------------------------------------------
def local_now(config: Config) -> datetime:
    """The engine clock in the platform's time zone, where the engine takes the dates and years it records."""
    return clock.now().astimezone(ZoneInfo(config.timezone))


def clear_of_midnight(config: Config, margin: timedelta = timedelta(hours=1)) -> datetime:
    """Move the engine clock just past the next local midnight if that is less than ``margin`` away, and return
    the local time. A test that reads today's date (or year) from it, then moves the clock by less than ``margin``
    before the engine records its own, sees both on one day and in one year, whatever time the suite runs at."""
    now = local_now(config)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    if midnight - now < margin:
        clock.advance(midnight - now + timedelta(seconds=1))
        now = local_now(config)
    return now


# -- 发文 (document_dispatch) ----------------------------------------------------------------------
def upload(db: Database, config: Config, username: str, name: str = "正文.pdf", content: bytes = PDF) -> str:
    """Store an attachment as ``username`` and return its id."""
    with db.transaction() as s:
        return files.store(s, config, load_user(s, username), name, "application/pdf", io.BytesIO(content)).id


def draft_payload(body_file: str, **overrides) -> dict:
    """A valid 拟稿 form submission; ``overrides`` replace or add fields."""
    data = {
        "title": "关于加强汛期安全生产工作的通知",
        "doc_type": "通知",
        "secrecy": "公开",
        "urgency": "加急",
        "main_recipients": "各市应急管理局",
        "body_file": body_file,
        "countersign_units": [],
        "opinion": "请审核",
    }
    data.update(overrides)
    return data


def distribute_payload(**overrides) -> dict:
    """A valid 用印/分发 form submission."""
    data = {
        "seal_applied": True,
        "print_copies": 30,
        "distribution": [{"recipient": "南宁市应急管理局", "copies": 2, "method": "机要交换"}],
        "distributed_on": "2026-11-30",
    }
    data.update(overrides)
    return data


def start(db: Database, config: Config, username: str, process_key: str = DISPATCH, data: dict | None = None,
          business_key: str | None = None, title: str | None = None) -> int:
    """Start an instance as ``username``; returns its id."""
    with db.transaction() as s:
        return instances.start(s, config, load_user(s, username), process_key, data=data,
                               business_key=business_key, title=title).id


def start_dispatch(db: Database, config: Config, username: str = "zhang.wei", business_key: str | None = None,
                   **draft_overrides) -> int:
    """Start a 发文 as ``username`` and submit its 拟稿 with a valid draft (plus overrides); returns the id."""
    instance_id = start(db, config, username, DISPATCH, business_key=business_key)
    body_file = draft_overrides.pop("body_file", None) or upload(db, config, username)
    complete(db, config, username, only_task(db, instance_id, "draft").id, draft_payload(body_file, **draft_overrides))
    return instance_id


def complete(db: Database, config: Config, username: str, task_id: str, data: dict) -> ProcessInstance:
    """Complete a task as ``username`` in its own transaction."""
    with db.transaction() as s:
        return tasks.complete(s, config, load_user(s, username), task_id, data)


def claim(db: Database, config: Config, username: str, task_id: str) -> HumanTask:
    with db.transaction() as s:
        return tasks.claim(s, config, load_user(s, username), task_id)


def open_tasks(db: Database, instance_id: int, bpmn_id: str | None = None) -> list[HumanTask]:
    """The instance's open human tasks (optionally of one BPMN element), oldest first."""
    with db.session() as s:
        found = instances.active_tasks(s, instance_id)
    return [t for t in found if bpmn_id is None or t.bpmn_id == bpmn_id]


def only_task(db: Database, instance_id: int, bpmn_id: str | None = None) -> HumanTask:
    """The single open task of the instance (of one element); fails if there are none or several."""
    found = open_tasks(db, instance_id, bpmn_id)
    assert len(found) == 1, f"expected one open {bpmn_id or ''} task, got {[(t.bpmn_id, t.loop_item) for t in found]}"
    return found[0]


def view(db: Database, config: Config, username: str, task_id: str) -> tasks.TaskView:
    """What ``username`` sees of a task: its form, the data the form shows, whether they may act."""
    with db.session() as s:
        return tasks.view(s, config, load_user(s, username), task_id)


def assignee(db: Database, task: HumanTask) -> str | None:
    """Username of the task's assignee (None while unassigned)."""
    if task.assignee_id is None:
        return None
    with db.session() as s:
        return s.get(User, task.assignee_id).username


def review(db: Database, config: Config, instance_id: int, decision: str = "approve", opinion: str = "同意") -> None:
    """li.na completes 核稿."""
    complete(db, config, "li.na", only_task(db, instance_id, "review").id,
             {"review_decision": decision, "opinion": opinion})


def sign_off(db: Database, config: Config, instance_id: int, decision: str = "approve",
             opinion: str = "同意印发") -> None:
    """liu.yang completes 签发."""
    complete(db, config, "liu.yang", only_task(db, instance_id, "sign_off").id,
             {"sign_decision": decision, "opinion": opinion})


def dispatch_to_distribution(db: Database, config: Config, registry: Registry, **draft_overrides) -> int:
    """A 发文 drafted, reviewed, signed off and numbered: its 用印/分发 task waits for a clerk to claim it."""
    instance_id = start_dispatch(db, config, **draft_overrides)
    review(db, config, instance_id)
    sign_off(db, config, instance_id)
    assert run_jobs(db, config, registry) == ["done"]
    return instance_id


# -- instances, jobs, history ----------------------------------------------------------------------
def instance(db: Database, instance_id: int, with_state: bool = False) -> ProcessInstance:
    """The instance row as stored now (state loaded on request)."""
    with db.session() as s:
        row = s.get(ProcessInstance, instance_id)
        if with_state:
            _ = row.state
        return row


def events(db: Database, instance_id: int, kind: str | None = None) -> list[InstanceEvent]:
    with db.session() as s:
        found = instances.history(s, instance_id)
    return [e for e in found if kind is None or e.kind == kind]


def event_count(db: Database, instance_id: int) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(InstanceEvent).where(InstanceEvent.instance_id == instance_id))


def jobs_of(db: Database, instance_id: int) -> list[Job]:
    with db.session() as s:
        return list(s.scalars(select(Job).where(Job.instance_id == instance_id).order_by(Job.created_at)))


def run_jobs(db: Database, config: Config, registry: Registry, rounds: int = 10) -> list[str]:
    """Execute due jobs until none are left (a job may queue another); returns the outcomes."""
    outcomes = []
    for _ in range(rounds):
        due = jobs.due_jobs(db)
        if not due:
            break
        outcomes.extend(jobs.execute(db, config, registry, job_id) for job_id in due)
    return outcomes


def workflow_data(db: Database, instance_id: int) -> dict:
    """The data of the instance's last finished task (what the next step inherits), or the workflow's
    result once it has ended; read from the stored state."""
    with db.session() as s:
        row = s.get(ProcessInstance, instance_id)
        version = VERSIONS.get(s, row.version_id)
        wf = state_from_json(row.state, version.spec, version.subprocess_specs, lambda: version.spec_json)
    if wf.is_completed():
        return dict(wf.data)
    assert wf.last_task is not None, "the stored state lost its last task"
    return dict(wf.last_task.data)


def assert_state_round_trips(db: Database, instance_id: int) -> str:
    """The stored state restores onto the version's spec and serializes back to the same JSON."""
    with db.session() as s:
        row = s.get(ProcessInstance, instance_id)
        stored = row.state
        version = VERSIONS.get(s, row.version_id)
    wf = state_from_json(stored, version.spec, version.subprocess_specs, lambda: version.spec_json)
    assert json.loads(state_to_json(wf)) == json.loads(stored)
    return stored


# -- test bundles ------------------------------------------------------------------------------------
NOTE_FORM = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"note": {"type": "string", "maxLength": 200}, "opinion": {"type": "string", "maxLength": 200}},
})


def bpmn(process_id: str, body: str, definitions: str = "") -> str:
    """A BPMN document with one executable process; ``definitions`` goes before the process
    (messages, correlation properties)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="{process_id}_definitions" targetNamespace="https://emflow.example/test">
  {definitions}
  <bpmn:process id="{process_id}" isExecutable="true">
  {body}
  </bpmn:process>
</bpmn:definitions>
"""


def user_task(task_id: str, name: str, assignee: str = "initiator", form: str = "note.schema.json",
              rule: str = "assignee") -> str:
    """A user task with a form and an assignment rule (``rule`` is 'assignee' or 'candidates')."""
    return (f'<bpmn:userTask id="{task_id}" name="{name}"><bpmn:extensionElements><spiffworkflow:properties>'
            f'<spiffworkflow:property name="formJsonSchemaFilename" value="{form}"/>'
            f"<spiffworkflow:property name=\"{rule}\" value='{assignee}'/>"
            f"</spiffworkflow:properties></bpmn:extensionElements></bpmn:userTask>")


def service_task(task_id: str, operation: str, result_variable: str, params: dict[str, str] | None = None) -> str:
    """A service task calling ``operation``; params map names to Python expressions."""
    parameters = "".join(f'<spiffworkflow:parameter id="{k}" type="str" value="{v}"/>'
                         for k, v in (params or {}).items())
    return (f'<bpmn:serviceTask id="{task_id}" name="{task_id}"><bpmn:extensionElements>'
            f'<spiffworkflow:serviceTaskOperator id="{operation}" resultVariable="{result_variable}">'
            f"<spiffworkflow:parameters>{parameters}</spiffworkflow:parameters>"
            f"</spiffworkflow:serviceTaskOperator></bpmn:extensionElements></bpmn:serviceTask>")


def flows(*pairs: tuple[str, str]) -> str:
    """Sequence flows between consecutive element ids."""
    return "".join(f'<bpmn:sequenceFlow id="flow_{a}_{b}" sourceRef="{a}" targetRef="{b}"/>' for a, b in pairs)


def deploy_bundle(db: Database, key: str, bpmn_text: str, registry: Registry | None = None,
                  forms: dict[str, str] | None = None, **options: Any) -> int:
    """Deploy a test bundle (the BPMN plus the note form, or ``forms``); returns the version id."""
    bundle = Bundle(key=key, name=options.pop("name", key), files={f"{key}.bpmn": bpmn_text,
                                                                   **(forms or {"note.schema.json": NOTE_FORM})},
                    options=options)
    with db.transaction() as s:
        version, _ = deploy(s, bundle, load_user(s, "admin"), registry.operations() if registry else None)
        return version.id


def poll(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05):
    """Wait for ``condition()`` to be truthy (background threads only); returns its value or fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
