"""End to end with the demo's own files: the config and credential that the demo load writes drive
``emflow edge simulate`` (the Simulator, animated as on the command line) and ``emflow edge run`` (the Gateway)
against the real Flask app in a werkzeug server thread; every demo point reaches the platform, and the simulated
reactor temperature raises its 高报 alarm with its handling process, with no help from the test."""
from __future__ import annotations

import asyncio
import threading

from sqlalchemy import func, select
from werkzeug.serving import make_server

from edge.config import load
from edge.daemon import Gateway
from edge.simulator import Simulator
from engine.models.monitoring import Alarm, Point, Reading
from engine.monitoring import DEMO_GATEWAY, DEMO_POINTS, load_demo_gateway
from tests.edge.conftest import free_port, until
from tests.engine.helpers import load_user


def test_the_demo_files_feed_the_platform_and_the_temperature_alarm_goes_off(app, db, config):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with db.transaction() as s:
            demo = load_demo_gateway(s, config, load_user(s, "admin"), url=f"http://127.0.0.1:{server.server_port}",
                                     port=free_port())
        edge = load(demo.config_path)

        def counts() -> dict[str, int]:
            with db.session() as s:
                return dict(s.execute(select(Point.name, func.count(Reading.id)).join(Reading)
                                      .group_by(Point.name)).all())

        def temperature_alarm() -> Alarm | None:
            with db.session() as s:
                return s.scalar(select(Alarm).where(Alarm.point_id == select(Point.id).where(
                    Point.name == "dcs.r201_temperature").scalar_subquery(), Alarm.instance_id.is_not(None)))

        async def scenario():
            async with Simulator(edge):  # as `emflow edge simulate`: every point follows its wave
                gateway = Gateway(edge)
                stop = asyncio.Event()
                task = asyncio.create_task(gateway.run(stop))
                try:
                    # the temperature's wave peaks about 3-13 s after the simulator starts, then every 47 s
                    raised = await until(temperature_alarm, timeout=75, what="the reactor temperature alarm")
                    await until(lambda: len(counts()) == len(DEMO_POINTS), what="readings of every point")
                    return raised, gateway.health()
                finally:
                    stop.set()
                    await task

        raised, health = asyncio.run(scenario())
    finally:
        server.shutdown()
        thread.join(5)
    assert health["gateway"] == DEMO_GATEWAY and health["link"]["state"] == "up"
    assert (raised.kind, raised.condition, raised.grade, raised.limit) == ("limit", "hi", 3, 58.0)
    assert raised.value >= 58.0 and raised.title.endswith("反应釜R201温度 高报 三级（黄色）")
    with db.session() as s:
        others = s.scalars(select(Alarm).where(Alarm.id != raised.id)).all()
    assert others == []  # no other limit is crossed, and both devices stayed online
