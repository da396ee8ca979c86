"""A small JSON-over-HTTP(S) client for connectors that talk to one known system (OA, the ministry).

Every request goes to an allow-listed host only, with no redirects and no proxy from the environment,
a per-attempt timeout and a response size cap. Failures become ``ConnectorError`` with codes
``<prefix>.<status>``, ``<prefix>.timeout``, ``<prefix>.unreachable``, ``<prefix>.forbidden_host``,
``<prefix>.too_large`` and ``<prefix>.malformed``; only transient ones are retryable.
"""
from __future__ import annotations

import functools
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from . import ConnectorError
from .net import host_allowed

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Response:
    """What came back: status, content type and the raw body."""

    status: int
    content_type: str
    content: bytes
    headers: dict

    def json(self, prefix: str, what: str):
        """The body as JSON; a body that is not JSON is a final error."""
        try:
            return json.loads(self.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            snippet = self.content[:200].decode("utf-8", "replace")
            raise ConnectorError(f"{what} did not answer JSON: {snippet}", retryable=False,
                                 code=f"{prefix}.malformed") from None


@functools.cache
def _tls() -> ssl.SSLContext:
    """The system's CA bundle, loaded once per process (a default context holds no connection state)."""
    return ssl.create_default_context()


def send(method: str, url: str, *, prefix: str, allowed: list[str], timeout: float, headers: dict | None = None,
         body: object = None, content: bytes | None = None, params: dict | None = None,
         max_bytes: int = 5 * 1024 * 1024, verify_tls: bool = True) -> Response:
    """One request to an allow-listed host, with a JSON ``body`` or raw ``content`` (whose Content-Type the
    caller sets). Raises ConnectorError."""
    if not host_allowed(url, allowed):
        raise ConnectorError(f"host of {urlsplit(url).netloc or url!r} is not on the allow-list", retryable=False,
                             code=f"{prefix}.forbidden_host")
    sent = dict(headers or {})
    if body is not None:
        content = json.dumps(body, ensure_ascii=False).encode()
        sent["Content-Type"] = "application/json"
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False,
                          verify=_tls() if verify_tls else False) as client, \
                client.stream(method, url, params=params, headers=sent, content=content or None) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ConnectorError(f"{method} {url}: the response is larger than {max_bytes} bytes",
                                         retryable=False, code=f"{prefix}.too_large")
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise ConnectorError(f"{method} {url} timed out after {timeout:g} s", code=f"{prefix}.timeout") from None
    except httpx.TransportError as exc:
        raise ConnectorError(f"{method} {url} failed: {type(exc).__name__}: {exc}",
                             code=f"{prefix}.unreachable") from None
    data = b"".join(chunks)
    status = response.status_code
    if status >= 300:
        snippet = data[:300].decode("utf-8", "replace")
        raise ConnectorError(f"{method} {url} answered {status}: {snippet}", retryable=status in RETRYABLE_STATUS,
                             code=f"{prefix}.{status}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return Response(status, kind, data, dict(response.headers))
