"""The government OA system (政务 OA): incoming documents (来文) start 收文, by signed webhook or by polling.

The OA is reached through the connector registry by name (``oa/Download``, ``oa/FetchNew``); this module
never imports the connector. A document is received once: the ``oa_document`` row keyed by the OA's id
makes a repeated webhook, a poll that overlaps a webhook, or two racing deliveries start one instance.
Reports back (签收, 办结) are service tasks of the 收文 process itself, taken when its data has ``oa_id``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import ConnectorError

from . import audit, clock, files, instances, secrets
from .config import Config
from .connectors import Registry, prepare
from .db import Database
from .errors import AuthenticationFailed, EngineError, Misconfigured, ValidationFailed
from .forms import MESSAGES, FieldError
from .models import ConnectorConfig, User
from .models.oa import OaDocument, OaPollState

log = logging.getLogger("emflow.oa")
CONNECTOR = "oa"
PROCESS = "document_receipt"
POLL = "documents"  # the oa_poll_state row of the document poll
TEXT = {"type": "string", "maxLength": 1000}
DOCUMENT = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "integer"], "minLength": 1, "maxLength": 100},
        "title": {"type": "string", "minLength": 2, "maxLength": 200},
        "issuer": {"type": "string", "maxLength": 100},
        "doc_number": {"type": "string", "maxLength": 60},
        "copies": {"type": "integer", "minimum": 1, "maximum": 1000},
        "secrecy": {"type": "string", "maxLength": 20},
        "urgency": {"type": "string", "maxLength": 20},
        "deadline": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}"},
        "file_url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "file_name": {"type": "string", "maxLength": 255},
        "summary": TEXT,
        "handling_type": {"enum": ["办理", "阅知"]},
    },
    "required": ["id", "title", "file_url"],
}
# OA document field -> field of the 签收 form (forms/document_receipt/sign_in.schema.json)
START_FIELDS = {"title": "title", "issuer": "source_unit", "doc_number": "source_number", "copies": "copies",
                "secrecy": "secrecy", "urgency": "urgency", "deadline": "deadline", "summary": "summary",
                "handling_type": "handling_type"}
# Download failures that retrying cannot cure: the document itself is at fault (422), not the OA (502).
REJECTED = {"file_rejected", "oa.empty_file", "oa.too_large", "oa.forbidden_host", "oa.404", "oa.410"}


class OaUnavailable(EngineError):
    """The OA could not be reached or answered with an error; the sender should try again later."""

    status = 502
    code = "oa_unavailable"


def hmac_matches(key: str, body: bytes, signature: str) -> bool:
    """True if ``signature`` is the hex HMAC-SHA256 of ``body`` under ``key`` (a ``sha256=`` prefix is allowed)."""
    given = (signature or "").strip().lower().removeprefix("sha256=").encode("utf-8", "replace")
    expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest().encode()
    return bool(key) and hmac.compare_digest(expected, given)


def webhook_key(session: Session, config: Config, connector: str) -> str:
    """A connector's ``webhook_secret`` in plain; empty when the connector or the secret is not set up."""
    row = session.get(ConnectorConfig, connector)
    reference = (row.config or {}).get("webhook_secret") if row is not None and row.enabled else None
    if not reference:
        return ""
    try:
        value = secrets.resolve(session, config, reference, [])
    except EngineError:
        return ""
    return value if isinstance(value, str) else ""


def check_signature(session: Session, config: Config, body: bytes, signature: str) -> None:
    """Raise AuthenticationFailed unless ``X-OA-Signature`` is the HMAC of the raw body under the webhook secret."""
    if not hmac_matches(webhook_key(session, config, CONNECTOR), body, signature):
        raise AuthenticationFailed("the OA signature is missing or does not match", code="bad_signature")


def parse(body: bytes) -> dict:
    """The webhook body: one document, bare or as {"document": {...}}; ValidationFailed if it is not JSON."""
    try:
        value = json.loads(body)
    except ValueError:
        raise ValidationFailed("the body is not JSON", errors={"body": [FieldError("invalid").as_dict()]}) from None
    if isinstance(value, dict) and isinstance(value.get("document"), dict):
        value = value["document"]
    return _checked(value)


def _checked(document) -> dict:
    if not isinstance(document, dict):
        raise ValidationFailed("a document is a JSON object", errors={"document": [FieldError("type", "object")
                                                                                   .as_dict()]})
    doc = {k: v for k, v in document.items() if v is not None and v != ""}
    errors: dict[str, list] = {}
    for error in Draft202012Validator(DOCUMENT).iter_errors(doc):
        if error.validator == "required":
            field = error.message.split("'")[1]
        else:
            field = ".".join(str(p) for p in error.absolute_path) or "document"
        code = error.validator if error.validator in MESSAGES else "invalid"
        limit = error.validator_value if error.validator in ("minLength", "maxLength", "minimum", "maximum") else None
        errors.setdefault(field, []).append(FieldError(code, limit).as_dict())
    if errors:
        raise ValidationFailed("the OA document is not valid", errors=errors)
    doc["id"] = str(doc["id"])
    return doc


def _received(db: Database, oa_id: str) -> OaDocument | None:
    with db.session() as s:
        return s.get(OaDocument, oa_id)


def _run(db: Database, config: Config, registry: Registry, operation: str, params: dict, key: str):
    """One connector call made by the platform itself (no instance): outside any transaction."""
    with db.session() as s:
        call = prepare(registry, s, config, operation)
    return call.run(db, params, key, None)


def _starter(session: Session, config: Config) -> User:
    """Who starts 收文 for the OA: the configured ``start_as`` user, else the first active administrator."""
    row = session.get(ConnectorConfig, CONNECTOR)
    username = (row.config or {}).get("start_as") if row is not None else None
    query = select(User).where(User.is_active.is_(True))
    query = query.where(User.username == username) if username else \
        query.where(User.is_superuser.is_(True)).order_by(User.id)
    user = session.scalars(query).first()
    if user is None:
        raise Misconfigured(f"the OA's start_as user {username or '(an administrator)'} does not exist",
                            code="oa_no_starter")
    return user


def start_data(config: Config, doc: dict, file_ref: dict) -> dict:
    """The 收文 start data of an OA document: it fills the 签收 form, and ``oa_id`` makes the process report back."""
    data = {dst: doc[src] for src, dst in START_FIELDS.items() if src in doc}
    if "deadline" in data:
        data["deadline"] = data["deadline"][:10]
    today = clock.now().astimezone(ZoneInfo(config.timezone)).date()
    return {**data, "oa_id": doc["id"], "received_on": today.isoformat(), "file": file_ref["id"]}


def receive(db: Database, config: Config, registry: Registry, document: dict, via: str) -> dict:
    """Start 收文 for one OA document with its file; a document received before starts nothing.

    Returns {"instance_id", "created"}. The file is downloaded first, outside any transaction; the
    instance, its data and the file's binding are then written in one."""
    doc = _checked(document)
    oa_id = doc["id"]
    existing = _received(db, oa_id)
    if existing is not None:
        return {"instance_id": existing.instance_id, "created": False}
    try:
        ref = _run(db, config, registry, f"{CONNECTOR}/Download",
                   {"url": doc["file_url"], "filename": doc.get("file_name", "")}, f"oa:{oa_id}:file")
    except ConnectorError as exc:
        if exc.code in REJECTED:
            raise ValidationFailed(f"the document's file was refused: {exc}",
                                   errors={"file_url": [FieldError("invalid").as_dict()]}) from None
        raise OaUnavailable(f"the document's file could not be fetched: {exc}") from None
    try:
        with db.transaction() as s:
            row = OaDocument(oa_id=oa_id, via=via)
            s.add(row)
            s.flush()  # a concurrent delivery of the same document fails here, before anything starts
            inst = instances.start(s, config, _starter(s, config), PROCESS, data=start_data(config, doc, ref),
                                   business_key=f"OA-{oa_id}", title=doc["title"])
            files.attach(s, [ref["id"]], inst.id)
            row.instance_id = inst.id
            audit.record_system(s, "oa_document_received", None, target=oa_id, via=via, instance_id=inst.id)
            return {"instance_id": inst.id, "created": True}
    except IntegrityError:
        existing = _received(db, oa_id)
        if existing is None:
            raise
        return {"instance_id": existing.instance_id, "created": False}


def poll(db: Database, config: Config, registry: Registry) -> int:
    """Fetch the OA's new documents since the stored cursor and receive each; returns how many started.

    The cursor advances only when every document was received or refused as invalid, so a document
    whose file could not be fetched is asked for again next time (and not started twice)."""
    with db.session() as s:
        if not _interval(s):
            return 0
        state = s.get(OaPollState, POLL)
        cursor = state.cursor if state is not None else None
    answer = _run(db, config, registry, f"{CONNECTOR}/FetchNew", {"since": cursor}, f"oa:poll:{uuid.uuid4().hex}")
    started = 0
    for document in answer["documents"]:
        try:
            started += receive(db, config, registry, document, "poll")["created"]
        except ValidationFailed as exc:  # it would block the cursor for ever: skipped, and said so
            log.warning("OA document %s skipped: %s %s", document.get("id"), exc.message, exc.errors)
    with db.transaction() as s:
        state = _state(s)
        state.cursor, state.failures, state.last_error = answer["cursor"], 0, None
    return started


def poll_due(db: Database, config: Config, registry: Registry) -> int | None:
    """The schedulers' hook: poll when ``poll_seconds`` have passed since the last poll. Never raises; a
    failure is logged and counted in ``oa_poll_state``. Returns how many started, None when not due."""
    try:
        with db.session() as s:
            interval = _interval(s)
        if not interval or CONNECTOR not in registry.classes or not _claim(db, interval):
            return None
        return poll(db, config, registry)
    except Exception as exc:  # noqa: BLE001 - the scheduler loop must outlive any OA failure
        message = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        log.warning("OA poll failed: %s", message)
        try:
            with db.transaction() as s:
                state = _state(s)
                state.failures, state.last_error = (state.failures or 0) + 1, message[:2000]
        except Exception:  # noqa: BLE001 - e.g. the database itself is down
            log.exception("could not record the OA poll failure")
        return None


def _interval(session: Session) -> int:
    row = session.get(ConnectorConfig, CONNECTOR)
    if row is None or not row.enabled:
        return 0
    value = (row.config or {}).get("poll_seconds") or 0
    return int(value) if isinstance(value, int) else 0


def _state(session: Session) -> OaPollState:
    state = session.get(OaPollState, POLL)
    if state is None:
        state = OaPollState(name=POLL, failures=0)
        session.add(state)
        session.flush()
    return state


def _claim(db: Database, interval: int) -> bool:
    """Take this round of polling: one scheduler of several wins, and only once ``interval`` has passed."""
    try:
        with db.transaction() as s:
            _state(s)
    except IntegrityError:  # another scheduler made the row first
        pass
    now = clock.now()
    with db.transaction() as s:
        taken = s.execute(update(OaPollState).where(
            OaPollState.name == POLL,
            or_(OaPollState.polled_at.is_(None), OaPollState.polled_at <= now - timedelta(seconds=interval)),
        ).values(polled_at=now))
        return taken.rowcount == 1
