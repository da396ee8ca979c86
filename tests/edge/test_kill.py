"""The daemon as a real process (``python -m edge run``) fed by ``python -m edge simulate``: SIGKILL it while it
drains a backlog, start it again, and every seq of every point still reaches the platform (duplicates by id
are tolerated by the platform and counted)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port, header, wait_for, write_config

ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path: Path, command: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "EMFLOW_LOG_LEVEL": "WARNING"}
    with open(tmp_path / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "edge", command, "--config", str(tmp_path / "site.toml")],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def health(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_sigkill_while_draining_loses_nothing(tmp_path, platform):
    port = free_port()
    config = write_config(tmp_path, header(platform.url, batch_size=10, live_window=0.2, heartbeat=0.02) + f"""
[devices.plc]
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
timeout = 0.5
poll_interval = 0.02
retry_initial = 0.05
retry_max = 0.2
offline_after = 1
[devices.plc.points.a]
address = 0
data_type = "float32"
[devices.plc.points.b]
address = 2
data_type = "uint16"
[devices.plc.points.c]
address = 3
data_type = "int32"
word_order = "little"
""")
    points = [p.tag for p in config.points()]
    platform.mode = "503"
    sim = start(tmp_path, "simulate", "simulator")
    daemon = start(tmp_path, "run", "daemon-1")
    processes = [sim, daemon]
    try:
        wait_for(lambda: health(config.health_path).get("backlog", 0) >= 300, timeout=30, what="a backlog")
        platform.delay, platform.mode = 0.02, "up"
        wait_for(lambda: len(platform.readings()) >= 60, what="the drain to start")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        at_kill = len(platform.readings())
        sim.terminate()
        sim.wait(10)
        platform.delay = 0.0
        daemon = start(tmp_path, "run", "daemon-2")
        processes.append(daemon)
        wait_for(lambda: (h := health(config.health_path)).get("backlog") == 0
                 and h["devices"]["plc"]["status"] == "offline" and h["link"]["state"] == "up",
                 timeout=30, what="the restarted daemon to drain everything")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    db = sqlite3.connect(config.outbox.path)
    last = dict(db.execute("SELECT point, last FROM seqs"))
    left = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    db.close()
    assert left == 0
    assert at_kill < sum(last.values())  # the kill really came in the middle of the drain
    for point in points:
        assert sorted(platform.seqs(point)) == list(range(1, last[point] + 1)), f"{point}: a seq is missing"
        newest = max(platform.readings(point), key=lambda r: r["seq"])
        assert newest["quality"] == "offline"  # the simulator's end was reported too
    print(f"\n{sum(last.values())} readings, {at_kill} before the kill, {platform.duplicates} duplicates by id")
