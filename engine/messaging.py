"""Unified messages (统一消息): one call writes the in-app notification and queues SMS by each user's preferences.

SMS goes out as an outbox job running ``sms/Send`` (so it gets the retries of every service call); the job
has no instance, and ``record_job`` turns its result into ``sms_message`` rows that the gateway's delivery
receipts (``apply_receipt``) complete. Receipts are signed like the gateway requests: hex
HMAC-SHA256(api_key, timestamp + "." + body), see ``connectors/sms``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import clock, notifications, secrets
from .config import Config
from .errors import AuthenticationFailed, EngineError, NotFound, ValidationFailed
from .forms import FieldError
from .models import ConnectorConfig, Job, Notification, RateLimitHit, SmsMessage, User, UserChannelPref

CATEGORIES = ("reminder", "urge", "alarm", "cc", "message", "system")
CHANNELS = ("inapp", "sms")
SMS_BY_DEFAULT = {"alarm", "urge"}  # for users with a mobile number
SMS_OPERATION = "sms/Send"
SMS_TEMPLATE = "notice"  # the sms connector's template for platform messages: uses {title} and {body}
RECEIPT_MAX_AGE = 600  # seconds a signed receipt stays acceptable
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def mobile_of(user: User) -> str | None:
    """The user's mainland mobile number from the phone field, normalised, or None."""
    return _mobile(user.phone)


def mobile_number(session: Session, user) -> str | None:
    """The mobile number of a User or a Principal (which carries no phone: it is read from the row)."""
    return _mobile(user.phone if isinstance(user, User) else session.scalar(select(User.phone).where(
        User.id == user.id)))


def _mobile(phone: str | None) -> str | None:
    number = re.sub(r"[\s-]", "", phone or "")
    if number.startswith("+86"):
        number = number[3:]
    elif len(number) == 13 and number.startswith("86"):
        number = number[2:]
    return number if MOBILE.match(number) else None


def masked(number: str | None) -> str:
    """A mobile number as shown on screen: 138****5678."""
    return f"{number[:3]}****{number[-4:]}" if number else ""


def defaults(has_mobile: bool) -> dict[str, list[str]]:
    """The channels of each category for a user who has chosen nothing."""
    return {c: ["inapp", "sms"] if has_mobile and c in SMS_BY_DEFAULT else ["inapp"] for c in CATEGORIES}


def preferences(session: Session, user) -> dict[str, list[str]]:
    """The user's (a User or a Principal) channels per category: their own choice where they made one,
    else the default."""
    chosen = defaults(mobile_number(session, user) is not None)
    for row in session.scalars(select(UserChannelPref).where(UserChannelPref.user_id == user.id)):
        if row.category in chosen:
            chosen[row.category] = [c for c in CHANNELS if c in (row.channels or [])]
    return chosen


def set_preferences(session: Session, user, wanted: dict) -> dict[str, list[str]]:
    """Store the user's channels for the categories given (in-app stays on); returns all preferences."""
    errors = {}
    if not isinstance(wanted, dict):
        raise ValidationFailed("preferences map a category to a list of channels",
                               errors={"preferences": [FieldError("type", "object").as_dict()]})
    for category, channels in wanted.items():
        if category not in CATEGORIES or not isinstance(channels, list) or any(c not in CHANNELS for c in channels):
            errors[f"preferences.{category}"] = [FieldError("enum").as_dict()]
    if errors:
        raise ValidationFailed("unknown message category or channel", errors=errors)
    now = clock.now()
    for category, channels in wanted.items():
        row = session.get(UserChannelPref, (user.id, category)) or UserChannelPref(user_id=user.id, category=category)
        row.channels = [c for c in CHANNELS if c == "inapp" or c in channels]
        row.updated_at = now
        session.add(row)
    session.flush()
    return preferences(session, user)


def sms_ready(session: Session) -> bool:
    """True if the sms connector is configured, enabled and has the platform's ``notice`` template."""
    row = session.get(ConnectorConfig, "sms")
    return bool(row is not None and row.enabled and SMS_TEMPLATE in ((row.config or {}).get("templates") or {}))


def send(session: Session, config: Config, users: list[User], category: str, title: str, body: str = "",
         link: str = "", instance_id: int | None = None, dedupe_key: str | None = None) -> int:
    """Write the in-app notification for each user and queue one SMS job for those whose preference for
    ``category`` includes SMS; with a dedupe_key, users who already have it are skipped. Returns the number
    of in-app notifications written."""
    if dedupe_key:
        done = set(session.scalars(select(Notification.user_id).where(Notification.dedupe_key == dedupe_key)))
        users = [u for u in users if u.id not in done]
    if not users:
        return 0
    written = notifications.send(session, users, title, body, category, link, instance_id, dedupe_key=dedupe_key)
    if category in CATEGORIES and sms_ready(session):
        _queue_sms(session, config, users, category, title, body, instance_id)
    return written


def _queue_sms(session: Session, config: Config, users: list[User], category: str, title: str, body: str,
               instance_id: int | None) -> Job | None:
    chosen = {r.user_id: r.channels or [] for r in session.scalars(select(UserChannelPref).where(
        UserChannelPref.user_id.in_([u.id for u in users]), UserChannelPref.category == category))}
    recipients: dict[str, User] = {}
    for user in users:
        number = mobile_of(user)
        wants = "sms" in chosen[user.id] if user.id in chosen else category in SMS_BY_DEFAULT
        if number and wants and number not in recipients:
            recipients[number] = user
    if not recipients:
        return None
    job_id = str(uuid.uuid4())
    values = {"title": title[:60], "body": (body or "")[:140]}
    job = Job(id=job_id, kind="service", instance_id=None, task_id=None, status="pending",
              max_attempts=config.job_max_attempts,
              payload={"operation": SMS_OPERATION, "category": category, "instance_id": instance_id,
                       "params": {"to": list(recipients), "template": SMS_TEMPLATE, "values": values}})
    session.add(job)
    session.add_all([SmsMessage(job_id=job_id, to=number, user_id=user.id, template=SMS_TEMPLATE, category=category,
                                status="queued", instance_id=instance_id) for number, user in recipients.items()])
    session.info["jobs_written"] = True
    return job


def record_job(session: Session, job: Job, result=None, error: str | None = None) -> None:
    """Record what an ``sms/Send`` job did in ``sms_message`` rows (any other job is left alone); idempotent."""
    payload = job.payload or {}
    if payload.get("operation") != SMS_OPERATION:
        return
    params = payload.get("params") or {}
    rows = {r.to: r for r in session.scalars(select(SmsMessage).where(SmsMessage.job_id == job.id))}
    now = clock.now()

    def row_for(number: str) -> SmsMessage:
        if number not in rows:
            rows[number] = SmsMessage(job_id=job.id, to=number[:20], template=str(params.get("template", ""))[:64],
                                      category=payload.get("category"), status="queued",
                                      instance_id=job.instance_id or payload.get("instance_id"))
            session.add(rows[number])
        return rows[number]

    if result is not None:
        for item in (result.get("messages") or []) if isinstance(result, dict) else []:
            row = row_for(str(item.get("to", "")))
            if row.receipt_at is not None:  # the gateway's receipt is the last word
                continue
            if item.get("status") == "sent":
                row.status, row.gateway_id, row.error = "sent", item.get("gateway_id"), None
                row.sent_at = row.sent_at or now
            else:
                reason = item.get("reason")
                row.status = "failed"
                row.error = (item.get("status", "rejected") + (f": {reason}" if reason else ""))[:300]
            row.updated_at = now
    elif error is not None:
        for raw in params.get("to") or []:
            row = row_for(re.sub(r"[\s-]", "", str(raw)))
            if row.receipt_at is None:
                row.status, row.error, row.updated_at = "failed", error[:300], now
    session.flush()


def take(session: Session, key: str, idempotency_key: str, limit: int, window_seconds: int) -> bool:
    """Count one use of ``key`` if fewer than ``limit`` fall in the window; a use already counted for this
    idempotency key is allowed again without counting. Concurrent callers of one key queue on a lock."""
    if session.bind.dialect.name == "postgresql":  # SQLite writers are serialized by BEGIN IMMEDIATE already
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
    if session.scalar(select(RateLimitHit.id).where(RateLimitHit.key == key,
                                                    RateLimitHit.idempotency_key == idempotency_key)) is not None:
        return True
    now = clock.now()
    since = now - timedelta(seconds=window_seconds)
    session.execute(delete(RateLimitHit).where(RateLimitHit.key == key, RateLimitHit.at <= since))
    used = session.scalar(select(func.count()).select_from(RateLimitHit).where(RateLimitHit.key == key))
    if used >= limit:
        return False
    session.add(RateLimitHit(key=key, idempotency_key=idempotency_key, at=now))
    session.flush()
    return True


def _receipt_key(session: Session, config: Config) -> str:
    row = session.get(ConnectorConfig, "sms")
    try:
        settings = secrets.resolve(session, config, row.config, []) if row is not None else {}
    except EngineError:
        settings = {}
    key = settings.get("api_key") if isinstance(settings, dict) else None
    if not key:
        raise AuthenticationFailed("the sms connector has no API key to check receipts with", code="bad_signature")
    return key


def apply_receipt(session: Session, config: Config, body: bytes, timestamp: str, signature: str) -> SmsMessage:
    """Apply a signed delivery receipt ``{"id", "status": "delivered"|"failed", "error"}``; a replay changes
    nothing. Raises AuthenticationFailed (bad or stale signature), NotFound (unknown id), ValidationFailed."""
    key = _receipt_key(session, config)
    expected = hmac.new(key.encode(), (timestamp or "").encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature or ""):
        raise AuthenticationFailed("the receipt's signature does not match", code="bad_signature")
    if not timestamp.isdigit() or abs(clock.now().timestamp() - int(timestamp)) > RECEIPT_MAX_AGE:
        raise AuthenticationFailed("the receipt's timestamp is too old or in the future", code="bad_signature")
    try:
        receipt = json.loads(body)
    except ValueError:
        receipt = None
    if not isinstance(receipt, dict) or not isinstance(receipt.get("id"), str) \
            or receipt.get("status") not in ("delivered", "failed"):
        raise ValidationFailed("a receipt is {id, status: delivered|failed, error}",
                               errors={"status": [FieldError("enum").as_dict()]})
    rows = list(session.scalars(select(SmsMessage).where(SmsMessage.gateway_id == receipt["id"])
                                .order_by(SmsMessage.id)))
    if not rows:
        raise NotFound(f"no text message with gateway id {receipt['id']!r}")
    now = clock.now()
    for row in rows:
        if row.receipt_at is None:
            row.status, row.receipt_at, row.updated_at = receipt["status"], now, now
            row.error = (str(receipt.get("error") or "")[:300] or None) if receipt["status"] == "failed" else None
    session.flush()
    return rows[0]
