"""Helpers for the edge tests: free ports, waiting with a deadline, a real HTTP test platform that implements
the telemetry contract, and config files written to a temporary folder."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from edge.config import Config, load

TOKEN = "test-gateway-token"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """``wait_for`` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Platform:
    """A small real HTTP server implementing ``POST /api/v1/telemetry``: bearer token, dedupe by id, records
    first arrivals in order. ``mode`` is "up", "503" or "401"; ``stop()`` makes the port refuse connections."""

    def __init__(self, token: str = TOKEN):
        self.token, self.port = token, free_port()
        self.mode, self.delay = "up", 0.0
        self.lock = threading.Lock()
        self.received: list[dict] = []  # first arrival of each id, in arrival order
        self.ids: set[str] = set()
        self.duplicates = 0
        self.requests = 0
        self.refused = 0  # requests answered 401/503
        self.statuses: list[dict] = []
        self.server: HTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Platform:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if platform.delay:
                    time.sleep(platform.delay)
                if self.path != "/api/v1/telemetry":
                    return self._answer(404, {"error": "not found"})
                if platform.mode == "401" or self.headers.get("Authorization") != f"Bearer {platform.token}":
                    with platform.lock:
                        platform.refused += 1
                    return self._answer(401, {"error": "unauthorized"})
                if platform.mode == "503":
                    with platform.lock:
                        platform.refused += 1
                    return self._answer(503, {"error": "maintenance"})
                data = json.loads(body)
                accepted, duplicates = [], []
                with platform.lock:
                    platform.requests += 1
                    platform.statuses.append(data["status"])
                    for reading in data["readings"]:
                        if reading["id"] in platform.ids:
                            duplicates.append(reading["id"])
                            platform.duplicates += 1
                        else:
                            platform.ids.add(reading["id"])
                            platform.received.append(reading)
                            accepted.append(reading["id"])
                self._answer(200, {"accepted": accepted, "duplicates": duplicates})

            def _answer(self, code, payload):
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None

    def readings(self, point: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.received if point is None or r["point"] == point]

    def seqs(self, point: str, historical: bool | None = None) -> list[int]:
        """Seqs of a point in first-arrival order (optionally of one lane)."""
        return [r["seq"] for r in self.readings(point) if historical is None or r["historical"] == historical]


@pytest.fixture
def platform():
    p = Platform().start()
    yield p
    p.stop()


def write_config(tmp_path: Path, text: str, name: str = "site.toml") -> Config:
    """Write a TOML config (with a token file holding TOKEN) and load it."""
    (tmp_path / "gateway.token").write_text(TOKEN + "\n")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load(path)


def header(platform_url: str, gateway: str = "gw-test", *, transport: str = "http", batch_size: int = 50,
           live_window: float = 60.0, cap: int = 100000, policy: str = "drop_oldest", heartbeat: float = 60.0) -> str:
    """The [gateway], [platform] and [outbox] tables for a test config."""
    return f"""
[gateway]
id = "{gateway}"
heartbeat = {heartbeat}
health_interval = 0.2

[platform]
url = "{platform_url}"
transport = "{transport}"
token_file = "gateway.token"
timeout = 5
retry_initial = 0.05
retry_max = 0.3

[outbox]
path = "outbox.sqlite"
cap = {cap}
policy = "{policy}"
batch_size = {batch_size}
live_window = {live_window}
"""
