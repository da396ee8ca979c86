"""Text messages through an SMS gateway over HTTP: templates, per-recipient rate limits, delivery receipts.

The gateway protocol (what a provider adapter in front of a carrier gateway must speak):

- ``POST {endpoint}`` with JSON ``{"account", "out_id", "template", "sign", "content", "mobiles": [...]}``,
  headers ``Idempotency-Key`` (= ``out_id``, the same for every attempt of one call), ``X-Sms-Account``,
  ``X-Sms-Timestamp`` (Unix seconds) and ``X-Sms-Signature``: hex HMAC-SHA256 of
  ``timestamp + "." + body`` under the account's API key. It answers
  ``{"results": [{"mobile", "id", "status": "accepted" | "rejected", "reason"}]}``.
- Delivery receipts come back as ``POST /api/v1/sms/receipts`` with JSON ``{"id", "status": "delivered" |
  "failed", "error"}``, signed the same way with the same key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
import time
from typing import ClassVar
from urllib.parse import urlsplit

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation, rest
from connectors.base.net import host_allowed

SECRET = {"type": "string", "format": "secret", "minLength": 1}
MOBILE = re.compile(r"^1[3-9]\d{9}$")
MAX_CONTENT = 500  # characters; carriers split long texts, but a runaway template is a mistake


def signature(key: str, timestamp: str, body: bytes) -> str:
    """The gateway signature: hex HMAC-SHA256(key, timestamp + "." + body)."""
    return hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def render(template: str, values: dict) -> str:
    """Fill ``{name}`` placeholders; a missing value or any placeholder other than a plain name is refused."""
    wanted, parts = [], []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConnectorError(f"the template is malformed: {exc}", retryable=False, code="sms.template") from None
    for literal, field, spec, conversion in parsed:
        parts.append(literal)
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ConnectorError(f"placeholder {{{field}}} is not a plain name", retryable=False,
                                 code="sms.template")
        if field not in values:
            wanted.append(field)
            continue
        parts.append(str(values[field]))
    if wanted:
        raise ConnectorError(f"values missing for: {', '.join(sorted(set(wanted)))}", retryable=False,
                             code="sms.values")
    return "".join(parts)


class SmsConnector(Connector):
    name = "sms"
    title = "短信网关"
    config_schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "endpoint": {"type": "string", "minLength": 1, "description": "the gateway's send URL"},
            "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            "account": {"type": "string", "minLength": 1},
            "api_key": SECRET,
            "sign": {"type": "string", "minLength": 1, "maxLength": 20, "description": "短信签名, e.g. 【广西应急】"},
            "templates": {"type": "object", "minProperties": 1,
                          "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_CONTENT},
                          "description": "template code -> text with {placeholders}"},
            "per_recipient_limit": {
                "type": "object",
                "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 1000},
                               "minutes": {"type": "integer", "minimum": 1, "maximum": 7 * 24 * 60}},
                "required": ["count", "minutes"],
                "additionalProperties": False,
            },
            "verify_tls": {"type": "boolean"},
        },
        "required": ["endpoint", "allowed_hosts", "account", "api_key", "sign", "templates"],
        "additionalProperties": False,
    }
    operations: ClassVar[dict] = {
        "Send": Operation(
            method="send",
            description="Send a templated text message to mainland mobile numbers.",
            params={
                "type": "object",
                "properties": {
                    "to": {"type": "array", "minItems": 1, "maxItems": 200, "items": {"type": "string"}},
                    "template": {"type": "string", "minLength": 1},
                    "values": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
                },
                "required": ["to", "template"],
                "additionalProperties": False,
            },
            result={
                "type": "object",
                "properties": {
                    "template": {"type": "string"},
                    "messages": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"to": {"type": "string"},
                                       "status": {"enum": ["sent", "rate_limited", "rejected"]},
                                       "gateway_id": {"type": ["string", "null"]},
                                       "reason": {"type": ["string", "null"]}},
                        "required": ["to", "status", "gateway_id"]}},
                },
                "required": ["messages"],
            },
        ),
    }

    def check(self) -> None:
        if not self.config.get("allowed_hosts") or not self.config.get("endpoint"):
            raise ConnectorError("the gateway endpoint and allowed hosts are not configured", retryable=False,
                                 code="sms.config")
        if not host_allowed(self.config["endpoint"], self.config["allowed_hosts"]):
            raise ConnectorError(f"host of {urlsplit(self.config['endpoint']).netloc!r} is not on the allow-list",
                                 retryable=False, code="sms.forbidden_host")

    def send(self, context: ConnectorContext, to: list[str], template: str, values: dict | None = None) -> dict:
        self.check()
        numbers = []
        for i, raw in enumerate(to, 1):
            number = str(raw).replace(" ", "").replace("-", "")
            if not MOBILE.match(number):  # the number itself stays out of the message: it is personal data
                raise ConnectorError(f"recipient #{i} is not a mainland mobile number", retryable=False,
                                     code="sms.bad_number")
            if number not in numbers:
                numbers.append(number)
        text = self.config.get("templates", {}).get(template)
        if text is None:
            raise ConnectorError(f"unknown template '{template}'", retryable=False, code="sms.unknown_template")
        sign = self.config["sign"].strip()
        content = (sign if sign.startswith("【") else f"【{sign}】") + render(text, values or {})
        if len(content) > MAX_CONTENT:
            raise ConnectorError(f"the message is longer than {MAX_CONTENT} characters", retryable=False,
                                 code="sms.too_long")
        outcome = {n: {"to": n, "status": "rate_limited", "gateway_id": None, "reason": None} for n in numbers}
        limit = self.config.get("per_recipient_limit")
        allowed = [n for n in numbers if not limit
                   or context.rate_limit(f"sms:{n}", int(limit["count"]), int(limit["minutes"]) * 60)]
        if allowed:
            for item in self._post(context, template, content, allowed):
                number = str(item.get("mobile") or "")
                if number in outcome and number in allowed:
                    accepted = item.get("status") == "accepted"
                    outcome[number].update(status="sent" if accepted else "rejected",
                                           gateway_id=str(item["id"]) if item.get("id") else None,
                                           reason=None if accepted else str(item.get("reason") or "")[:200])
            for number in allowed:  # a number the gateway did not answer for was not taken
                if outcome[number]["status"] == "rate_limited":
                    outcome[number].update(status="rejected", reason="no answer from the gateway")
        return {"template": template, "messages": [outcome[n] for n in numbers]}

    def _post(self, context: ConnectorContext, template: str, content: str, numbers: list[str]) -> list[dict]:
        endpoint = self.config["endpoint"]
        body = json.dumps({"account": self.config["account"], "out_id": context.idempotency_key,
                           "template": template, "sign": self.config["sign"], "content": content,
                           "mobiles": numbers}, ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": context.idempotency_key,
                   "X-Sms-Account": self.config["account"], "X-Sms-Timestamp": stamp,
                   "X-Sms-Signature": signature(self.config["api_key"], stamp, body)}
        response = rest.send("POST", endpoint, prefix="sms", allowed=self.config["allowed_hosts"],
                             timeout=context.timeout, headers=headers, content=body,
                             verify_tls=self.config.get("verify_tls", True))
        try:
            results = json.loads(response.content)["results"]
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            snippet = response.content[:200].decode("utf-8", "replace")
            raise ConnectorError(f"the SMS gateway answered something unexpected: {snippet}",
                                 retryable=False, code="sms.malformed") from None
        return results
