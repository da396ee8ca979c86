"""Incoming messages: matched to waiting instances through the subscription table, or starting one."""
from __future__ import annotations

import json
from datetime import timedelta

from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock, instances
from .config import Config
from .connectors import job_of_token
from .errors import Conflict, EngineError, Forbidden, NotFound, ValidationFailed
from .models import Job, MessageSubscription, ProcessModel, User
from .runtime import Step, correlation_key, lock_instance
from .versions import VERSIONS, latest_version_id


def deliver(session: Session, config: Config, user: User, name: str, correlations: dict | None = None,
            payload: dict | None = None) -> dict:
    """Deliver a message; returns {"delivered": [instance ids], "started": [instance ids]}."""
    if not user.can("message.send"):
        raise Forbidden("you may not send messages to processes", code="not_a_sender")
    if not name or not isinstance(name, str):
        raise ValidationFailed("a message needs a name", errors={"name": [{"code": "required", "message": "required"}]})
    correlations = correlations or {}
    payload = payload or {}
    if not isinstance(correlations, dict) or not isinstance(payload, dict):
        raise ValidationFailed("correlations and payload must be JSON objects",
                               errors={"payload": [{"code": "type", "message": "object"}]})
    contradicted = sorted(k for k in correlations if k in payload and payload[k] != correlations[k])
    if contradicted:
        raise ValidationFailed("the payload contradicts the correlation values",
                               errors={f"payload.{k}": [{"code": "invalid", "message": "differs from correlations"}]
                                       for k in contradicted})
    # A process reads its correlation values from the payload (retrieval expressions), so the values
    # the message was matched on travel in it.
    event_payload = {**payload, **correlations}
    key = correlation_key(correlations)
    ids = list(session.scalars(select(MessageSubscription.instance_id).where(
        MessageSubscription.message_name == name, MessageSubscription.correlation_key == key).distinct()))
    delivered = [i for i in sorted(ids)
                 if deliver_to(session, config, user, i, name, event_payload, correlations, payload)]
    started = []
    if not delivered:
        for model in session.scalars(select(ProcessModel).where(ProcessModel.latest_version > 0)):
            version = VERSIONS.get(session, latest_version_id(session, model.key))
            if name in version.meta.get("message_starts", []):
                started.append(_start_by_message(session, config, user, model.key, name, correlations, payload))
            elif version.meta.get("start_message") == name:
                # process.json "start_message": the payload becomes the new instance's start data
                business_key = correlations.get("business_key")
                started.append(instances.start(session, config, user, model.key, data=payload,
                                               business_key=str(business_key) if business_key else None).id)
    if not delivered and not started:
        raise NotFound(f"no process instance is waiting for message '{name}' with these correlation values",
                       code="no_receiver")
    return {"delivered": delivered, "started": started}


def deliver_to(session: Session, config: Config, user: User | None, instance_id: int, name: str,
               event_payload: dict, correlations: dict | None = None, recorded: dict | None = None) -> bool:
    """Deliver a message to one instance if it is running and waiting for it; True if it was."""
    step = Step.open(session, config, instance_id, user)
    if step.instance.status != "running":
        return False
    waiting = [e for e in step.workflow.waiting_events()
               if e.event_type == "MessageEventDefinition" and e.name == name]
    if not waiting:
        return False
    try:
        step.workflow.send_event(BpmnEvent(MessageEventDefinition(name), event_payload,
                                           waiting[0].correlations or {}))
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - a retrieval expression that does not fit this payload
        raise ValidationFailed(f"message '{name}' does not fit the process waiting for it: {exc}",
                               errors={"payload": [{"code": "invalid", "message": str(exc)[:200]}]}) from exc
    step.event("message_received", message=name, correlations=correlations or {},
               payload=event_payload if recorded is None else recorded)
    step.run()
    step.save()
    return True


CALLBACK_DAYS = 30  # how long an outside system may take to answer a call
CALLBACK_MAX_BYTES = 64 * 1024


def deliver_callback(session: Session, config: Config, token: str, name: str, payload: dict) -> int:
    """An outside system answers a service call later: the answer reaches that call's instance as the message
    the service task declared (``callbackMessage``), once, within CALLBACK_DAYS."""
    if not isinstance(name, str) or not name or not isinstance(payload, dict):
        raise ValidationFailed("a callback needs a message name and a JSON object payload",
                               errors={"message": [{"code": "required", "message": "required"}]})
    job_id = job_of_token(config, token, name)
    job = session.get(Job, job_id) if job_id else None
    if job is None or job.instance_id is None or job.payload.get("callback_message") != name \
            or job.created_at < clock.now() - timedelta(days=CALLBACK_DAYS):
        raise NotFound("this callback address is not valid", code="callback_unknown")
    if len(json.dumps(payload, ensure_ascii=False)) > CALLBACK_MAX_BYTES:
        raise ValidationFailed("the callback payload is too large",
                               errors={"payload": [{"code": "maxLength", "message": str(CALLBACK_MAX_BYTES)}]})
    # The instance first, as the job runner locks it before writing the job row; holding it, a second answer to
    # the same call waits here and then sees the first one's mark.
    lock_instance(session, job.instance_id)
    session.refresh(job)
    # A call is answered once: the address stays valid for days, and a process that waits for the same message
    # again (a loop, a second call) must not take an old or replayed answer as the answer to the new call.
    if job.payload.get("answered_at") or not deliver_to(
            session, config, None, job.instance_id, name, payload,
            recorded={**payload, "callback_for": job.payload.get("bpmn_id")}):
        raise Conflict(f"the process is not waiting for message '{name}' (already answered?)",
                       code="callback_not_waiting")
    job.payload = {**job.payload, "answered_at": clock.now().isoformat()}
    return job.instance_id


def _start_by_message(session, config, user, key, name, correlations, payload) -> int:
    business_key = correlations.get("business_key") if isinstance(correlations.get("business_key"), str) else None
    inst = instances.start(session, config, user, key, data={}, business_key=business_key,
                           title=payload.get("title") if isinstance(payload.get("title"), str) else None,
                           start_event=BpmnEvent(MessageEventDefinition(name), payload, {}))
    return inst.id
