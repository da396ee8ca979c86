"""The SQLite outbox: durable per-point seq, ids, lanes, acknowledgement and the size cap with exact drop counts;
and the cap seen end to end: the platform receives the survivors and a status block reporting the drops."""
import asyncio
import sqlite3

import pytest

from edge.collector import Collector
from edge.outbox import Outbox
from edge.points import Reading, utc_now
from edge.uplink import Uplink

from .conftest import header, until, write_config


def readings(point: str, n: int, start: int = 0) -> list[Reading]:
    return [Reading(point, utc_now(), float(start + i)) for i in range(n)]


def test_seq_per_point_survives_restart_and_ids_are_unique(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    stored = box.add(readings("a", 3) + readings("b", 2))
    assert [(s.point, s.seq) for s in stored] == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)]
    assert len({s.id for s in stored}) == 5
    box.ack([s.id for s in stored])
    assert len(box) == 0
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert [s.seq for s in again.add(readings("a", 2))] == [4, 5]
    assert again.last_seq("b") == 2
    mode, sync = again.db.execute("PRAGMA journal_mode").fetchone()[0], again.db.execute(
        "PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL
    again.close()


def test_batches_come_in_insertion_order_and_only_acked_ids_are_deleted(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.add(readings("a", 5))
    first = box.batch(historical=False, limit=3)
    assert [r.seq for r in first] == [1, 2, 3]
    assert first[0].message(False) == {"id": first[0].id, "point": "a", "seq": 1, "ts": first[0].ts,
                                       "value": 0.0, "quality": "good", "historical": False}
    assert box.ack([first[0].id, first[2].id, "not-ours"]) == 2
    assert [r.seq for r in box.batch(historical=False, limit=10)] == [2, 4, 5]
    assert box.oldest()[0] == first[1].ts


def test_lanes_split_by_age(tmp_path):
    now = [1000.0]
    box = Outbox(tmp_path / "o.sqlite", live_window=10, clock=lambda: now[0])
    box.add(readings("a", 2))
    now[0] += 20
    box.add(readings("a", 2, start=2))
    assert [r.seq for r in box.batch(historical=True, limit=10)] == [1, 2]
    assert [r.seq for r in box.batch(historical=False, limit=10)] == [3, 4]
    now[0] += 20  # everything has aged into the backlog
    assert box.batch(historical=False, limit=10) == []
    assert [r.seq for r in box.batch(historical=True, limit=10)] == [1, 2, 3, 4]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_cap_drops_exactly_k_and_the_counter_persists(tmp_path, policy):
    cap, k = 20, 7
    box = Outbox(tmp_path / "o.sqlite", cap=cap, policy=policy)
    box.add(readings("a", 12))
    box.add(readings("a", cap + k - 12, start=12))
    assert len(box) == cap and box.dropped == k
    kept = [r.seq for r in box.batch(False, 100)]
    assert kept == (list(range(k + 1, cap + k + 1)) if policy == "drop_oldest" else list(range(1, cap + 1)))
    assert box.last_seq("a") == cap + k  # dropped readings used their seq: the platform sees the gap
    box.close()
    again = Outbox(tmp_path / "o.sqlite", cap=cap, policy=policy)
    assert again.dropped == k and len(again) == cap
    again.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.add(readings("a", 1))
    with pytest.raises(sqlite3.Error):
        box.add([Reading("a", utc_now(), 1.0), Reading(None, utc_now(), 2.0)])  # NOT NULL violation
    assert len(box) == 1 and box.last_seq("a") == 1
    assert [r.seq for r in box.add(readings("a", 1))] == [2]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_cap_end_to_end_platform_gets_survivors_and_the_drop_count(tmp_path, platform, policy):
    cap, k = 30, 12
    config = write_config(tmp_path, header(platform.url, cap=cap, policy=policy, batch_size=7) + """
[devices.d]
protocol = "modbus_tcp"
host = "127.0.0.1"
[devices.d.points.p]
address = 0
""")
    point = config.points()[0]
    platform.stop()  # offline: connection refused

    async def scenario():
        box = Outbox(config.outbox.path, cap=cap, policy=policy)
        collector = Collector(box)
        uplink = Uplink(config, box, collector)
        task = asyncio.create_task(uplink.run())
        for i in range(cap + k):  # every sample differs, so every one becomes a reading
            collector.offer([(point, float(i), "good", None)])
        await until(lambda: uplink.link.failures >= 2, what="the uplink to notice the outage")
        platform.start()
        await until(lambda: len(box) == 0, what="the outbox to drain")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        box.close()
        return box

    box = asyncio.run(scenario())
    assert box.dropped == k
    seqs = platform.seqs("d.p")
    assert sorted(seqs) == (list(range(k + 1, cap + k + 1)) if policy == "drop_oldest" else list(range(1, cap + 1)))
    assert platform.statuses[-1]["dropped"] == k
    assert platform.duplicates == 0
