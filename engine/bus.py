"""The service bus (服务总线): a catalogue of services, consumers with API keys, calls and usage statistics.

Outside REST and SOAP services are called through the http and soap connectors with the service's own
settings; internal services publish a connector operation, a straight-through process, or a saved query
over process instances. The catalogue is read on every call, so a change applies to the next call
without a restart.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets as pysecrets
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import ConnectorError

from . import audit, clock, instances, secrets
from .config import Config
from .connectors import Registry, inline_secrets, prepare
from .errors import AuthenticationFailed, Conflict, EngineError, Forbidden, NotFound, RateLimited, ValidationFailed
from .forms import FieldError
from .models import BusCall, BusConsumer, BusService, User
from .runtime import instance_data
from .versions import latest_version_id

log = logging.getLogger("emflow.bus")

KINDS = ("rest", "soap", "connector", "process", "query")
KEY = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
OPERATION = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
RESERVED_OPERATIONS = {"soap", "wsdl"}  # the gateway's own routes under /services/{service}/
KEEP_CHARS = 4000  # of each request and response in the call log
SENSITIVE = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|credential|身份证", re.I)

_AUTH = {"type": "object", "properties": {"scheme": {"enum": ["none", "bearer", "basic", "api_key", "hmac"]}},
         "required": ["scheme"]}
_OPERATIONS = {"type": "object", "minProperties": 1, "propertyNames": {"pattern": OPERATION.pattern}}
DEFINITIONS = {
    "rest": {"type": "object", "required": ["base_url", "operations"], "properties": {
        "base_url": {"type": "string", "pattern": "^https?://"}, "auth": _AUTH, "timeout": {"type": "number"},
        "operations": {**_OPERATIONS, "additionalProperties": {"type": "object", "required": ["method", "path"],
                                                               "properties": {
                                                                   "method": {"enum": ["GET", "POST", "PUT", "PATCH",
                                                                                       "DELETE"]},
                                                                   "path": {"type": "string", "pattern": "^/"},
                                                                   "params": {"type": "object"},
                                                                   "result": {"type": "object"}}}}}},
    "soap": {"type": "object", "required": ["wsdl", "operations"], "properties": {
        "wsdl": {"type": "string", "pattern": "^https?://"}, "auth": {"type": "object"},
        "allowed_hosts": {"type": "array", "items": {"type": "string"}}, "timeout": {"type": "number"},
        "operations": {**_OPERATIONS, "additionalProperties": {"type": "object", "properties": {
            "soap_operation": {"type": "string"}, "params": {"type": "object"}, "result": {"type": "object"}}}}}},
    "connector": {"type": "object", "required": ["operations"], "properties": {
        "operations": {**_OPERATIONS, "additionalProperties": {"type": "object", "required": ["operation"],
                                                               "properties": {"operation": {"type": "string"}}}}}},
    "process": {"type": "object", "required": ["operations"], "properties": {
        "operations": {**_OPERATIONS, "additionalProperties": {"type": "object", "required": ["process_key"],
                                                               "properties": {
                                                                   "process_key": {"type": "string"},
                                                                   "outputs": {"type": "array",
                                                                               "items": {"type": "string"}},
                                                                   "params": {"type": "object"}}}}}},
    "query": {"type": "object", "required": ["operations"], "properties": {
        "operations": {**_OPERATIONS, "additionalProperties": {"type": "object", "required": ["process_key", "fields"],
                                                               "properties": {
                                                                   "process_key": {"type": "string"},
                                                                   "status": {"type": "string"},
                                                                   "fields": {"type": "array", "minItems": 1,
                                                                              "items": {"type": "string"}},
                                                                   "limit": {"type": "integer", "minimum": 1,
                                                                             "maximum": 500}}}}}},
}


def require_admin(user: User) -> None:
    if not user.can("bus.admin"):
        raise Forbidden("only service-bus administrators may do this", code="not_admin")


# -- catalogue ---------------------------------------------------------------------------------------------


def save_service(session: Session, registry: Registry, user: User, key: str, name: str, kind: str,
                 definition: dict, description: str = "", enabled: bool = True) -> BusService:
    """Register or change a service; it applies to the next call."""
    require_admin(user)
    errors: dict[str, list] = {}
    if not isinstance(key, str) or not KEY.match(key):
        errors["key"] = [FieldError("pattern").as_dict()]
    if not (name or "").strip():
        errors["name"] = [FieldError("required").as_dict()]
    if kind not in KINDS:
        errors["kind"] = [FieldError("enum").as_dict()]
    else:
        for error in Draft202012Validator(DEFINITIONS[kind]).iter_errors(definition):
            where = ".".join(str(p) for p in error.absolute_path)
            errors.setdefault(f"definition.{where}" if where else "definition", []).append(
                {"code": error.validator, "message": error.message[:200]})
    if not errors:
        _check_operations(session, registry, kind, definition, errors)
        _check_secrets(registry, user, kind, definition, errors)
    if errors:
        raise ValidationFailed("the service definition is not valid", errors=errors)
    row = session.get(BusService, key)
    if row is None:
        row = BusService(key=key, revision=0)
        session.add(row)
    row.name, row.kind, row.description, row.definition, row.enabled = name.strip(), kind, description, \
        definition, enabled
    row.revision += 1
    row.updated_at, row.updated_by_id = clock.now(), user.id
    session.flush()
    audit.record_system(session, "bus_service_saved", user, target=key, service_kind=kind, revision=row.revision,
                        operations=sorted(definition["operations"]), enabled=enabled)
    return row


def _check_secrets(registry: Registry, user: User, kind: str, definition: dict, errors: dict) -> None:
    """Credentials only as secret references, and only integration administrators may refer to secrets: a
    service's address is chosen by its author, so a reference is a way to send that secret there."""
    if kind not in ("rest", "soap"):
        return
    connector = registry.classes.get("http" if kind == "rest" else "soap")
    schema = connector.config_schema if connector else {"type": "object"}
    for path in inline_secrets(schema, {"auth": definition.get("auth") or {}}):
        errors[f"definition.{path}"] = [{"code": "secret_required",
                                         "message": "store this value as a secret and refer to it by name"}]
    if secrets.references(definition) and not user.can("connector.admin"):
        errors["definition.auth"] = [{"code": "not_admin",
                                      "message": "only integration administrators may use stored secrets"}]


def _check_operations(session: Session, registry: Registry, kind: str, definition: dict, errors: dict) -> None:
    for name, op in definition["operations"].items():
        if name in RESERVED_OPERATIONS:
            errors[f"definition.operations.{name}"] = [{"code": "reserved", "message": "a reserved name"}]
        for part in ("params", "result"):
            if part in op:
                try:
                    Draft202012Validator.check_schema(op[part])
                except SchemaError as exc:
                    errors[f"definition.operations.{name}.{part}"] = [{"code": "schema", "message": exc.message}]
        if kind == "connector":
            try:
                registry.resolve(op["operation"])
            except ConnectorError as exc:
                errors[f"definition.operations.{name}.operation"] = [{"code": "unknown", "message": str(exc)}]
        elif kind in ("process", "query"):
            try:
                latest_version_id(session, op["process_key"])
            except NotFound as exc:
                errors[f"definition.operations.{name}.process_key"] = [{"code": "unknown", "message": exc.message}]


def delete_service(session: Session, user: User, key: str) -> None:
    require_admin(user)
    row = session.get(BusService, key)
    if row is None:
        raise NotFound(f"service '{key}' does not exist")
    session.delete(row)
    session.flush()
    audit.record_system(session, "bus_service_deleted", user, target=key)


def _schemas(service: BusService, registry: Registry, name: str) -> dict:
    """The parameter and result schemas of one operation (a connector operation's own unless overridden)."""
    op = service.definition["operations"][name]
    params, result = op.get("params"), op.get("result")
    if service.kind == "connector":
        connector, op_name = registry.resolve(op["operation"])
        params = params or connector.operations[op_name].params
        result = result or connector.operations[op_name].result
    return {"params": params or {"type": "object"}, "result": result or {"type": "object"}}


def catalogue(session: Session, registry: Registry, consumer: BusConsumer | None = None) -> list[dict]:
    """Enabled services with their operations and schemas; for a consumer, only what it may call."""
    out = []
    for service in session.scalars(select(BusService).where(BusService.enabled.is_(True)).order_by(BusService.key)):
        ops = {n: _schemas(service, registry, n) for n in service.definition["operations"]
               if consumer is None or permitted(consumer, service.key, n)}
        if ops:
            out.append({"key": service.key, "name": service.name, "kind": service.kind,
                        "description": service.description, "revision": service.revision, "operations": ops})
    return out


# -- consumers and their keys ------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str, str]:
    key = "emf_" + pysecrets.token_urlsafe(32)
    return key, key[:12], _hash(key)


def save_consumer(session: Session, user: User, name: str, permissions: list[str], rate_per_minute: int = 600,
                  run_as: str | None = None, enabled: bool = True, consumer_id: int | None = None
                  ) -> tuple[BusConsumer, str | None]:
    """Create a consumer (returns its API key, shown once) or change one (key None)."""
    require_admin(user)
    errors: dict[str, list] = {}
    if not (name or "").strip():
        errors["name"] = [FieldError("required").as_dict()]
    bad = [p for p in permissions if not isinstance(p, str) or not re.match(r"^[a-z][a-z0-9_-]*/(\*|[A-Za-z]\w*)$", p)]
    if bad:
        errors["permissions"] = [{"code": "pattern", "message": f"not 'service/operation' or 'service/*': {bad[0]}"}]
    if not 1 <= int(rate_per_minute) <= 100_000:
        errors["rate_per_minute"] = [FieldError("maximum", 100_000).as_dict()]
    runner = None
    if run_as:
        runner = session.scalar(select(User).where(User.username == run_as, User.is_active.is_(True)))
        if runner is None:
            errors["run_as"] = [FieldError("unknown_user", run_as).as_dict()]
        elif not user.is_superuser and (runner.is_superuser or not _grants(user) >= _grants(runner)):
            # A consumer acts as this user: nobody may hand outsiders more rights than they hold themselves.
            errors["run_as"] = [{"code": "not_allowed", "message": "this user holds rights you do not"}]
    if errors:
        raise ValidationFailed("the consumer is not valid", errors=errors)
    key = None
    if consumer_id is None:
        if session.scalar(select(BusConsumer.id).where(BusConsumer.name == name.strip())):
            raise Conflict(f"a consumer named '{name}' exists", code="consumer_exists")
        key, prefix, digest = _new_key()
        row = BusConsumer(key_prefix=prefix, key_hash=digest)
        session.add(row)
    else:
        row = session.get(BusConsumer, consumer_id)
        if row is None:
            raise NotFound(f"consumer {consumer_id} does not exist")
    row.name, row.permissions, row.rate_per_minute = name.strip(), sorted(set(permissions)), int(rate_per_minute)
    row.run_as_id, row.enabled = runner.id if runner else None, enabled
    session.flush()
    audit.record_system(session, "bus_consumer_saved", user, target=row.name, permissions=row.permissions,
                        rate_per_minute=row.rate_per_minute, run_as=run_as, enabled=enabled, new_key=key is not None)
    return row, key


def _grants(user: User) -> set[str]:
    return {p for role in user.roles for p in (role.permissions or [])}


def rotate_key(session: Session, user: User, consumer_id: int) -> str:
    """Replace a consumer's API key; the old one stops working at once."""
    require_admin(user)
    row = session.get(BusConsumer, consumer_id)
    if row is None:
        raise NotFound(f"consumer {consumer_id} does not exist")
    key, row.key_prefix, row.key_hash = _new_key()
    audit.record_system(session, "bus_key_rotated", user, target=row.name)
    return key


def authenticate(session: Session, key: str | None) -> BusConsumer:
    """The consumer an API key belongs to; one error for unknown, wrong and disabled keys."""
    if key:
        for row in session.scalars(select(BusConsumer).where(BusConsumer.key_prefix == key[:12])):
            if hmac.compare_digest(row.key_hash, _hash(key)) and row.enabled:
                return row
    raise AuthenticationFailed("a valid API key is required (X-API-Key)", code="api_key_invalid")


def permitted(consumer: BusConsumer, service: str, operation: str) -> bool:
    return f"{service}/{operation}" in consumer.permissions or f"{service}/*" in consumer.permissions


class RateLimiter:
    """Calls per consumer per minute: in Redis when configured (shared by every web process), else in memory."""

    def __init__(self, redis_url: str | None = None):
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)
        self._counts: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def allow(self, consumer_id: int, limit: int) -> int:
        """0 if the call may go ahead, else the seconds until the next window."""
        now = clock.now().timestamp()
        window = int(now // 60)
        if self._redis is not None:
            name = f"emflow:bus:rate:{consumer_id}:{window}"
            pipe = self._redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, 120)
            count = pipe.execute()[0]
        else:
            with self._lock:
                count = self._counts.get((consumer_id, window), 0) + 1
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
                self._counts[(consumer_id, window)] = count
        return 0 if count <= limit else max(1, int((window + 1) * 60 - now))


# -- calls -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the gateway answers: a status and a JSON body, plus what to keep in the log."""

    status: int
    body: dict
    error: str | None = None

    @classmethod
    def refused(cls, exc: EngineError) -> Outcome:
        """The answer to a call refused with ``exc``: the API's error body."""
        return cls(exc.status, {"code": exc.code, "status": exc.status, "message": exc.message, "errors": exc.errors},
                   exc.message)


def call(db, config: Config, registry: Registry, limiter: RateLimiter, consumer_key: str | None, service_key: str,
         operation: str, arguments, idempotency_key: str | None = None, protocol: str = "json") -> Outcome:
    """One gateway call: authenticate, authorise, rate-limit, validate, dispatch, log. Never raises for the
    outside system's failures; they become 502/504 outcomes that are logged like any other."""
    started = time.perf_counter()
    found: list[str] = []
    refused: EngineError | None = None
    with db.session() as s:
        try:
            consumer = authenticate(s, consumer_key)
        except AuthenticationFailed:
            _log_keyless(service_key, operation)
            raise
        consumer_id, run_as_id, rate = consumer.id, consumer.run_as_id, consumer.rate_per_minute
        try:
            service = s.get(BusService, service_key)
            if service is None or not service.enabled or operation not in service.definition["operations"]:
                raise NotFound(f"service operation '{service_key}/{operation}' does not exist",
                               code="no_such_service")
            if not permitted(consumer, service_key, operation):
                raise Forbidden(f"this consumer may not call '{service_key}/{operation}'", code="not_permitted")
            wait = limiter.allow(consumer_id, rate)
            if wait:
                raise RateLimited(f"more than {rate} calls per minute", retry_after=wait)
            if not isinstance(arguments, dict):
                raise ValidationFailed("the arguments must be a JSON object",
                                       errors={"arguments": [FieldError("type", "object").as_dict()]})
            _validate(_schemas(service, registry, operation)["params"], arguments)
            kind, definition = service.kind, service.definition
            try:
                # The outside call's connector is built in this same short read, before any waiting on the network.
                outbound = _outbound(registry, s, config, kind, definition, operation, arguments, found)
            except ConnectorError as exc:
                outbound = exc
        except EngineError as exc:
            refused = exc
    # A known consumer's refused call counts in its statistics like any other, except over its rate limit: a
    # write per refused call would undo the limiter's shedding of load.
    if refused is not None and not isinstance(refused, RateLimited):
        _log(db, service_key, operation, consumer_id, protocol, Outcome.refused(refused), arguments, found,
             (time.perf_counter() - started) * 1000)
    if refused is not None:
        raise refused
    try:
        if isinstance(outbound, ConnectorError):
            raise outbound
        if outbound is not None:
            prepared, params = outbound
            # The caller's key is namespaced: it must not collide with another consumer's or the platform's own
            # keys (they drive de-duplication, document numbers and per-recipient rate limits).
            key = f"bus:{consumer_id}:{(idempotency_key or str(uuid.uuid4()))[:64]}"
            result = prepared.run(db, params, key, None)
            body = result["body"] if kind == "rest" else result
        else:
            body = _internal(db, config, kind, definition["operations"][operation], arguments, run_as_id)
        outcome = Outcome(200, body)
    except ConnectorError as exc:
        message = secrets.redact(str(exc), found)
        status = 504 if exc.code and exc.code.endswith("timeout") else 502
        outcome = Outcome(status, {"code": exc.code or "upstream_failed", "status": status, "message": message,
                                   "errors": {}}, message)
    except EngineError as exc:
        outcome = Outcome.refused(exc)
    _log(db, service_key, operation, consumer_id, protocol, outcome, arguments, found,
         (time.perf_counter() - started) * 1000)
    return outcome


def refuse(db, consumer_key: str | None, service_key: str, operation: str, protocol: str, error: EngineError) -> None:
    """Log a call refused before call() could read it (a body that is not JSON, a SOAP envelope that cannot be
    read, a service the consumer cannot see): in the consumer's call log, like call()'s own refusals, so whoever
    looks into a partner's failing calls finds them; without a valid key only in the server log, as call() does."""
    with db.session() as s:
        try:
            consumer_id = authenticate(s, consumer_key).id
        except AuthenticationFailed:
            _log_keyless(service_key, operation)
            return
    _log(db, service_key, operation, consumer_id, protocol, Outcome.refused(error), None, [], 0.0)


def _log_keyless(service_key: str, operation: str) -> None:
    # Not in the call log: there is no consumer to count it against, and anyone can send these.
    log.warning("gateway: a call to %s/%s without a valid API key was refused", service_key[:64], operation[:128])


def _validate(schema: dict, arguments: dict) -> None:
    errors: dict[str, list] = {}
    for error in Draft202012Validator(schema).iter_errors(arguments):
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        errors.setdefault(where, []).append({"code": error.validator, "message": error.message[:200]})
    if errors:
        raise ValidationFailed("the arguments do not match the operation's schema", errors=errors)


def _outbound(registry, session, config, kind, definition, operation, arguments, found):
    """(prepared connector call, its parameters) for rest, soap and connector services; None for internal ones."""
    op = definition["operations"][operation]
    if kind == "rest":
        operation_id, params = "http/Request", _rest_params(definition["base_url"], op, arguments)
        settings = {"allowed_hosts": [urlsplit(definition["base_url"]).netloc],
                    "auth": definition.get("auth") or {"scheme": "none"}}
    elif kind == "soap":
        operation_id, params = "soap/Call", {"operation": op.get("soap_operation") or operation,
                                             "arguments": arguments}
        settings = {k: v for k, v in definition.items() if k in ("wsdl", "auth", "allowed_hosts")}
        settings.setdefault("allowed_hosts", [urlsplit(definition["wsdl"]).netloc])
    elif kind == "connector":
        operation_id, params, settings = op["operation"], arguments, None
    else:
        return None
    prepared = prepare(registry, session, config, operation_id, settings)
    if "timeout" in definition:
        prepared.timeout = float(definition["timeout"])
    found.extend(prepared.secrets)
    return prepared, params


def _internal(db, config, kind, op, arguments, run_as_id) -> dict:
    """A straight-through process or a saved query, run as the consumer's platform user."""
    with db.transaction() as s:
        runner = s.get(User, run_as_id) if run_as_id else None
        if runner is None or not runner.is_active:
            raise Forbidden("internal services need a consumer that runs as a platform user", code="no_run_as")
        if kind == "process":
            inst = instances.start(s, config, runner, op["process_key"], data=arguments,
                                   business_key=arguments.get("business_key") if isinstance(
                                       arguments.get("business_key"), str) else None)
            if inst.status != "completed":
                return {"instance_id": inst.id, "status": inst.status, "completed": False}
            data = instance_data(s, inst)
            outputs = op.get("outputs") or [k for k in data if not k.startswith("_")]
            return {"instance_id": inst.id, "status": inst.status, "completed": True,
                    "result": {k: data.get(k) for k in outputs}}
        return _query(s, runner, op, arguments)


def _rest_params(base_url: str, op: dict, arguments: dict) -> dict:
    path, rest = op["path"], dict(arguments)
    for name in re.findall(r"{(\w+)}", path):
        if name not in rest:
            raise ValidationFailed(f"missing path argument '{name}'", errors={name: [FieldError("required").as_dict()]})
        path = path.replace("{" + name + "}", quote(str(rest.pop(name)), safe=""))
    params = {"method": op["method"], "url": base_url.rstrip("/") + path}  # the base's own path is kept
    if op["method"] in ("GET", "DELETE"):
        params["query"] = {k: v for k, v in rest.items() if isinstance(v, (str, int, float, bool))}
    else:
        params["json"] = rest
    return params


def _query(session: Session, runner: User, op: dict, arguments: dict) -> dict:
    filters = instances.Filters(process_key=op["process_key"], status=op.get("status") or arguments.get("status"),
                                business_key=arguments.get("business_key"))
    limit = int(op.get("limit", 100))
    rows, total = instances.query(session, runner, filters, 1, limit)
    items = []
    for inst in rows:
        data = instance_data(session, inst)
        items.append({"instance_id": inst.id, "business_key": inst.business_key, "status": inst.status,
                      "created_at": inst.created_at.isoformat(), **{f: data.get(f) for f in op["fields"]}})
    return {"items": items, "total": total}


def _kept(value, found: list[str]) -> str:
    """What the log keeps: JSON with sensitive-looking fields masked and known secret values removed."""
    def mask(v):
        if isinstance(v, dict):
            return {k: secrets.REDACTED if SENSITIVE.search(str(k)) else mask(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mask(x) for x in v]
        return v
    text = json.dumps(mask(value), ensure_ascii=False, default=str)
    return secrets.redact(text, found)[:KEEP_CHARS]


def _log(db, service, operation, consumer_id, protocol, outcome: Outcome, arguments, found, latency_ms) -> None:
    with db.transaction() as s:
        s.add(BusCall(service=service[:64], operation=operation[:128], consumer_id=consumer_id, protocol=protocol,
                      ok=outcome.status < 400, status=outcome.status, latency_ms=round(latency_ms, 3),
                      request=_kept(arguments, found), response=_kept(outcome.body, found),
                      error=outcome.error[:2000] if outcome.error else None, at=clock.now()))
        s.execute(update(BusConsumer).where(BusConsumer.id == consumer_id).values(last_used_at=clock.now()))


# -- usage statistics --------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 2)


def usage(session: Session, user: User, config: Config, day_from: date, day_to: date, service: str | None = None,
          consumer_id: int | None = None) -> list[dict]:
    """Calls, errors and latency percentiles per day, service, operation and consumer (days in local time)."""
    require_admin(user)
    tz = ZoneInfo(config.timezone)
    start = datetime.combine(day_from, datetime.min.time(), tz)
    end = datetime.combine(day_to + timedelta(days=1), datetime.min.time(), tz)
    stmt = select(BusCall.at, BusCall.service, BusCall.operation, BusCall.consumer_id, BusCall.ok,
                  BusCall.latency_ms).where(BusCall.at >= start, BusCall.at < end)
    if service:
        stmt = stmt.where(BusCall.service == service)
    if consumer_id:
        stmt = stmt.where(BusCall.consumer_id == consumer_id)
    groups: dict[tuple, list] = defaultdict(list)
    for at, svc, op, cid, ok, latency in session.execute(stmt):
        groups[(at.astimezone(tz).date().isoformat(), svc, op, cid)].append((ok, latency))
    names = dict(session.execute(select(BusConsumer.id, BusConsumer.name)).all())
    out = []
    for (day, svc, op, cid), calls in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2],
                                                                            kv[0][3] or 0)):
        latencies = [lat for _, lat in calls]
        out.append({"day": day, "service": svc, "operation": op, "consumer_id": cid, "consumer": names.get(cid),
                    "calls": len(calls), "errors": sum(1 for ok, _ in calls if not ok),
                    "p50_ms": _percentile(latencies, 0.5), "p95_ms": _percentile(latencies, 0.95),
                    "p99_ms": _percentile(latencies, 0.99), "avg_ms": round(sum(latencies) / len(latencies), 2)})
    return out


def recent_calls(session: Session, user: User, service: str | None = None, limit: int = 50) -> list[BusCall]:
    """The latest logged calls, newest first."""
    require_admin(user)
    stmt = select(BusCall).order_by(BusCall.at.desc(), BusCall.id.desc()).limit(limit)
    if service:
        stmt = stmt.where(BusCall.service == service)
    return list(session.scalars(stmt))
