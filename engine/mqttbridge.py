"""The platform side of the edge's MQTT transport: messages on ``emflow/{gateway}/telemetry`` are authenticated
by the gateway token in the body and ingested like ``POST /api/v1/telemetry``.

``handle_message`` is plain Python (no paho). ``Bridge`` subscribes with QoS 1 in a persistent session
(clean_session=False, fixed client id) and acknowledges a message only after its ingest transaction committed,
so delivery is at least once; the ingest dedupes readings by id, which makes it exactly once in the database.
paho is imported only inside ``Bridge``, so the rest of the engine never needs it.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from sqlalchemy.exc import InterfaceError, OperationalError

from . import monitoring, telemetry
from .config import Config
from .db import Database
from .errors import AuthenticationFailed, EngineError, ValidationFailed

log = logging.getLogger(__name__)
TOPIC_FILTER = "emflow/+/telemetry"
MAX_PAYLOAD = 16 * 1024 * 1024  # far above MAX_READINGS readings; refuses absurd messages before parsing


def check_filter(topic_filter: str) -> None:
    """A subscription filter whose single ``+`` level is the gateway code; ValueError otherwise."""
    levels = topic_filter.split("/")
    if levels.count("+") != 1 or "#" in topic_filter or any("+" in lv and lv != "+" for lv in levels):
        raise ValueError(f"topic filter {topic_filter!r} needs exactly one '+' level (the gateway) and no '#'")


def gateway_in_topic(topic: str, topic_filter: str = TOPIC_FILTER) -> str | None:
    """The gateway code at the filter's ``+`` level, or None when the topic does not match the filter."""
    levels, pattern = topic.split("/"), topic_filter.split("/")
    if len(levels) != len(pattern):
        return None
    found = None
    for level, want in zip(levels, pattern, strict=True):
        if want == "+":
            found = level
        elif level != want:
            return None
    return found or None


def _refuse(stats: Counter | None, reason: str, topic: str, detail: str = "") -> None:
    # The token is popped from the body before anything is logged, and never part of ``detail``.
    if stats is not None:
        stats["messages"] += 1
        stats["refused"] += 1
        stats[f"refused.{reason}"] += 1
    log.warning("mqtt: dropped a message on %s: %s%s", topic, reason, f" ({detail})" if detail else "")


def handle_message(db: Database, config: Config, topic: str, payload: bytes, *, topic_filter: str = TOPIC_FILTER,
                   stats: Counter | None = None) -> dict | None:
    """Authenticate and ingest one telemetry message; returns the ingest answer, or None when it was refused.

    Refused (malformed, bad or missing token, topic or body naming another gateway, invalid readings): logged
    with the reason and counted, never ingested; the caller acknowledges it all the same. Database errors are
    raised: the message must then not be acknowledged, so that it is delivered again."""
    claimed = gateway_in_topic(topic, topic_filter)
    if claimed is None:
        _refuse(stats, "topic", topic, f"does not match {topic_filter}")
        return None
    if len(payload) > MAX_PAYLOAD:
        _refuse(stats, "malformed", topic, f"{len(payload)} bytes")
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        _refuse(stats, "malformed", topic, f"not JSON: {type(exc).__name__}")
        return None
    if not isinstance(body, dict):
        _refuse(stats, "malformed", topic, "not a JSON object")
        return None
    token = body.pop("token", None)
    if not isinstance(token, str) or not token:
        _refuse(stats, "token_missing", topic)
        return None
    try:
        with db.transaction() as s:
            gateway = monitoring.gateway_by_token(s, token)
            if claimed != gateway.code:
                _refuse(stats, "topic_mismatch", topic, f"the credential is gateway {gateway.code}'s")
                return None
            if body.get("gateway") != gateway.code:
                _refuse(stats, "gateway_mismatch", topic, f"body names {str(body.get('gateway'))[:64]!r}, the "
                                                          f"credential is gateway {gateway.code}'s")
                return None
            answer = telemetry.ingest(s, config, gateway, body)
    except AuthenticationFailed:
        _refuse(stats, "bad_token", topic, "unknown or disabled gateway credential")
        return None
    except ValidationFailed as exc:
        _refuse(stats, "invalid", topic, exc.message)
        return None
    except EngineError as exc:  # any other refusal by the engine: the message will never be accepted as it is
        _refuse(stats, exc.code, topic, exc.message)
        return None
    if stats is not None:  # counted once settled: after a database error the caller tries the same message again
        stats["messages"] += 1
        stats["ingested"] += 1
        for key in ("accepted", "duplicates", "unknown"):
            stats[key] += len(answer[key])
    return answer


class Bridge:
    """Subscribes to the edge gateways' telemetry and ingests it, acknowledging each message after its commit."""

    def __init__(self, db: Database, config: Config, broker: str, *, topic_filter: str = TOPIC_FILTER,
                 client_id: str = "emflow-mqtt-bridge", username: str = "", password: str = "",
                 ca_file: str | None = None, stats_interval: float = 60.0, keepalive: int = 30,
                 reconnect_max: int = 30):
        import paho.mqtt.client as mqtt

        check_filter(topic_filter)
        url = urlsplit(broker)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ValueError(f"broker must be mqtt://host[:port] or mqtts://host[:port], not {broker!r}")
        if url.username or url.password:
            raise ValueError("no credentials in the broker URL: use EMFLOW_MQTT_USERNAME / EMFLOW_MQTT_PASSWORD")
        self.db, self.config, self.topic_filter, self.client_id = db, config, topic_filter, client_id
        self.host, self.port = url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.stats: Counter = Counter()
        self.stats_interval = stats_interval
        self.stop = threading.Event()
        self.inbox: queue.Queue = queue.Queue()
        # Bumped on every CONNACK. A message received on an earlier connection is not acknowledged (its packet id
        # may name another message by now): the broker delivers it again on the new connection.
        self.generation = 0
        self.subscribed = threading.Event()
        # clean_session=False with a fixed client id: the broker keeps our QoS 1 subscription and queues messages
        # while the bridge is down. manual_ack: paho would otherwise PUBACK as soon as on_message returned.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=False, manual_ack=True)
        if username:
            self.client.username_pw_set(username, password or None)
        if url.scheme == "mqtts":
            self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(1, reconnect_max)  # paho reconnects by itself, backing off up to this
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.keepalive = keepalive
        self.retry_initial = 0.5  # seconds before ingesting a message again after a database error, doubling

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt: the broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.generation += 1
        log.info("mqtt: connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        # Subscribing again is harmless when the session kept the subscription, and needed when it did not.
        client.subscribe(self.topic_filter, qos=1)

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("mqtt: cannot reach the broker %s:%s; retrying with back-off", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.stop.is_set():
            log.warning("mqtt: disconnected from %s:%s (%s); reconnecting", self.host, self.port, reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("mqtt: the broker refused the subscription to %s: %s", self.topic_filter, reason_codes)
            return
        log.info("mqtt: subscribed to %s with QoS 1", self.topic_filter)
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        # Ingest runs in the bridge's own thread, so paho's network thread keeps answering pings meanwhile; one
        # worker in arrival order also keeps the PUBACKs in order, as MQTT 3.1.1 requires.
        self.inbox.put((self.generation, message))

    def _ingest(self, message) -> bool:
        """Handle one message; True when it may be acknowledged (ingested or refused for good)."""
        delay, failures = self.retry_initial, 0
        while not self.stop.is_set():
            try:
                # A refused message (None) is acknowledged too. MQTT 3.1.1 has no negative acknowledgement: an
                # unacknowledged message stays in our session and comes back on every reconnect, so a poison
                # message would be redelivered forever and hold up the ones behind it. The edge never learns of
                # the refusal: it deleted the readings from its outbox on the broker's PUBACK. That is the
                # difference from HTTP, where a 401 stops the edge and keeps its readings until the token is
                # fixed (README, "Edge collector"); here they are only logged and counted. Broker-side
                # authentication of each gateway is what makes a wrong credential stop the edge over MQTT.
                handle_message(self.db, self.config, message.topic, message.payload, topic_filter=self.topic_filter,
                               stats=self.stats)
                return True
            except (OperationalError, InterfaceError, OSError) as exc:
                # The database is unreachable, restarting or locked: keep the message (unacknowledged) and try
                # again, so a database outage delays readings instead of losing them.
                self.stats["db_errors"] += 1
                log.warning("mqtt: ingest failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            except Exception:  # noqa: BLE001 - a bug or a bad row must not stop the bridge: bounded retries
                # (which also settle a race on a reading id: the second try sees it as a duplicate), then dropped.
                failures += 1
                self.stats["errors"] += 1
                if failures >= 3:
                    self.stats["failed"] += 1
                    log.exception("mqtt: dropped a message on %s after %d failures", message.topic, failures)
                    return True
                log.exception("mqtt: ingest failed on %s; retrying", message.topic)
            self.stop.wait(delay)
            delay = min(delay * 2, 30.0)
        return False

    def _log_stats(self) -> None:
        s = self.stats
        reasons = ", ".join(f"{k.removeprefix('refused.')} {v}" for k, v in sorted(s.items())
                            if k.startswith("refused.") and v)
        log.info("mqtt: %d messages, %d ingested (%d readings accepted, %d duplicates, %d unknown points), "
                 "%d refused%s, %d database errors, %d failed", s["messages"], s["ingested"], s["accepted"],
                 s["duplicates"], s["unknown"], s["refused"], f" ({reasons})" if reasons else "", s["db_errors"],
                 s["failed"])

    def run(self) -> None:
        """Run until ``stop`` is set; the message being ingested is finished (and acknowledged) first."""
        log.info("mqtt: bridge to %s:%s, topic %s, client id %s", self.host, self.port, self.topic_filter,
                 self.client_id)
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()  # retries the first connection too, with the same back-off
        timer_at = time.monotonic() + self.stats_interval
        try:
            while not self.stop.is_set():
                if time.monotonic() >= timer_at:
                    self._log_stats()
                    timer_at = time.monotonic() + self.stats_interval
                try:
                    generation, message = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                if generation != self.generation:
                    self.stats["stale"] += 1
                    continue  # the broker redelivers it on the current connection
                if self._ingest(message) and generation == self.generation:
                    self.client.ack(message.mid, message.qos)
        finally:
            # Messages still in the inbox were not acknowledged: the broker keeps them for our next session.
            self.client.disconnect()
            self.client.loop_stop()
            self._log_stats()
            log.info("mqtt: bridge stopped")
