"""End to end: the real edge gateway (in-process, against the Modbus simulator) sends to the real Flask app served by a
werkzeug server thread; readings arrive in seq order and a value over the limit raises an alarm with its process."""
from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select
from werkzeug.serving import make_server

from edge.daemon import Gateway
from edge.simulator import Simulator
from engine.models.monitoring import Gateway as GatewayRow
from engine.models.monitoring import Reading
from tests.edge.conftest import free_port, header, until, write_config
from tests.engine.alarm_helpers import LEVEL, open_alarms, register

DEVICE = """
[devices.plc]
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
device_id = 1
timeout = 0.5
poll_interval = 0.1
retry_initial = 0.05
retry_max = 0.2

[devices.plc.points.level]
address = 0
data_type = "float32"
unit = "m"
deadband = 0.01
"""


def test_edge_readings_reach_the_platform_and_raise_an_alarm(app, db, tmp_path):
    token, ids = register(db, [LEVEL], code="gw-e2e")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = write_config(tmp_path, header(f"http://127.0.0.1:{server.server_port}", gateway="gw-e2e",
                                               batch_size=20, live_window=30) + DEVICE.format(port=free_port()))
        (tmp_path / "gateway.token").write_text(token + "\n")

        def values() -> list[float]:
            with db.session() as s:
                return [r.value for r in s.scalars(select(Reading).where(Reading.point_id == ids["plc.level"])
                                                   .order_by(Reading.seq))]

        async def scenario():
            sim = Simulator(config, animate=False)
            await sim.start()
            gateway = Gateway(config)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                await sim.set("plc.level", 5.0)
                await until(lambda: 5.0 in values(), what="the first reading at the platform")
                await sim.set("plc.level", 8.75)
                await until(lambda: open_alarms(db, ids["plc.level"]), what="the alarm")
                await until(lambda: len(gateway.outbox) == 0, what="the outbox to drain")
                return gateway.health()
            finally:
                stop.set()
                await task
                await sim.stop()

        health = asyncio.run(scenario())
    finally:
        server.shutdown()
        thread.join(5)
    assert health["link"]["state"] == "up" and health["dropped"] == 0
    [raised] = open_alarms(db, ids["plc.level"])
    assert (raised.condition, raised.value, raised.state) == ("hi", 8.75, "unack") and raised.instance_id
    with db.session() as s:
        seqs = [r.seq for r in s.scalars(select(Reading).order_by(Reading.id))]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # once each, in order
    assert values()[-1] == 8.75
    with db.session() as s:
        row = s.scalar(select(GatewayRow).where(GatewayRow.code == "gw-e2e"))
        assert row.health["devices"] == {"plc": "online"} and row.last_seen_at is not None
