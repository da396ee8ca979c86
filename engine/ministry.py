"""Instructions (指示) from the ministry's command system, delivered to the instances waiting for them.

The ministry posts ``{incident_id, instruction, issued_by, issued_at}`` signed with the ministry
connector's ``webhook_secret``. Each running instance subscribed to the message ``ministry.instruction``
with the correlation ``ministry_incident_id`` = that id receives it, as a system delivery (no user: the
signature is the credential), the same way a service call's callback is delivered.

An instruction is delivered once. The signature proves who sent a body, not when, so anyone who captured one
request could send it again; the ``ministry_instruction`` row written with the delivery makes the same
instruction again (a replay, or the ministry's own retry after a lost answer) answer 200 with the instances it
reached the first time and deliver nothing, even when the process waits on that incident again.
"""
from __future__ import annotations

import hashlib
import json
import logging

from jsonschema import Draft202012Validator
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import audit
from .config import Config
from .errors import AuthenticationFailed, NotFound, ValidationFailed
from .forms import MESSAGES, FieldError
from .messages import deliver_to
from .models import MessageSubscription
from .models.integration import MinistryInstruction
from .oa import hmac_matches, webhook_key
from .runtime import correlation_key

log = logging.getLogger("emflow.ministry")
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


def _deliver(session: Session, config: Config, instruction: dict) -> list[int]:
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


def digest(instruction: dict) -> str:
    """The key an instruction is delivered once under: sha256 of its checked fields in canonical JSON."""
    # The parsed fields rather than the raw bytes: a retry the ministry serialises anew (key order, spacing,
    # an incident id as number or string) is still the same instruction; a different one differs in a field.
    canonical = json.dumps(instruction, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# No window on issued_at. Replays are stopped by the digest, whose rows are never purged, so an age limit adds no
# protection; it would only lose legitimate first deliveries: the ministry retrying after our outage, or after a
# 404 because the process had not reached its wait yet, or an issued_at from a clock that runs ahead of ours.
def receive(session: Session, config: Config, body: bytes) -> dict:
    """Deliver a signed body's instruction once: ``{"delivered": ids}``; the same instruction again delivers
    nothing and answers ``{"delivered": the first ids, "duplicate": True}``."""
    instruction = parse(body)
    key = digest(instruction)
    insert = (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(MinistryInstruction)
    # Claimed before delivering: on PostgreSQL the same instruction arriving at once waits here for this
    # transaction and then finds the row; if this one fails (404, 422), the row goes with it and a retry delivers.
    claimed = session.scalar(insert.values(digest=key, incident_id=instruction["incident_id"], delivered=[])
                             .on_conflict_do_nothing().returning(MinistryInstruction.digest))
    if claimed is None:
        first = session.get(MinistryInstruction, key)
        log.warning("ministry instruction on incident %s received again (%s): not delivered again",
                    instruction["incident_id"], key)
        audit.record_system(session, "ministry_instruction_repeated", None, target=instruction["incident_id"],
                            digest=key, delivered=first.delivered, issued_at=instruction["issued_at"])
        return {"delivered": first.delivered, "duplicate": True}
    delivered = _deliver(session, config, instruction)
    session.execute(update(MinistryInstruction).where(MinistryInstruction.digest == key).values(delivered=delivered))
    return {"delivered": delivered}
