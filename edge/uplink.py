"""Sending the outbox to the platform, over HTTP (``POST {platform}/api/v1/telemetry``) or MQTT (QoS 1 to
``emflow/{gateway}/telemetry``), and deleting only what was acknowledged.

Each round sends one live batch, then one backlog batch (marked ``historical``), so fresh data waits for at
most one backlog request. 401/403 stop sending (the credential is wrong: collection goes on into the outbox,
and sending resumes when the token in the environment or file changes). Any other failure backs off
exponentially and retries; nothing is deleted that was not acknowledged."""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from .health import Link, status_block
from .points import utc_now
from .sources import Backoff

if TYPE_CHECKING:
    from .collector import Collector
    from .config import Config, PlatformConfig
    from .outbox import Outbox, Stored

log = logging.getLogger(__name__)
TELEMETRY_PATH = "/api/v1/telemetry"


class Unauthorized(Exception):
    """The platform or broker refused the gateway's credential."""


class TransportError(Exception):
    """The batch may not have arrived: retry later."""


class Transport(Protocol):
    """Sends one body; returns the ids the platform acknowledged."""

    async def send(self, body: dict) -> list[str]: ...

    def close(self) -> None: ...


class HttpTransport:
    """The platform's ingest API over HTTP(S), with urllib in a worker thread (no extra dependency)."""

    def __init__(self, platform: PlatformConfig, token: str):
        self.url = platform.url.rstrip("/") + TELEMETRY_PATH
        self.token, self.timeout = token, platform.timeout
        handlers: list = [urllib.request.ProxyHandler({"http": platform.proxy, "https": platform.proxy}
                                                      if platform.proxy else {})]
        if platform.ca_file:  # a provincial platform behind a private CA
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(
                cafile=str(platform.ca_file))))
        self.opener = urllib.request.build_opener(*handlers)

    async def send(self, body: dict) -> list[str]:
        """POST the body; the acknowledged ids are ``accepted`` plus ``duplicates``."""
        return await asyncio.to_thread(self._post, body)

    def _post(self, body: dict) -> list[str]:
        # The scheme is checked at config validation (http/https only), so no file: URLs.
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),  # noqa: S310
                                         method="POST", headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise Unauthorized(f"HTTP {exc.code} from {self.url}") from exc
            raise TransportError(f"HTTP {exc.code} from {self.url}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(answer, dict):
            raise TransportError("the platform's answer is not a JSON object")
        acked = [*answer.get("accepted", []), *answer.get("duplicates", [])]
        return [i for i in acked if isinstance(i, str)]

    def close(self) -> None:
        """Nothing to close (one connection per request)."""


class MqttTransport:
    """The same body published with QoS 1; a batch counts as acknowledged when the broker's PUBACK arrived."""

    def __init__(self, platform: PlatformConfig, token: str, gateway: str, topic: str):
        import paho.mqtt.client as mqtt

        self.mqtt, self.topic, self.timeout, self.token = mqtt, topic, platform.timeout, token
        url = urlsplit(platform.url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"emflow-edge-{gateway}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if token:
            self.client.username_pw_set(gateway, token)
        if url.scheme == "mqtts":
            self.client.tls_set(ca_certs=str(platform.ca_file) if platform.ca_file else None)
        # Our outbox is the queue: keep paho's own in-flight queue small so it cannot grow (TB-GW #1445).
        self.client.max_queued_messages_set(4)
        self.client.reconnect_delay_set(1, int(max(2, platform.retry_max)))
        self.refused: str | None = None
        self.client.on_connect = self._on_connect
        self.client.connect_async(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883), keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.refused = None
        if reason_code.is_failure:
            self.refused = str(reason_code)
            if "authori" in self.refused.lower() or "password" in self.refused.lower():
                client.disconnect()  # do not hammer the broker with a wrong credential

    async def send(self, body: dict) -> list[str]:
        """Publish and wait for the PUBACK; returns every id of the body."""
        if self.refused and not self.client.is_connected():
            text = self.refused.lower()
            if "authori" in text or "password" in text:
                raise Unauthorized(f"broker refused the connection: {self.refused}")
        if not self.client.is_connected():
            raise TransportError("not connected to the MQTT broker")
        # The platform's bridge sees only the message, not how the broker authenticated the publisher, so the
        # gateway proves itself in the body exactly as with the HTTP bearer token. Use mqtts in production:
        # over plain mqtt the token crosses the network in clear.
        info = self.client.publish(self.topic, json.dumps({**body, "token": self.token}), qos=1)
        if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish failed: {self.mqtt.error_string(info.rc)}")
        try:
            await asyncio.to_thread(info.wait_for_publish, self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise TransportError(f"publish failed: {exc}") from exc
        if not info.is_published():
            raise TransportError(f"no PUBACK within {self.timeout}s")
        return [r["id"] for r in body["readings"]]

    def close(self) -> None:
        """Disconnect and stop paho's network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def make_transport(config: Config, token: str) -> Transport:
    """The configured transport."""
    if config.platform.transport == "mqtt":
        return MqttTransport(config.platform, token, config.gateway, config.topic)
    return HttpTransport(config.platform, token)


class Uplink:
    """Drains the outbox to the platform: live lane first, then backlog, in insertion (= seq) order."""

    def __init__(self, config: Config, outbox: Outbox, collector: Collector, transport_factory=make_transport):
        self.config, self.outbox, self.collector = config, outbox, collector
        self.factory = transport_factory
        self.link = Link(transport=config.platform.transport)
        self.backoff = Backoff(config.platform.retry_initial, config.platform.retry_max)
        self.recheck = 5.0  # seconds between looks at a changed credential while unauthorized
        self.linger = 0.05  # let readings of one poll cycle arrive together
        self._wake: asyncio.Event | None = None
        self._last_send = time.monotonic()

    def body(self, rows: list[Stored], historical: bool) -> dict:
        """The request body for a batch, with the gateway's status block."""
        return {"gateway": self.config.gateway, "readings": [r.message(historical) for r in rows],
                "status": status_block(self.outbox, self.collector)}

    async def _send(self, transport: Transport, historical: bool) -> int:
        rows = self.outbox.batch(historical, self.config.outbox.batch_size)
        if not rows:
            return 0
        acked = await transport.send(self.body(rows, historical))
        wanted = {r.id for r in rows}
        mine = [i for i in acked if i in wanted]
        if not mine:
            raise TransportError(f"the platform acknowledged none of {len(rows)} readings")
        self.outbox.ack(mine)
        self.link.sent += len(mine)
        return len(mine)

    def _success(self) -> None:
        if self.link.state != "up":
            log.info("uplink to %s is up", self.config.platform.url)
        self.link.state, self.link.last_success, self.link.failures = "up", utc_now(), 0
        self._last_send = time.monotonic()
        self.backoff.reset()

    async def round(self, transport: Transport) -> int:
        """One live batch and one backlog batch (or a status-only post when idle past the heartbeat)."""
        sent = await self._send(transport, historical=False)
        sent += await self._send(transport, historical=True)
        if sent:
            self._success()
        elif self.config.heartbeat and time.monotonic() - self._last_send >= self.config.heartbeat:
            await transport.send({"gateway": self.config.gateway, "readings": [],
                                  "status": status_block(self.outbox, self.collector)})
            self._success()
        return sent

    async def run(self) -> None:
        """Send until cancelled; never raises anything else."""
        self._wake = asyncio.Event()
        self.outbox.listeners.append(self._wake.set)
        token = self.config.platform.token()
        transport: Transport | None = None
        try:
            while True:
                self._wake.clear()
                try:
                    if self.link.state == "unauthorized":
                        await asyncio.sleep(self.recheck)
                        fresh = self.config.platform.token()
                        if fresh == token:
                            continue
                        log.warning("the gateway credential changed; trying again")
                        token, self.link.state = fresh, "starting"
                        if transport is not None:
                            transport.close()
                            transport = None
                    if not token and self.config.platform.transport == "http":
                        raise Unauthorized("no credential: " + (f"environment variable {self.config.platform.token_env}"
                                           if self.config.platform.token_env else
                                           f"file {self.config.platform.token_file}") + " is empty or missing")
                    if transport is None:
                        transport = self.factory(self.config, token)
                    sent = await self.round(transport)
                except asyncio.CancelledError:
                    raise
                except Unauthorized as exc:
                    self.link.state, self.link.last_error = "unauthorized", str(exc)
                    log.critical("THE PLATFORM REFUSED THE GATEWAY CREDENTIAL (%s): sending stopped, readings are "
                                 "kept in the outbox; fix the token and sending resumes", exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - TransportError and anything unforeseen: retry later
                    self.link.state, self.link.last_error = "down", f"{type(exc).__name__}: {exc}"
                    self.link.failures += 1
                    delay = self.backoff.next()
                    log.warning("uplink: %s; %d readings waiting; retry in %.1fs", self.link.last_error,
                                len(self.outbox), delay)
                    await asyncio.sleep(delay)
                    continue
                if not sent:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    except TimeoutError:
                        pass
                    else:
                        await asyncio.sleep(self.linger)
        finally:
            self.outbox.listeners.remove(self._wake.set)
            if transport is not None:
                transport.close()
