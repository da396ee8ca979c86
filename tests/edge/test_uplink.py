"""The HTTP uplink against the test platform: a refused credential stops sending until the token changes, and
fresh readings overtake a long backlog (which arrives marked historical)."""
import asyncio

from edge.collector import Collector
from edge.outbox import Outbox
from edge.uplink import Uplink

from .conftest import TOKEN, header, until, write_config

DEVICE = """
[devices.d]
protocol = "modbus_tcp"
host = "127.0.0.1"
[devices.d.points.p]
address = 0
"""


def test_401_stops_sending_until_the_token_changes(tmp_path, platform):
    config = write_config(tmp_path, header(platform.url) + DEVICE)
    (tmp_path / "gateway.token").write_text("wrong-token")
    point = config.points()[0]

    async def scenario():
        box = Outbox(config.outbox.path)
        collector = Collector(box)
        uplink = Uplink(config, box, collector)
        uplink.recheck = 0.1
        task = asyncio.create_task(uplink.run())
        collector.offer([(point, 1.0, "good", None)])
        await until(lambda: uplink.link.state == "unauthorized", what="the refusal")
        refused = platform.refused
        collector.offer([(point, 2.0, "good", None)])
        await asyncio.sleep(0.5)  # several recheck periods: the same wrong token is not tried again
        assert platform.refused == refused and len(box) == 2
        (tmp_path / "gateway.token").write_text(TOKEN)
        await until(lambda: len(box) == 0, what="sending to resume with the new token")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        box.close()
        return uplink.link, refused

    link, refused = asyncio.run(scenario())
    assert link.state == "up" and refused == 1
    assert [r["value"] for r in platform.readings()] == [1.0, 2.0]


def test_fresh_readings_overtake_a_long_backlog(tmp_path, platform):
    config = write_config(tmp_path, header(platform.url, batch_size=5, live_window=0.2) + DEVICE)
    point = config.points()[0]
    platform.stop()

    async def scenario():
        box = Outbox(config.outbox.path, live_window=0.2)
        collector = Collector(box)
        for i in range(100):
            collector.offer([(point, float(i), "good", None)])
        await asyncio.sleep(0.3)  # the backlog ages out of the live window
        platform.delay = 0.03
        platform.start()
        uplink = Uplink(config, box, collector)
        task = asyncio.create_task(uplink.run())
        await until(lambda: len(platform.readings()) >= 10, interval=0.01, what="the backlog drain to start")
        collector.offer([(point, 1000.0, "good", None)])
        await until(lambda: len(box) == 0, what="everything")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        box.close()

    asyncio.run(scenario())
    arrived = platform.readings("d.p")
    fresh = next(i for i, r in enumerate(arrived) if r["value"] == 1000.0)
    assert not arrived[fresh]["historical"] and arrived[fresh]["seq"] == 101
    assert any(r["historical"] for r in arrived[fresh + 1:])  # it did not wait behind the remaining backlog
    assert all(r["historical"] for r in arrived if r["seq"] <= 100)
    assert [r["seq"] for r in arrived if r["historical"]] == list(range(1, 101))
