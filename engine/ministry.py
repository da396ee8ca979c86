"""Instructions (指示) from the ministry's command system, delivered to the instances waiting for them.

The ministry posts ``{incident_id, instruction, issued_by, issued_at}`` signed with the ministry
connector's ``webhook_secret``. Each running instance subscribed to the message ``ministry.instruction``
with the correlation ``ministry_incident_id`` = that id receives it, as a system delivery (no user: the
signature is the credential), the same way a service call's callback is delivered.
"""
from __future__ import annotations

import json

from jsonschema import Draft202012Validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import Config
from .errors import AuthenticationFailed, NotFound, ValidationFailed
from .forms import MESSAGES, FieldError
from .messages import deliver_to
from .models import MessageSubscription
from .oa import hmac_matches, webhook_key
from .runtime import correlation_key

CONNECTOR = "ministry"
MESSAGE = "ministry.instruction"
CORRELATION = "ministry_incident_id"
INSTRUCTION = {
    "type": "object",
    "properties": {
        "incident_id": {"type": ["string", "integer"], "minLength": 1, "maxLength": 100},
        "instruction": {"type": "string", "minLength": 1, "maxLength": 10000},
        "issued_by": {"type": "string", "minLength": 1, "maxLength": 100},
        "issued_at": {"type": "string", "minLength": 10, "maxLength": 40},
    },
    "required": ["incident_id", "instruction", "issued_by", "issued_at"],
}


def check_signature(session: Session, config: Config, body: bytes, signature: str) -> None:
    """Raise AuthenticationFailed unless ``X-Ministry-Signature`` is the HMAC of the raw body."""
    if not hmac_matches(webhook_key(session, config, CONNECTOR), body, signature):
        raise AuthenticationFailed("the ministry signature is missing or does not match", code="bad_signature")


def parse(body: bytes) -> dict:
    """The instruction in a webhook body; ValidationFailed (422) naming the fields that are wrong."""
    try:
        value = json.loads(body)
    except ValueError:
        raise ValidationFailed("the body is not JSON", errors={"body": [FieldError("invalid").as_dict()]}) from None
    errors: dict[str, list] = {}
    for error in Draft202012Validator(INSTRUCTION).iter_errors(value):
        field = error.message.split("'")[1] if error.validator == "required" else \
            ".".join(str(p) for p in error.absolute_path) or "body"
        errors.setdefault(field, []).append(FieldError(error.validator if error.validator in MESSAGES
                                                       else "invalid").as_dict())
    if errors:
        raise ValidationFailed("the instruction is not valid", errors=errors)
    return {k: value[k] for k in INSTRUCTION["properties"]} | {"incident_id": str(value["incident_id"])}


def deliver_instruction(session: Session, config: Config, instruction: dict) -> list[int]:
    """Deliver an instruction to every instance waiting for one on its incident; NotFound if none waits."""
    correlations = {CORRELATION: instruction["incident_id"]}
    ids = session.scalars(select(MessageSubscription.instance_id).where(
        MessageSubscription.message_name == MESSAGE,
        MessageSubscription.correlation_key == correlation_key(correlations)).distinct())
    delivered = [i for i in sorted(ids) if deliver_to(session, config, None, i, MESSAGE,
                                                      {**instruction, **correlations}, correlations, instruction)]
    if not delivered:
        raise NotFound(f"no process waits for instructions on ministry incident {instruction['incident_id']!r}",
                       code="no_receiver")
    return delivered
