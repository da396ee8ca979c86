"""The connector registry (entry points ``emflow.connectors``) and the context handed to calls."""
from __future__ import annotations

from datetime import datetime
from importlib.metadata import entry_points
from zoneinfo import ZoneInfo

from sqlalchemy import select

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation

from . import clock, notifications, numbering
from .models import HumanTask, ProcessInstance, User

GROUP = "emflow.connectors"


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

    def __init__(self, db, idempotency_key: str, instance_id: int | None):
        self.db = db
        self.idempotency_key = idempotency_key
        self.instance_id = instance_id

    def now(self) -> datetime:
        return clock.now().astimezone(ZoneInfo(self.db.config.timezone))

    def next_number(self, sequence: str, year: int) -> int:
        with self.db.transaction() as s:
            return numbering.allocate(s, sequence, int(year), f"{self.idempotency_key}:{sequence}:{year}")

    def notify(self, usernames: list[str], title: str, body: str = "", category: str = "reminder") -> int:
        with self.db.transaction() as s:
            users = list(s.scalars(select(User).where(User.username.in_(usernames), User.is_active.is_(True))))
            link = f"/instances/{self.instance_id}" if self.instance_id else ""
            return notifications.send(s, users, title, body, category, link, self.instance_id,
                                      dedupe_key=self.idempotency_key)

    def task_assignees(self, bpmn_id: str) -> list[str]:
        with self.db.session() as s:
            inst = s.get(ProcessInstance, self.instance_id) if self.instance_id else None
            if inst is None:
                return []
            return list(s.scalars(select(User.username).join(HumanTask, HumanTask.assignee_id == User.id).where(
                HumanTask.instance_id == inst.id, HumanTask.bpmn_id == bpmn_id, HumanTask.state == "open")))


def run_call(registry: Registry, db, payload: dict, job_id: str, instance_id: int | None):
    """Run one connector operation for a job; the job id is the idempotency key."""
    connector_cls, op = registry.resolve(payload["operation"])
    connector = connector_cls({})
    return connector.call(op, payload.get("params", {}), EngineContext(db, job_id, instance_id))
