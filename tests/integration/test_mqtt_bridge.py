"""`emflow mqtt-bridge` as a real process against the local Mosquitto and this test's database: the real edge uplink
(transport mqtt) reaches the platform exactly once and raises an alarm; bad tokens, topic/gateway mismatches and
junk are not ingested; a bridge killed with SIGKILL while QoS 1 messages keep coming gets every reading after its
restart, once (persistent session, acknowledgement after commit, dedupe by reading id).

Every test uses its own topic prefix and client ids, so parallel workers sharing the broker never see each other."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from edge.collector import Collector
from edge.outbox import Outbox
from edge.uplink import Uplink
from engine.models.monitoring import Reading
from tests.edge.conftest import header, until, write_config
from tests.engine.alarm_helpers import LEVEL, Edge, open_alarms, register

BROKER = ("127.0.0.1", 1883)
EMFLOW = str(Path(sys.executable).parent / "emflow")


def broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not broker_up(), reason="no MQTT broker (Mosquitto) on 127.0.0.1:1883")


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def mqtt_client(client_id: str, clean_session: bool = True):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                         clean_session=clean_session)
    client.connect(*BROKER)
    client.loop_start()
    return client


class Bridges:
    """Starts `emflow mqtt-bridge` processes on this test's database; stops them and forgets their broker
    sessions at the end (a persistent session would otherwise stay on the shared broker)."""

    def __init__(self, config, tmp_path: Path):
        self.tmp_path, self.prefix = tmp_path, f"t{uuid.uuid4().hex[:10]}"
        self.topic = f"{self.prefix}/+/telemetry"
        self.client_id = f"bridge-{self.prefix}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMFLOW_")}
        self.env.update(EMFLOW_DATABASE_URL=config.database_url, EMFLOW_INSTANCE_PATH=str(tmp_path),
                        EMFLOW_LOG_LEVEL="INFO")
        self.log = tmp_path / "bridge.log"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        """A bridge process, once it is subscribed."""
        mark = self.text().count("subscribed to")
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([EMFLOW, "mqtt-bridge", "--broker", "mqtt://127.0.0.1:1883", "--topic",
                                     self.topic, "--client-id", self.client_id, "--stats-interval", "0.5"],
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"the bridge exited:\n{self.text()[-3000:]}")
            return self.text().count("subscribed to") > mark
        wait_for(ready, 30, "the bridge to subscribe")
        return proc

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        forget = mqtt_client(self.client_id, clean_session=True)
        forget.disconnect()
        forget.loop_stop()


@pytest.fixture
def bridges(config, tmp_path):
    b = Bridges(config, tmp_path)
    yield b
    b.close()


def stored(db, gateway_points: list[int] | None = None) -> list[str]:
    """Reading ids in the platform's database (one row per stored reading)."""
    with db.session() as s:
        stmt = select(Reading.reading_id)
        if gateway_points is not None:
            stmt = stmt.where(Reading.point_id.in_(gateway_points))
        return list(s.scalars(stmt))


def test_the_real_edge_over_mqtt_reaches_the_platform_once_and_raises_an_alarm(db, config, tmp_path, bridges):
    code = f"gw-{uuid.uuid4().hex[:8]}"
    token, ids = register(db, [LEVEL], code=code)
    proc = bridges.start()
    site = tmp_path / "site"
    site.mkdir()
    edge_config = write_config(site, header("mqtt://127.0.0.1:1883", code, transport="mqtt", batch_size=7).replace(
        'transport = "mqtt"', f'transport = "mqtt"\ntopic = "{bridges.prefix}/{{gateway}}/telemetry"') + """
[devices.plc]
protocol = "modbus_tcp"
host = "127.0.0.1"
[devices.plc.points.level]
address = 0
data_type = "float32"
""")
    (site / "gateway.token").write_text(token + "\n")
    values = [5.0 + i * 0.01 for i in range(30)] + [8.75]
    [point] = edge_config.points()

    async def scenario():
        box = Outbox(edge_config.outbox.path)
        collector = Collector(box)
        uplink = Uplink(edge_config, box, collector)
        task = asyncio.create_task(uplink.run())
        for value in values:
            collector.offer([(point, value, "good", None)])
        await until(lambda: len(box) == 0, what="every PUBACK")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        box.close()
        return uplink.link.sent

    assert asyncio.run(scenario()) == len(values)
    wait_for(lambda: len(stored(db)) >= len(values), what="every reading in the platform database")
    [raised] = wait_for(lambda: open_alarms(db, ids["plc.level"]), what="the alarm")
    assert (raised.condition, raised.value, raised.state) == ("hi", 8.75, "unack") and raised.instance_id
    with db.session() as s:
        rows = list(s.scalars(select(Reading).where(Reading.point_id == ids["plc.level"]).order_by(Reading.seq)))
    assert [r.seq for r in rows] == list(range(1, len(values) + 1))  # each once
    assert [r.value for r in rows] == pytest.approx(values)
    assert proc.poll() is None and token not in bridges.text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0 and "bridge stopped" in bridges.text()


def test_bad_tokens_mismatches_and_junk_are_not_ingested(db, config, bridges):
    a, b = f"gw-a-{uuid.uuid4().hex[:6]}", f"gw-b-{uuid.uuid4().hex[:6]}"
    token_a, ids_a = register(db, [LEVEL], code=a)
    token_b, _ = register(db, [LEVEL], code=b)
    bridges.start()
    edge = Edge(db, config, token_a, code=a)
    publisher = mqtt_client(f"pub-{bridges.prefix}")
    refused = []

    def publish(topic_gateway: str, body_gateway: str, token: str, value: float = 9.5) -> None:
        reading = edge.reading("plc.level", value)
        body = {"gateway": body_gateway, "readings": [reading], "status": {}, "token": token}
        refused.append(reading["id"])
        publisher.publish(f"{bridges.prefix}/{topic_gateway}/telemetry", json.dumps(body), qos=1).wait_for_publish(5)

    try:
        publish(a, a, "gw_not-a-token")  # bad token
        publish(b, a, token_a)  # a's credential on b's topic
        publish(a, b, token_a)  # a's credential, a's topic, the body claims b
        publish(b, b, token_a)  # a's credential posing as b throughout
        publisher.publish(f"{bridges.prefix}/{a}/telemetry", b"{not json", qos=1).wait_for_publish(5)
        good = edge.reading("plc.level", 5.0)
        body = {"gateway": a, "readings": [good], "status": {}, "token": token_a}
        publisher.publish(f"{bridges.prefix}/{a}/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    # One worker handles messages in arrival order: once the good one is stored, the others were refused.
    wait_for(lambda: good["id"] in stored(db), what="the valid message")
    assert stored(db) == [good["id"]] and open_alarms(db) == []
    wait_for(lambda: "6 messages, 1 ingested" in bridges.text(), what="the counts in the log")
    log = bridges.text()
    for reason in ("bad_token", "topic_mismatch", "gateway_mismatch", "malformed"):
        assert f": {reason}" in log
    assert "5 refused" in log and token_a not in log and token_b not in log


def test_a_bridge_killed_mid_stream_gets_every_reading_exactly_once_after_restart(db, config, bridges):
    code = f"gw-{uuid.uuid4().hex[:8]}"
    token, ids = register(db, [LEVEL, {**LEVEL, "name": "plc.temp", "unit": "℃", "hi": 80.0, "hihi": 90.0}],
                          code=code)
    first = bridges.start()
    edge = Edge(db, config, token, code=code)
    total_messages, sent_ids, done = 50, [], threading.Event()

    def publish_all():
        publisher = mqtt_client(f"pub-{bridges.prefix}")
        try:
            for i in range(total_messages):
                readings = [edge.reading("plc.level", 5.0 + i / 100), edge.reading("plc.temp", 20.0 + i / 10)]
                body = {"gateway": code, "readings": readings, "status": {}, "token": token}
                publisher.publish(f"{bridges.prefix}/{code}/telemetry", json.dumps(body),
                                  qos=1).wait_for_publish(5)
                sent_ids.extend(r["id"] for r in readings)
                time.sleep(0.02)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            done.set()

    thread = threading.Thread(target=publish_all)
    thread.start()
    try:
        wait_for(lambda: len(stored(db)) >= 20, what="the first readings")
        first.send_signal(signal.SIGKILL)  # no clean shutdown: whatever was received but not acknowledged is lost
        first.wait(10)
        at_kill = len(stored(db))
        assert done.wait(30), "the publisher did not finish"
    finally:
        thread.join(30)
    assert 0 < at_kill < len(sent_ids)  # the broker holds the rest for the bridge's session
    second = bridges.start()
    wait_for(lambda: len(stored(db)) >= len(sent_ids), 30, "every reading after the restart")
    # A last message behind everything the broker queued: once it is stored, any redelivery was handled too.
    sentinel = edge.reading("plc.level", 5.0)
    publisher = mqtt_client(f"pub-{bridges.prefix}")
    publisher.publish(f"{bridges.prefix}/{code}/telemetry", json.dumps(
        {"gateway": code, "readings": [sentinel], "status": {}, "token": token}), qos=1).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    wait_for(lambda: sentinel["id"] in stored(db), what="the last message")
    sent_ids.append(sentinel["id"])
    ids_stored = stored(db)
    assert len(ids_stored) == len(set(ids_stored)) == len(sent_ids) and set(ids_stored) == set(sent_ids)
    with db.session() as s:
        per_point = dict(s.execute(select(Reading.point_id, func.count()).group_by(Reading.point_id)).all())
    assert per_point == {ids["plc.level"]: total_messages + 1, ids["plc.temp"]: total_messages}
    assert second.poll() is None


def test_a_session_taken_over_is_resumed_and_unacknowledged_messages_come_again(db, config, bridges):
    import paho.mqtt.client as mqtt

    code = f"gw-{uuid.uuid4().hex[:8]}"
    token, _ = register(db, [LEVEL], code=code)
    bridges.start()
    edge = Edge(db, config, token, code=code)
    # Another client with the bridge's id takes its session (the broker drops the bridge's connection), receives
    # what is published meanwhile and never acknowledges it: like a bridge dying between receipt and commit.
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=bridges.client_id, protocol=mqtt.MQTTv311,
                           clean_session=False, manual_ack=True, reconnect_on_failure=False)
    taken, received = threading.Event(), []
    intruder.on_connect = lambda client, userdata, flags, rc, props: flags.session_present and taken.set()
    intruder.on_message = lambda client, userdata, message: received.append(message.mid)
    intruder.connect(*BROKER)
    intruder.loop_start()
    publisher = mqtt_client(f"pub-{bridges.prefix}")
    sent = []
    try:
        assert taken.wait(10), "the intruder did not get the bridge's session"
        for i in range(20):
            reading = edge.reading("plc.level", 5.0 + i / 100)
            body = {"gateway": code, "readings": [reading], "status": {}, "token": token}
            publisher.publish(f"{bridges.prefix}/{code}/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
            sent.append(reading["id"])
        # The bridge reconnects on its own (back-off) and takes the session back, with what the intruder held.
        wait_for(lambda: set(stored(db)) == set(sent), 30, "every reading after the bridge reconnected")
        sentinel = edge.reading("plc.level", 5.0)
        publisher.publish(f"{bridges.prefix}/{code}/telemetry", json.dumps(
            {"gateway": code, "readings": [sentinel], "status": {}, "token": token}), qos=1).wait_for_publish(5)
        wait_for(lambda: sentinel["id"] in stored(db), what="the last message")
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        intruder.loop_stop()
    ids_stored = stored(db)
    assert len(ids_stored) == len(set(ids_stored)) == len(sent) + 1
    assert bridges.text().count("session present: True") >= 1 and "disconnected from" in bridges.text()
