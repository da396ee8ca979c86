"""A Flask test client for the OA and ministry webhooks, and their signatures.

Until webapp/api/__init__.py registers ``webapp.api.oa`` and ``webapp.api.ministry`` (and lists their
endpoints as public), the client registers them itself, exactly as the app factory would."""
from __future__ import annotations

import hashlib
import hmac
import json

OA_SECRET = "oa-webhook-key-2026"
MINISTRY_SECRET = "ministry-webhook-key-2026"


def sign(key: str, body: bytes) -> str:
    """The hex HMAC-SHA256 the OA and the ministry put in their signature headers."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def encode(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def make_client(config, registry):
    """(app test client, platform) with the given registry; call ``platform.stop()`` afterwards."""
    from webapp import create_app
    from webapp.platform import Platform

    platform = Platform(config, registry)
    app = create_app(config, platform=platform, overrides={"TESTING": True})
    return app.test_client(), platform


# -- the OA on a local server -----------------------------------------------------------------------------------
PDF = b"%PDF-1.4 incoming document from the OA"
OA_TOKEN = "oa-token-5f2c9e"


def oa_document(outside, n: int, **overrides) -> dict:
    """An incoming document as the OA describes it; its file is served by ``publish``."""
    doc = {"id": f"GXZF-2026-{n:04d}", "title": f"关于做好寒潮防御工作的通知（第{n}号）",
           "issuer": "自治区人民政府办公厅", "doc_number": f"桂政办发〔2026〕{n}号", "copies": 2,
           "secrecy": "公开", "urgency": "加急",
           "deadline": "2026-12-10", "file_url": f"{outside.url}/files/{n}.pdf", "file_name": f"来文{n}.pdf"}
    doc.update(overrides)
    return doc


def publish(outside, documents: list[dict]) -> None:
    """Serve ``documents`` from the OA: the list after a cursor (a position in it), and every file."""
    def listing(request):
        since = int(request["query"].get("since", ["0"])[0])
        return {"documents": documents[since:], "cursor": str(len(documents))}

    outside.answers["/api/documents"] = listing
    for doc in documents:
        outside.answers[doc["file_url"].removeprefix(outside.url)] = lambda request: PDF


def configure_oa(db, config, registry, outside, **settings) -> None:
    """The oa connector pointed at the local server, with its token and webhook key stored as secrets;
    a setting given as None is left out."""
    from engine import connectors, secrets
    from tests.engine.helpers import load_user

    with db.transaction() as s:
        secrets.put(s, config, "oa_token", OA_TOKEN)
        secrets.put(s, config, "oa_webhook", OA_SECRET)
        values = {"base_url": outside.url, "allowed_hosts": [outside.host], "token": {"$secret": "oa_token"},
                  "webhook_secret": {"$secret": "oa_webhook"}, "receiver_name": "自治区应急管理厅办公室", **settings}
        connectors.configure(s, config, registry, load_user(s, "admin"), "oa",
                             {k: v for k, v in values.items() if v is not None}, retries=2)
