"""REST calls to outside systems: allow-listed hosts only, auth from secrets, an idempotency key on every call."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import ClassVar
from urllib.parse import urljoin, urlsplit

import httpx

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation, rest
from connectors.base.net import host_allowed  # re-exported: tests and callers import it from here

SECRET = {"type": "string", "format": "secret", "minLength": 1}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Headers the platform sets itself; process data may not override them.
RESERVED = {"authorization", "idempotency-key", "host", "content-length", "x-emflow-callback", "x-emflow-signature",
            "x-emflow-timestamp", "cookie"}
RESPONSE_HEADERS = ("content-type", "location", "etag", "retry-after", "x-request-id")


class HttpConnector(Connector):
    name = "http"
    title = "HTTP 接口调用"
    config_schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                              "description": "host, host:port or *.domain; nothing else can be called"},
            "base_url": {"type": "string", "description": "relative URLs in calls are resolved against it"},
            "auth": {
                "type": "object",
                "properties": {
                    "scheme": {"enum": ["none", "bearer", "basic", "api_key", "hmac"]},
                    "token": SECRET, "username": {"type": "string"}, "password": SECRET,
                    "header": {"type": "string", "description": "header carrying the API key"},
                    "key": SECRET,
                },
                "required": ["scheme"],
            },
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "verify_tls": {"type": "boolean"},
            "max_response_bytes": {"type": "integer", "minimum": 1024, "maximum": 50 * 1024 * 1024},
        },
        "required": ["allowed_hosts"],
        "additionalProperties": False,
    }
    operations: ClassVar[dict] = {
        "Request": Operation(
            method="request",
            description="Call a REST endpoint on an allow-listed host and return its status, headers and body.",
            params={
                "type": "object",
                "properties": {
                    "method": {"enum": list(METHODS)},
                    "url": {"type": "string", "minLength": 1},
                    "query": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "json": {},
                    "form": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
                    "expect": {"enum": ["json", "text"]},
                },
                "required": ["url"],
                "additionalProperties": False,
            },
            result={
                "type": "object",
                "properties": {"status": {"type": "integer"}, "headers": {"type": "object"}, "body": {}},
                "required": ["status", "body"],
            },
        ),
    }

    def check(self) -> None:
        if not self.config.get("allowed_hosts"):
            raise ConnectorError("no allowed hosts are configured", retryable=False, code="http.config")

    def request(self, context: ConnectorContext, url: str, method: str = "GET", query: dict | None = None,
                headers: dict | None = None, json: object = None, form: dict | None = None,
                expect: str = "json") -> dict:
        self.check()
        target = urljoin(self.config.get("base_url") or "", url)
        if not host_allowed(target, self.config["allowed_hosts"]):
            raise ConnectorError(f"host of {urlsplit(target).netloc or target!r} is not on the allow-list",
                                 retryable=False, code="http.forbidden_host")
        if json is not None and form is not None:
            raise ConnectorError("send either json or form, not both", retryable=False, code="http.bad_request")
        sent = {**self.config.get("headers", {}), **{k: v for k, v in (headers or {}).items()
                                                     if k.lower() not in RESERVED}}
        sent["Idempotency-Key"] = context.idempotency_key
        if getattr(context, "callback_url", ""):
            sent["X-Emflow-Callback"] = context.callback_url
        body = _encode(json, form)
        sent.update(self._auth(method, target, body))
        if form is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif json is not None:
            sent["Content-Type"] = "application/json"
        return self._send(context, method, target, query, sent, body, expect)

    def _auth(self, method: str, url: str, body: bytes) -> dict:
        auth = self.config.get("auth") or {"scheme": "none"}
        scheme = auth["scheme"]
        if scheme == "bearer":
            return {"Authorization": f"Bearer {auth['token']}"}
        if scheme == "basic":
            raw = f"{auth.get('username', '')}:{auth['password']}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if scheme == "api_key":
            return {auth.get("header") or "X-API-Key": auth["key"]}
        if scheme == "hmac":
            # The receiver recomputes HMAC-SHA256(key, timestamp + method + path + body) and checks the age.
            stamp = str(int(time.time()))
            path = urlsplit(url).path or "/"
            mac = hmac.new(auth["key"].encode(), stamp.encode() + method.encode() + path.encode() + body,
                           hashlib.sha256).hexdigest()
            return {"X-Emflow-Timestamp": stamp, "X-Emflow-Signature": mac}
        return {}

    def _send(self, context, method, url, query, headers, body, expect) -> dict:
        response = rest.send(method, url, prefix="http", allowed=self.config["allowed_hosts"], timeout=context.timeout,
                             headers=headers, content=body, params=query,
                             max_bytes=int(self.config.get("max_response_bytes", 5 * 1024 * 1024)),
                             verify_tls=self.config.get("verify_tls", True))
        kept = {k: response.headers[k] for k in RESPONSE_HEADERS if k in response.headers}
        return {"status": response.status, "headers": kept, "body": _decode(response.content, expect, method, url)}


def _encode(body: object, form: dict | None) -> bytes:
    if form is not None:
        return httpx.QueryParams({k: str(v) for k, v in form.items()}).__str__().encode()
    if body is not None:
        return json.dumps(body, ensure_ascii=False).encode()
    return b""


def _decode(content: bytes, expect: str, method: str, url: str):
    text = content.decode("utf-8", "replace")
    if expect == "text" or not content:
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ConnectorError(f"{method} {url} did not answer JSON: {text[:200]}", retryable=False,
                             code="http.malformed") from None
