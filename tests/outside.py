"""A real HTTP server on 127.0.0.1 standing in for outside systems, with scripted faults.

Each request is recorded (method, path, query, headers, body). ``plan`` maps a path to a list of
behaviours taken one per request ("500", "slow:<seconds>", "malformed", "big", "ok"); when a path's
list is empty the server answers 200 with a JSON echo of the request, or with what ``answers[path](request)``
returns when a test scripted an answer for the path (as JSON, or as is when it returns bytes).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class OutsideSystem:
    """Start with ``with OutsideSystem() as server:``; ``server.url`` is its base URL."""

    def __init__(self):
        self.requests: list[dict] = []
        self.plan: dict[str, list[str]] = {}
        self.answers: dict[str, Callable[[dict], object]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                return

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                record = {"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode("utf-8", "replace")}
                with outer.lock:
                    outer.requests.append(record)
                    steps = outer.plan.get(parts.path)
                    behaviour = steps.pop(0) if steps else "ok"
                    answer = outer.answers.get(parts.path)
                outer.respond(self, behaviour, record, answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.host = f"127.0.0.1:{self.server.server_port}"

    @staticmethod
    def respond(handler, behaviour: str, record: dict, answer: Callable[[dict], object] | None = None) -> None:
        reply = answer(record) if answer is not None and behaviour == "ok" else {"received": record}
        if isinstance(reply, bytes):  # a scripted file download: the bytes as they are
            status, body, kind = 200, reply, "application/octet-stream"
        else:
            status, body, kind = 200, json.dumps(reply, ensure_ascii=False).encode(), "application/json"
        if behaviour.startswith("slow:"):
            time.sleep(float(behaviour.split(":", 1)[1]))
        elif behaviour.isdigit():
            status, body = int(behaviour), json.dumps({"error": f"status {behaviour}"}).encode()
        elif behaviour == "malformed":
            body = b"<html>not json"
        elif behaviour == "big":
            body = b"[" + b"1," * 600_000 + b"1]"
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def keys(self, path: str) -> list[str]:
        """The Idempotency-Key of every request to ``path``, in order."""
        return [r["headers"].get("idempotency-key") for r in self.requests if r["path"] == path]

    def __enter__(self) -> OutsideSystem:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
