"""The provincial government OA system (政务 OA): incoming documents (来文) and reports back on them.

The OA announces documents by webhook (signed with ``webhook_secret``, handled by the platform) or
answers ``FetchNew`` polls; ``Download`` fetches a document's file into the platform's file store;
``ReportReceipt`` (签收) and ``ReportCompletion`` (办结) tell the OA what became of a document, with the
call's idempotency key so that a retried report is recognised.
"""
from __future__ import annotations

import os
from typing import ClassVar
from urllib.parse import quote, urlsplit

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation
from connectors.base.rest import send

SECRET = {"type": "string", "format": "secret", "minLength": 1}
TEXT = {"type": "string"}
DOCUMENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1}, "title": TEXT, "issuer": TEXT, "doc_number": TEXT,
        "copies": {"type": ["integer", "null"]}, "secrecy": TEXT, "urgency": TEXT, "deadline": TEXT,
        "file_url": TEXT, "file_name": TEXT, "summary": TEXT, "handling_type": TEXT,
    },
    "required": ["id"],
}
FIELDS = tuple(DOCUMENT["properties"])
REF = {"type": "object", "properties": {"id": TEXT, "filename": TEXT, "content_type": TEXT,
                                        "size": {"type": "integer"}, "sha256": TEXT},
       "required": ["id", "filename", "content_type", "size", "sha256"]}


class OaConnector(Connector):
    name = "oa"
    title = "政务 OA"
    config_schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "base_url": {"type": "string", "minLength": 1, "description": "the OA's API root, e.g. https://oa.gxzf.gov.cn"},
            "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                              "description": "host, host:port or *.domain the OA and its file store live on"},
            "token": {**SECRET, "description": "bearer token the OA issued to the platform"},
            "webhook_secret": {**SECRET, "description": "key of the HMAC-SHA256 in X-OA-Signature on webhooks"},
            "poll_seconds": {"type": "integer", "minimum": 0, "maximum": 86400,
                             "description": "fetch new documents this often; 0 = webhooks only"},
            "start_as": {"type": "string", "description": "username that starts 收文 for incoming documents "
                                                          "(default: the first administrator)"},
            "receiver_name": {"type": "string", "description": "reported as signed_by when a report names nobody"},
            "max_file_bytes": {"type": "integer", "minimum": 1024, "maximum": 200 * 1024 * 1024},
            "verify_tls": {"type": "boolean"},
        },
        "required": ["base_url", "allowed_hosts"],
        "additionalProperties": False,
    }
    operations: ClassVar[dict] = {
        "FetchNew": Operation(
            method="fetch_new", timeout=30, retries=2,
            description="Documents the OA has for us since the cursor, and the cursor to ask with next time.",
            params={"type": "object", "properties": {"since": {"type": ["string", "null"]}},
                    "additionalProperties": False},
            result={"type": "object", "properties": {"documents": {"type": "array", "items": DOCUMENT},
                                                     "cursor": {"type": ["string", "null"]}},
                    "required": ["documents", "cursor"]},
        ),
        "Download": Operation(
            method="download", timeout=60, retries=3,
            description="Fetch a document's file from an allow-listed host and store it; returns the file reference.",
            params={"type": "object", "properties": {"url": {"type": "string", "minLength": 1},
                                                     "filename": {"type": "string"}},
                    "required": ["url"], "additionalProperties": False},
            result=REF,
        ),
        "ReportReceipt": Operation(
            method="report_receipt", timeout=30, retries=3,
            description="Tell the OA the document was signed for (签收), with our registration number.",
            params={"type": "object", "properties": {
                "document_id": {"type": "string", "minLength": 1}, "registration_no": TEXT, "signed_by": TEXT,
                "signed_at": TEXT}, "required": ["document_id"], "additionalProperties": False},
            result={"type": "object", "required": ["document_id", "status"]},
        ),
        "ReportCompletion": Operation(
            method="report_completion", timeout=30, retries=3,
            description="Tell the OA the document was dealt with (办结) and how.",
            params={"type": "object", "properties": {
                "document_id": {"type": "string", "minLength": 1}, "outcome": {"type": "string", "minLength": 1},
                "completed_at": TEXT}, "required": ["document_id", "outcome"], "additionalProperties": False},
            result={"type": "object", "required": ["document_id", "status"]},
        ),
    }

    def check(self) -> None:
        if not self.config.get("base_url") or not self.config.get("allowed_hosts"):
            raise ConnectorError("the OA's base_url and allowed_hosts must be configured", retryable=False,
                                 code="oa.config")

    def _call(self, context: ConnectorContext, method: str, url: str, body: object = None, idempotent: bool = False,
              max_bytes: int = 5 * 1024 * 1024):
        self.check()
        base = self.config["base_url"].rstrip("/")
        target = url if "://" in url else f"{base}/{url.lstrip('/')}"
        headers = {"Accept": "application/json"}
        # The token goes to the OA itself only, never to another allow-listed host serving files.
        if self.config.get("token") and urlsplit(target)[:2] == urlsplit(base)[:2]:  # same scheme and host
            headers["Authorization"] = f"Bearer {self.config['token']}"
        if idempotent:
            headers["Idempotency-Key"] = context.idempotency_key
        return send(method, target, prefix="oa", allowed=self.config["allowed_hosts"], timeout=context.timeout,
                    headers=headers, body=body, max_bytes=max_bytes, verify_tls=self.config.get("verify_tls", True))

    def fetch_new(self, context: ConnectorContext, since: str | None = None) -> dict:
        query = f"?since={quote(since, safe='')}" if since else ""
        answer = self._call(context, "GET", f"/api/documents{query}").json("oa", "GET /api/documents")
        if not isinstance(answer, dict) or not isinstance(answer.get("documents"), list):
            raise ConnectorError("the OA's document list is not {documents: [...], cursor}", retryable=False,
                                 code="oa.malformed")
        documents = [_document(d) for d in answer["documents"]]
        cursor = answer.get("cursor")
        return {"documents": documents, "cursor": str(cursor) if cursor not in (None, "") else since}

    def download(self, context: ConnectorContext, url: str, filename: str = "") -> dict:
        limit = int(self.config.get("max_file_bytes", 50 * 1024 * 1024))
        response = self._call(context, "GET", url, max_bytes=limit)
        if not response.content:
            raise ConnectorError(f"the file at {url} is empty", retryable=False, code="oa.empty_file")
        name = filename or os.path.basename(urlsplit(url).path) or "来文"
        return context.store_file(name, response.content, response.content_type or "application/octet-stream")

    def report_receipt(self, context: ConnectorContext, document_id: str, registration_no: str = "",
                       signed_by: str = "", signed_at: str = "") -> dict:
        body = {"status": "signed", "signed_by": signed_by or self.config.get("receiver_name", ""),
                "signed_at": signed_at or context.now().isoformat(timespec="seconds"),
                "registration_no": registration_no}
        self._call(context, "POST", f"/api/documents/{quote(document_id, safe='')}/receipt", body, idempotent=True)
        return {"document_id": document_id, "status": "signed"}

    def report_completion(self, context: ConnectorContext, document_id: str, outcome: str,
                          completed_at: str = "") -> dict:
        body = {"outcome": outcome, "completed_at": completed_at or context.now().isoformat(timespec="seconds")}
        self._call(context, "POST", f"/api/documents/{quote(document_id, safe='')}/completion", body, idempotent=True)
        return {"document_id": document_id, "status": "completed"}


def _document(raw) -> dict:
    """One document of the OA's list with the fields we know; the id always as a string."""
    if not isinstance(raw, dict) or raw.get("id") in (None, ""):
        raise ConnectorError("a document in the OA's list has no id", retryable=False, code="oa.malformed")
    doc = {k: raw[k] for k in FIELDS if raw.get(k) is not None}
    doc["id"] = str(raw["id"])
    for key in FIELDS:
        if key not in ("id", "copies") and key in doc:
            doc[key] = str(doc[key])
    if "copies" in doc and not isinstance(doc["copies"], int):
        doc["copies"] = int(doc["copies"]) if str(doc["copies"]).isdigit() else None
    return doc
