"""The ministry's command system (应急管理部指挥系统): incident reports out, instructions back.

``ReportIncident`` pushes a report and returns the ministry's incident id; ``UpdateIncident`` sends
later changes (续报). Both carry the call's idempotency key, so a retried report is not filed twice.
Instructions (指示) arrive by webhook, signed with ``webhook_secret``, and the platform delivers them to
the waiting instance as the message ``ministry.instruction``.
"""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation
from connectors.base.rest import send

SECRET = {"type": "string", "format": "secret", "minLength": 1}
LEVELS = ["特别重大", "重大", "较大", "一般"]
COUNT = {"type": "integer", "minimum": 0}
CASUALTIES = {"type": "object", "properties": {"deaths": COUNT, "injured": COUNT, "missing": COUNT, "trapped": COUNT},
              "additionalProperties": False}
REPORT = {
    "title": {"type": "string", "minLength": 1, "maxLength": 200},
    "level": {"enum": LEVELS},
    "region": {"type": "string", "pattern": "^[0-9]{6}$", "description": "administrative division code"},
    "occurred_at": {"type": "string", "minLength": 10},
    "casualties": CASUALTIES,
    "description": {"type": "string", "maxLength": 10000},
    "reporter": {"type": "string", "minLength": 1},
}


class MinistryConnector(Connector):
    name = "ministry"
    title = "应急管理部指挥系统"
    config_schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "base_url": {"type": "string", "minLength": 1},
            "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            "token": {**SECRET, "description": "bearer token issued by the ministry"},
            "webhook_secret": {**SECRET, "description": "key of the HMAC-SHA256 in X-Ministry-Signature"},
            "verify_tls": {"type": "boolean"},
        },
        "required": ["base_url", "allowed_hosts", "token"],
        "additionalProperties": False,
    }
    operations: ClassVar[dict] = {
        "ReportIncident": Operation(
            method="report_incident", timeout=30, retries=5,
            description="File an incident report (首报) with the ministry; returns its incident id.",
            params={"type": "object", "properties": REPORT,
                    "required": ["title", "level", "region", "occurred_at", "reporter"], "additionalProperties": False},
            result={"type": "object", "properties": {"incident_id": {"type": "string", "minLength": 1}},
                    "required": ["incident_id"]},
        ),
        "UpdateIncident": Operation(
            method="update_incident", timeout=30, retries=5,
            description="Send changes to a reported incident (续报): level, casualties, description, status.",
            params={"type": "object", "properties": {
                "incident_id": {"type": "string", "minLength": 1}, "level": REPORT["level"],
                "casualties": CASUALTIES, "description": REPORT["description"], "reporter": REPORT["reporter"],
                "status": {"enum": ["处置中", "已控制", "已结束"]}},
                "required": ["incident_id"], "minProperties": 2, "additionalProperties": False},
            result={"type": "object", "required": ["incident_id", "status"]},
        ),
    }

    def check(self) -> None:
        if not self.config.get("base_url") or not self.config.get("allowed_hosts") or not self.config.get("token"):
            raise ConnectorError("the ministry's base_url, allowed_hosts and token must be configured",
                                 retryable=False, code="ministry.config")

    def _post(self, context: ConnectorContext, method: str, path: str, body: dict):
        self.check()
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.config['token']}",
                   "Idempotency-Key": context.idempotency_key}
        return send(method, f"{self.config['base_url'].rstrip('/')}{path}", prefix="ministry",
                    allowed=self.config["allowed_hosts"], timeout=context.timeout, headers=headers, body=body,
                    verify_tls=self.config.get("verify_tls", True))

    def report_incident(self, context: ConnectorContext, **report) -> dict:
        answer = self._post(context, "POST", "/api/incidents", report).json("ministry", "POST /api/incidents")
        incident_id = (answer.get("incident_id") or answer.get("id")) if isinstance(answer, dict) else None
        if incident_id in (None, ""):
            raise ConnectorError("the ministry's answer carries no incident id", retryable=False,
                                 code="ministry.malformed")
        return {"incident_id": str(incident_id)}

    def update_incident(self, context: ConnectorContext, incident_id: str, **changes) -> dict:
        self._post(context, "PATCH", f"/api/incidents/{quote(incident_id, safe='')}", changes)
        return {"incident_id": incident_id, "status": "updated"}
