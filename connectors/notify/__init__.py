"""Unified messages: the platform writes the in-app notification and sends SMS by each user's channel preferences."""
from __future__ import annotations

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation

CATEGORIES = ["reminder", "urge", "alarm", "cc", "message", "system"]  # as engine/messaging.py


class NotifyConnector(Connector):
    name = "notify"
    title = "站内消息"
    operations = {
        "RemindAssignees": Operation(
            method="remind_assignees",
            description="Send an in-app reminder to whoever holds an open task of this instance.",
            params={"type": "object",
                    "properties": {"task": {"type": "string"}, "title": {"type": "string"},
                                   "body": {"type": "string"}},
                    "required": ["task", "title"]},
            result={"type": "object", "properties": {"sent": {"type": "integer"}}},
        ),
        "Send": Operation(
            method="send",
            description="Send a message to named users: in-app, and by SMS where their preference for the "
                        "category says so (alarms and urges by default).",
            params={"type": "object",
                    "properties": {"to": {"type": "array", "items": {"type": "string"}},
                                   "title": {"type": "string"}, "body": {"type": "string"},
                                   "category": {"enum": CATEGORIES}},
                    "required": ["to", "title"]},
            result={"type": "object", "properties": {"sent": {"type": "integer"}}},
        ),
    }

    def check(self) -> None:
        return None

    def remind_assignees(self, context: ConnectorContext, task: str, title: str, body: str = "") -> dict:
        users = context.task_assignees(task)
        return {"sent": context.notify(users, title, body, category="reminder") if users else 0}

    def send(self, context: ConnectorContext, to: list[str], title: str, body: str = "",
             category: str = "message") -> dict:
        if not isinstance(to, list) or not all(isinstance(u, str) for u in to):
            raise ConnectorError("'to' must be a list of usernames", retryable=False)
        return {"sent": context.notify(to, title, body, category=category)}
