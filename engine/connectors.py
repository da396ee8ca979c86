"""The connector registry (entry points ``emflow.connectors``) and the context handed to calls."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation

from . import audit, clock, messaging, numbering, secrets
from .config import Config
from .errors import EngineError, Forbidden, NotFound, ValidationFailed
from .forms import MESSAGES, FieldError
from .models import ConnectorConfig, HumanTask, ProcessInstance, User

GROUP = "emflow.connectors"
# Schema rules whose value reads as the limit in a message ("at least 8 characters").
LIMITED = {"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems"}


class Registry:
    """Connector classes by name; instances are built per call, never shared."""

    def __init__(self, classes: dict[str, type[Connector]] | None = None):
        self.classes: dict[str, type[Connector]] = dict(classes or {})

    @classmethod
    def discover(cls) -> Registry:
        """Load every installed connector; a broken one fails loudly, naming itself."""
        classes = {}
        for ep in entry_points(group=GROUP):
            try:
                connector = ep.load()
            except Exception as exc:
                raise RuntimeError(f"connector '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
            if not (isinstance(connector, type) and issubclass(connector, Connector)):
                raise RuntimeError(f"connector '{ep.name}' ({ep.value}) is not a Connector subclass")
            classes[connector.name] = connector
        return cls(classes)

    def register(self, connector: type[Connector]) -> None:
        self.classes[connector.name] = connector

    def operations(self) -> dict[str, Operation]:
        """All operations as 'connector/Operation' -> Operation."""
        return {f"{name}/{op}": spec for name, c in self.classes.items() for op, spec in c.operations.items()}

    def resolve(self, operation_id: str) -> tuple[type[Connector], str]:
        name, _, op = operation_id.partition("/")
        connector = self.classes.get(name)
        if connector is None or op not in connector.operations:
            raise ConnectorError(f"unknown connector operation '{operation_id}'", retryable=False)
        return connector, op

    def describe(self) -> list[dict]:
        return [c.describe() for _, c in sorted(self.classes.items())]


class EngineContext(ConnectorContext):
    """Platform services for one connector call; each service runs in its own short transaction."""

    def __init__(self, db, idempotency_key: str, instance_id: int | None, timeout: float = 30.0,
                 callback_url: str = ""):
        self.db = db
        self.idempotency_key = idempotency_key
        self.instance_id = instance_id
        self.timeout = timeout
        self.callback_url = callback_url

    def now(self) -> datetime:
        return clock.now().astimezone(ZoneInfo(self.db.config.timezone))

    def next_number(self, sequence: str, year: int) -> int:
        with self.db.transaction() as s:
            return numbering.allocate(s, sequence, int(year), f"{self.idempotency_key}:{sequence}:{year}")

    def notify(self, usernames: list[str], title: str, body: str = "", category: str = "reminder") -> int:
        with self.db.transaction() as s:
            users = list(s.scalars(select(User).where(User.username.in_(usernames), User.is_active.is_(True))))
            link = f"/instances/{self.instance_id}" if self.instance_id else ""
            return messaging.send(s, self.db.config, users, category, title, body, link, self.instance_id,
                                  dedupe_key=self.idempotency_key)

    def rate_limit(self, key: str, limit: int, window_seconds: int) -> bool:
        with self.db.transaction() as s:
            return messaging.take(s, key, self.idempotency_key, limit, window_seconds)

    def task_assignees(self, bpmn_id: str) -> list[str]:
        with self.db.session() as s:
            inst = s.get(ProcessInstance, self.instance_id) if self.instance_id else None
            if inst is None:
                return []
            return list(s.scalars(select(User.username).join(HumanTask, HumanTask.assignee_id == User.id).where(
                HumanTask.instance_id == inst.id, HumanTask.bpmn_id == bpmn_id, HumanTask.state == "open")))

    def read_file(self, ref: dict) -> bytes:
        from . import files
        from .models import Attachment

        attachment_id = str(ref.get("id") if isinstance(ref, dict) else ref or "")
        with self.db.session() as s:
            row = s.get(Attachment, attachment_id) if attachment_id else None
            # Only this instance's own files: process data must not reach into other instances.
            if row is None or row.instance_id != self.instance_id:
                raise ConnectorError(f"file {attachment_id!r} not found in this instance", retryable=False,
                                     code="file_not_found")
            return files._path(self.db.config, row.id).read_bytes()

    def store_file(self, name: str, content: bytes, content_type: str) -> dict:
        import io

        from . import files
        from .errors import ValidationFailed

        with self.db.transaction() as s:
            inst = s.get(ProcessInstance, self.instance_id) if self.instance_id else None
            # Attachments need an uploader: the instance's initiator, else the first superuser.
            owner = s.get(User, inst.initiator_id) if inst is not None and inst.initiator_id else None
            owner = owner or s.scalars(select(User).where(User.is_superuser.is_(True)).order_by(User.id)).first()
            if owner is None:
                raise ConnectorError("no user to own the stored file", retryable=False, code="file_rejected")
            try:
                row = files.store(s, self.db.config, owner, name, content_type, io.BytesIO(content))
            except ValidationFailed as exc:
                raise ConnectorError(f"file rejected: {exc}", retryable=False, code="file_rejected") from None
            row.instance_id = self.instance_id
            return {"id": row.id, "filename": row.filename, "content_type": row.content_type, "size": row.size,
                    "sha256": row.sha256}


@dataclass
class Call:
    """One prepared connector call: a fresh connector built from stored config, and its limits."""

    connector: Connector
    operation: str
    spec: Operation
    timeout: float
    max_attempts: int
    secrets: list[str] = field(default_factory=list)

    def run(self, db, params: dict, job_id: str, instance_id: int | None, callback_url: str = ""):
        """Validate the parameters, call, and validate the result; errors carry no secret values."""
        _check(self.spec.params, params, "params_invalid", "parameters")
        context = EngineContext(db, job_id, instance_id, self.timeout, callback_url)
        try:
            result = self.connector.call(self.operation, params, context)
            result = json.loads(json.dumps(result))
        except ConnectorError as exc:
            raise ConnectorError(secrets.redact(str(exc), self.secrets), exc.retryable, exc.code) from None
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"{self.connector.name}/{self.operation} returned something that is not JSON: "
                                 f"{secrets.redact(str(exc), self.secrets)}", retryable=False,
                                 code="result_invalid") from None
        except Exception as exc:  # noqa: BLE001 - an unexpected failure may be transient: retried
            raise ConnectorError(f"{type(exc).__name__}: {secrets.redact(str(exc), self.secrets)}") from None
        _check(self.spec.result, result, "result_invalid", "result")
        if self.secrets:  # an outside system that echoes a credential back must not put it into task data
            text = json.dumps(result, ensure_ascii=False)
            redacted = secrets.redact(text, self.secrets)
            if redacted != text:
                result = json.loads(redacted)
        return result


def _check(schema: dict, value, code: str, what: str) -> None:
    # Only the path and the rule are reported: the value itself may hold a secret or personal data.
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConnectorError(f"{what} do not match the schema at {where}: rule '{error.validator}' failed",
                             retryable=False, code=code)


def prepare(registry: Registry, session: Session, config: Config, operation_id: str,
            settings: dict | None = None) -> Call:
    """Build the connector for one call from its stored configuration (or ``settings``, e.g. a bus
    service's own), with secrets resolved."""
    connector_cls, op = registry.resolve(operation_id)
    spec = connector_cls.operations[op]
    row = session.get(ConnectorConfig, connector_cls.name)
    if row is not None and not row.enabled:
        raise ConnectorError(f"connector '{connector_cls.name}' is disabled", retryable=False, code="disabled")
    found: list[str] = []
    try:
        stored = secrets.resolve(session, config, settings if settings is not None else (row.config if row else {}),
                                 found)
    except EngineError as exc:
        raise ConnectorError(f"connector '{connector_cls.name}': {exc.message}", retryable=False,
                             code="config_invalid") from None
    _check(connector_cls.config_schema, stored, "config_invalid", f"connector '{connector_cls.name}' settings")
    timeout = row.timeout if row is not None and row.timeout else spec.timeout
    retries = row.retries if row is not None and row.retries is not None else spec.retries
    return Call(connector_cls(stored), op, spec, float(timeout), int(retries) + 1, found)


def _callback_mac(key: bytes, job_id: str, message: str) -> str:
    return hmac.new(key, f"{job_id}\n{message}".encode(), hashlib.sha256).hexdigest()[:32]


def callback_token(config: Config, job_id: str, message: str) -> str:
    """The unguessable token in a call's callback URL: the job id and an HMAC binding it to the one message
    the model waits for (the service task's ``callbackMessage``)."""
    return f"{job_id}.{_callback_mac(secrets.signing_keys(config, 'callback')[0], job_id, message)}"


def job_of_token(config: Config, token: str, message: str) -> str | None:
    """The job id a callback token was made for with this message, or None if it is forged or for another
    message. Every configured key is tried, so rotating EMFLOW_SECRETS_KEY keeps callbacks in flight valid."""
    job_id, _, mac = token.partition(".")
    if not job_id or not mac:
        return None
    keys = secrets.signing_keys(config, "callback")
    return job_id if any(hmac.compare_digest(_callback_mac(k, job_id, message), mac) for k in keys) else None


def settings_of(session: Session, registry: Registry, name: str) -> dict:
    """A connector's stored settings as an admin sees them: secret references by name, never values."""
    connector_cls = registry.classes.get(name)
    if connector_cls is None:
        raise NotFound(f"connector '{name}' does not exist")
    row = session.get(ConnectorConfig, name)
    return {"name": name, "title": connector_cls.title, "config_schema": connector_cls.config_schema,
            "config": row.config if row else {}, "enabled": row.enabled if row else True,
            "timeout": row.timeout if row else None, "retries": row.retries if row else None,
            "updated_at": row.updated_at if row else None}


def _secret_fields(schema: dict, path: str = "") -> list[str]:
    """Dotted paths of properties declared ``"format": "secret"``: they must be stored as references."""
    found = []
    for key, sub in (schema.get("properties") or {}).items():
        where = f"{path}{key}"
        if sub.get("format") == "secret":
            found.append(where)
        elif sub.get("type") == "object":
            found.extend(_secret_fields(sub, where + "."))
    return found


def inline_secrets(schema: dict, settings: dict) -> list[str]:
    """Paths of secret fields given as plain values instead of {"$secret": name} references."""
    out = []
    for path in _secret_fields(schema):
        value = settings
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not (isinstance(value, dict) and set(value) == {"$secret"}):
            out.append(path)
    return out


def configure(session: Session, config: Config, registry: Registry, user: User, name: str, settings: dict,
              enabled: bool = True, timeout: float | None = None, retries: int | None = None) -> dict:
    """Store a connector's settings after checking them against its schema with the secrets resolved."""
    if not user.can("connector.admin"):
        raise Forbidden("only integration administrators may configure connectors", code="not_admin")
    current = settings_of(session, registry, name)
    errors: dict[str, list] = {}
    for path in inline_secrets(current["config_schema"], settings):
        errors[f"config.{path}"] = [{"code": "secret_required",
                                     "message": "store this value as a secret and refer to it by name"}]
    if timeout is not None and not 0 < timeout <= 600:
        errors["timeout"] = [FieldError("maximum", 600).as_dict()]
    if retries is not None and not 0 <= retries <= 10:
        errors["retries"] = [FieldError("maximum", 10).as_dict()]
    if not errors:
        found: list[str] = []
        try:
            plain = secrets.resolve(session, config, settings, found)
        except NotFound as exc:
            raise ValidationFailed(exc.message, errors={"config": [{"code": "unknown_secret",
                                                                    "message": exc.message}]}) from None
        for error in Draft202012Validator(current["config_schema"]).iter_errors(plain):
            where = ".".join(str(p) for p in error.absolute_path)
            errors.setdefault(f"config.{where}" if where else "config", []).append(
                FieldError(error.validator if error.validator in MESSAGES else "invalid",
                           error.validator_value if error.validator in LIMITED else None).as_dict())
        if not errors:
            try:  # the connector's own judgement (a missing tool, an endpoint off its allow-list ...)
                registry.classes[name](plain).check()
            except ConnectorError as exc:
                errors["config"] = [{"code": exc.code or "invalid", "message": secrets.redact(str(exc), found)}]
    if errors:
        raise ValidationFailed(f"the settings of connector '{name}' are not valid", errors=errors)
    row = session.get(ConnectorConfig, name) or ConnectorConfig(name=name)
    row.config, row.enabled, row.timeout, row.retries = settings, enabled, timeout, retries
    row.updated_at, row.updated_by_id = clock.now(), user.id
    session.add(row)
    session.flush()
    audit.record_system(session, "connector_configured", user, target=name, enabled=enabled, timeout=timeout,
                        retries=retries, keys=sorted(settings), secrets=sorted(secrets.references(settings)))
    return settings_of(session, registry, name)
