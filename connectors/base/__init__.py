"""The connector protocol: every connector is a small class behind this base, found by entry points.

A connector has a ``name``, a JSON Schema for its configuration, and ``operations``: each a method
with a JSON Schema for its parameters and result. The engine builds a fresh instance per call from
stored configuration and passes a ``ConnectorContext`` through which the platform offers services
(number sequences, in-app notifications, rate limits) without the connector importing the engine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


class ConnectorError(Exception):
    """A call failed. ``retryable`` False means retrying cannot help (bad parameters, refused).

    ``code`` is matched against the ``errorCode`` of a BPMN error boundary event on the service
    task, so a model can route e.g. ``http.404`` differently from other failures.
    """

    def __init__(self, message: str, retryable: bool = True, code: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass(frozen=True)
class Operation:
    """One operation of a connector: its method name and the JSON Schemas of parameters and result."""

    method: str
    params: dict
    result: dict = field(default_factory=lambda: {"type": "object"})
    description: str = ""
    timeout: float = 30.0  # seconds one attempt may take; connectors pass it to their client library
    retries: int = 3  # further attempts after the first, with exponential back-off


class ConnectorContext(ABC):
    """What the platform offers a running connector call."""

    idempotency_key: str  # the same for every attempt of one call: pass it to the outside system
    instance_id: int | None
    timeout: float  # seconds this attempt may take (the operation's timeout unless configured)
    callback_url: str  # where the outside system may answer later; the answer reaches the instance as a message

    @abstractmethod
    def now(self) -> datetime:
        """The platform's current time in its local time zone (Asia/Shanghai by default)."""

    @abstractmethod
    def next_number(self, sequence: str, year: int) -> int:
        """The next value of a gapless yearly sequence; the same key always gets the same value."""

    @abstractmethod
    def notify(self, usernames: list[str], title: str, body: str = "", category: str = "reminder") -> int:
        """Put an in-app notification in each user's inbox; returns how many were written."""

    @abstractmethod
    def task_assignees(self, bpmn_id: str) -> list[str]:
        """Usernames of the people currently holding an open task of this instance."""

    @abstractmethod
    def read_file(self, ref: dict) -> bytes:
        """The content of a stored file of this instance, given the reference a form file field holds."""

    @abstractmethod
    def store_file(self, name: str, content: bytes, content_type: str) -> dict:
        """Store a file for this instance; returns its reference: id, filename, content_type, size, sha256."""

    @abstractmethod
    def rate_limit(self, key: str, limit: int, window_seconds: int) -> bool:
        """True (and counted) if ``key`` had fewer than ``limit`` uses in the window; a retried call counts once."""


class Connector(ABC):
    """Base class of all connectors."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    config_schema: ClassVar[dict] = {"type": "object"}
    operations: ClassVar[dict[str, Operation]] = {}

    def __init__(self, config: dict | None = None):
        self.config = dict(config or {})

    def call(self, operation: str, params: dict, context: ConnectorContext) -> Any:
        """Run one operation; the result must be JSON-serializable."""
        op = self.operations.get(operation)
        if op is None:
            raise ConnectorError(f"{self.name} has no operation '{operation}'", retryable=False)
        return getattr(self, op.method)(context, **params)

    @classmethod
    def describe(cls) -> dict:
        return {
            "name": cls.name,
            "title": cls.title,
            "config_schema": cls.config_schema,
            "operations": {k: {"params": o.params, "result": o.result, "description": o.description}
                           for k, o in cls.operations.items()},
        }

    @abstractmethod
    def check(self) -> None:
        """Raise ConnectorError if the connector's configuration is unusable."""
