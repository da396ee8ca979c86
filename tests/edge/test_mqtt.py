"""MQTT transport: readings published with QoS 1 to emflow/{gateway}/telemetry on the local Mosquitto, read
back by a paho subscriber; the outbox empties only as PUBACKs arrive."""
import asyncio
import json
import socket
import threading
import uuid

import pytest

from edge.collector import Collector
from edge.outbox import Outbox
from edge.uplink import Uplink

from .conftest import header, until, wait_for, write_config

BROKER = ("127.0.0.1", 1883)


def broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not broker_up(), reason="no MQTT broker (Mosquitto) on 127.0.0.1:1883")


def test_mqtt_publishes_every_reading_with_qos1(tmp_path):
    import paho.mqtt.client as mqtt

    gateway = f"gw-mqtt-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, header("mqtt://127.0.0.1:1883", gateway, transport="mqtt", batch_size=10) + """
[devices.d]
protocol = "modbus_tcp"
host = "127.0.0.1"
[devices.d.points.p]
address = 0
""")
    assert config.topic == f"emflow/{gateway}/telemetry"
    messages, lock, subscribed = [], threading.Lock(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{gateway}")

    def on_message(client, userdata, message):
        with lock:
            messages.append(json.loads(message.payload))

    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.on_connect = lambda client, *args: client.subscribe(config.topic, qos=1)
    sub.connect(*BROKER)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "the test subscriber could not subscribe"
        point = config.points()[0]

        async def scenario():
            box = Outbox(config.outbox.path)
            collector = Collector(box)
            uplink = Uplink(config, box, collector)
            task = asyncio.create_task(uplink.run())
            for i in range(25):
                collector.offer([(point, float(i), "good", None)])
            await until(lambda: len(box) == 0, what="every PUBACK")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            box.close()
            return uplink.link

        link = asyncio.run(scenario())
        assert link.sent == 25 and link.state == "up"
        wait_for(lambda: sum(len(m["readings"]) for m in messages) >= 25, what="the subscriber to get everything")
    finally:
        sub.loop_stop()
        sub.disconnect()
    readings = [r for m in messages for r in m["readings"]]
    assert sorted(r["seq"] for r in readings) == list(range(1, 26))
    assert [r["value"] for r in sorted(readings, key=lambda r: r["seq"])] == [float(i) for i in range(25)]
    assert all(m["gateway"] == gateway and "dropped" in m["status"] for m in messages)
