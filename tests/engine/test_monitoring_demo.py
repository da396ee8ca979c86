"""The demo plant's monitoring gateway (engine.monitoring.load_demo_gateway): registered with its points once, its edge
config and credential written once into the instance folder (mode 600) and valid for ``emflow edge check``; a rerun
changes nothing and never rotates the credential, a lost credential is reported; the simulator's wave crosses the
reactor temperature's high limit and no other limit; a reading sent with the demo credential raises that alarm."""
from __future__ import annotations

import math
import stat
import zlib
from datetime import timedelta

from sqlalchemy import func, select, update

from edge.cli import main as edge_cli
from edge.config import load
from edge.simulator import wave
from engine import clock, monitoring
from engine.models import Enterprise, HumanTask, SystemEvent
from engine.models.monitoring import Gateway, Point
from engine.monitoring import DEMO_GATEWAY, DEMO_MODBUS_PORT, DEMO_POINTS, load_demo_gateway
from tests.engine.alarm_helpers import Edge, alarm, open_alarms, trail
from tests.engine.helpers import load_user

SETTINGS = ("label", "indicator_code", "unit", "lolo", "lolo_grade", "lo", "lo_grade", "hi", "hi_grade", "hihi",
            "hihi_grade", "deadband", "on_delay_s", "off_delay_s")
DEFAULTS = {"label": "", "indicator_code": "", "unit": "", "deadband": 0.0, "on_delay_s": 0.0, "off_delay_s": 0.0}
TEMPERATURE = "dcs.r201_temperature"


def run(db, config, **kw) -> monitoring.DemoGateway:
    with db.transaction() as s:
        return load_demo_gateway(s, config, load_user(s, "admin"), **kw)


def snapshot(db, result) -> dict:
    """Everything a rerun must leave alone: the files (content and mtime), the credential hash, the points' settings,
    the system audit chain."""
    with db.session() as s:
        gateway = s.scalar(select(Gateway).where(Gateway.code == DEMO_GATEWAY))
        points = {p.name: tuple(getattr(p, k) for k in SETTINGS)
                  for p in s.scalars(select(Point).where(Point.gateway_id == gateway.id))}
        events = s.scalar(select(func.count()).select_from(SystemEvent))
        hash_ = gateway.token_hash
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (result.config_path, result.token_path)
             if p.exists()}
    return {"hash": hash_, "points": points, "events": events, "files": files}


def system_events(db, *kinds) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(SystemEvent.kind).where(SystemEvent.kind.in_(kinds)).order_by(SystemEvent.seq)))


def test_the_gateway_and_its_points_are_registered_once_and_a_rerun_changes_nothing(db, config):
    first = run(db, config)
    assert (first.code, first.points, first.created, first.credential_ok, first.config_written) == \
        (DEMO_GATEWAY, 4, True, True, True)
    assert first.config_path == config.instance_path / "edge-demo.toml"
    assert first.token_path == config.instance_path / "edge-demo.token"
    for path in (first.config_path, first.token_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    token = first.token_path.read_text().strip()
    assert token.startswith("gw_") and token not in first.config_path.read_text()
    with db.session() as s:
        gateway = s.scalar(select(Gateway).where(Gateway.code == DEMO_GATEWAY))
        assert gateway.token_hash == monitoring.hash_token(token) and gateway.enabled
        assert gateway.enterprise_id == s.scalar(select(Enterprise.id).where(
            Enterprise.credit_code == "91450102MA5K000001"))
        points = {p.name: p for p in s.scalars(select(Point).where(Point.gateway_id == gateway.id))}
        assert set(points) == {fields["name"] for fields, _ in DEMO_POINTS}
        for fields, _ in DEMO_POINTS:
            assert {k: getattr(points[fields["name"]], k) for k in SETTINGS} == \
                {k: fields.get(k, DEFAULTS.get(k)) for k in SETTINGS}
            assert points[fields["name"]].item_id is not None
        temperature = points[TEMPERATURE]
        assert (temperature.label, temperature.unit, temperature.hi, temperature.hi_grade) == \
            ("反应釜R201温度", "°C", 58.0, 3)
    assert system_events(db, "gateway_registered", "points_imported", "gateway_token_rotated") == \
        ["gateway_registered", "points_imported"]
    before = snapshot(db, first)

    again = run(db, config)
    assert (again.created, again.credential_ok, again.config_written, again.points, again.gateway_id) == \
        (False, True, False, 4, first.gateway_id)
    assert again.url == config.public_url
    assert snapshot(db, again) == before  # no new file, no rotation, no point touched, nothing audited


def test_the_written_config_passes_emflow_edge_check(db, config, capsys):
    result = run(db, config, url="http://127.0.0.1:5077/")
    assert edge_cli(["check", "--config", str(result.config_path)]) == 0  # emflow edge check
    assert capsys.readouterr().out.strip() == f"{result.config_path}: ok (2 devices, 4 points)"
    edge = load(result.config_path)
    assert edge.gateway == DEMO_GATEWAY and edge.platform.url == "http://127.0.0.1:5077" == result.url
    assert monitoring.hash_token(edge.platform.token()) == snapshot(db, result)["hash"]  # token_file, next to it
    assert {p.tag for p in edge.points()} == {fields["name"] for fields, _ in DEMO_POINTS}
    assert {(d.protocol, d.host, d.port) for d in edge.devices} == {("modbus_tcp", "127.0.0.1", DEMO_MODBUS_PORT)}
    assert {p.tag: p.unit for p in edge.points()} == {f["name"]: f["unit"] for f, _ in DEMO_POINTS}
    assert edge.outbox.path == config.instance_path / "edge-demo-outbox.sqlite"


def test_a_lost_credential_is_reported_and_never_rotated(db, config):
    first = run(db, config)
    before = snapshot(db, first)
    first.token_path.unlink()
    first.config_path.unlink()
    lost = run(db, config)
    assert (lost.created, lost.credential_ok, lost.config_written) == (False, False, True)
    assert not lost.token_path.exists()  # no new credential is made up
    assert lost.config_path.read_bytes() == before["files"]["edge-demo.toml"][0]  # it holds no secret
    assert stat.S_IMODE(lost.config_path.stat().st_mode) == 0o600
    after = snapshot(db, lost)
    assert (after["hash"], after["points"], after["events"]) == (before["hash"], before["points"], before["events"])

    lost.token_path.write_text("gw_an-old-credential\n")
    stale = run(db, config)
    assert (stale.credential_ok, stale.config_written) == (False, False)
    assert system_events(db, "gateway_token_rotated") == []


def test_a_new_database_registers_the_gateway_again_and_replaces_stale_files(db, config):
    config.instance_path.mkdir(parents=True, exist_ok=True)
    (config.instance_path / "edge-demo.toml").write_text("# from an earlier database\n")
    (config.instance_path / "edge-demo.token").write_text("gw_of-an-earlier-database\n")
    result = run(db, config)
    assert result.created and result.credential_ok and result.config_written
    assert load(result.config_path).gateway == DEMO_GATEWAY
    assert monitoring.hash_token(result.token_path.read_text().strip()) == snapshot(db, result)["hash"]


def test_the_simulated_wave_crosses_only_the_reactor_temperature_high_limit(db, config):
    """The simulator serves 50 ± 10 (a sine per point) plus a little noise: the temperature's 高报 (58 °C) holds
    longer than its on-delay at every peak and clears beyond the deadband for longer than the off-delay, once per
    period (over 30 s, so it never counts as chattering: 3 activations a minute); every other limit stays clear."""
    points = {p.tag: p for p in load(run(db, config).config_path).points()}
    noise = 1.0  # five standard deviations of the simulator's noise (0.2)
    for fields, _ in DEMO_POINTS:
        values = [wave(points[fields["name"]], t / 10, noise=0.0) for t in range(1200)]
        limits = {k: fields.get(k) for k in ("lolo", "lo", "hi", "hihi")}
        if fields["name"] != TEMPERATURE:
            assert all(limits[k] is None or limits[k] < min(values) - noise for k in ("lolo", "lo"))
            assert all(limits[k] is None or limits[k] > max(values) + noise for k in ("hi", "hihi"))
            continue
        assert limits["hihi"] > max(values) + noise and max(values) > limits["hi"] + 1.0
        point = points[TEMPERATURE]
        period = 20.0 + zlib.crc32(point.tag.encode()) % 40  # as edge.simulator.wave
        assert period > 30
        above = math.asin((limits["hi"] + noise - 50) / 10)  # phase where the wave is surely over the limit
        clear = math.asin((limits["hi"] - fields["deadband"] - noise - 50) / 10)
        assert (math.pi - 2 * above) / (2 * math.pi) * period > fields["on_delay_s"] + 1
        assert (math.pi + 2 * clear) / (2 * math.pi) * period > fields["off_delay_s"] + 1


def test_a_reading_sent_with_the_demo_credential_raises_the_temperature_alarm(db, config):
    result = run(db, config)
    edge = Edge(db, config, result.token_path.read_text().strip(), code=DEMO_GATEWAY)
    normal = [edge.reading(fields["name"], 50.0) for fields, _ in DEMO_POINTS]
    answer = edge.post(normal, devices={"dcs": "online", "gds": "online"})
    assert len(answer["accepted"]) == 4 and answer["unknown"] == []
    assert open_alarms(db) == []
    edge.send(TEMPERATURE, 59.3)
    assert open_alarms(db) == []  # on-delay: 3 s
    clock.advance(timedelta(seconds=4))
    edge.send(TEMPERATURE, 59.8)
    [raised] = open_alarms(db)
    assert (raised.condition, raised.grade, raised.state, raised.value, raised.limit, raised.unit) == \
        ("hi", 3, "unack", 59.8, 58.0, "°C")
    assert raised.title == "南宁市兴宁区鑫安化工有限公司 反应釜R201温度 高报 三级（黄色）" and raised.instance_id
    with db.session() as s:
        task = s.scalar(select(HumanTask).where(HumanTask.instance_id == raised.instance_id,
                                                HumanTask.state == "open"))
        assert task.bpmn_id == "acknowledge" and task.assignee_id == load_user(s, "qiye.hg001").id
    edge.send(TEMPERATURE, 57.0)  # under the limit, inside the deadband (1.5 °C): still active
    clock.advance(timedelta(seconds=11))
    edge.send(TEMPERATURE, 56.9)
    assert alarm(db, raised.id).active
    edge.send(TEMPERATURE, 50.0)
    clock.advance(timedelta(seconds=11))
    edge.send(TEMPERATURE, 49.5)
    assert (alarm(db, raised.id).state, alarm(db, raised.id).active) == ("rtn_unack", False)
    assert trail(db, raised.id)[:2] == ["raised", "process_started"] and "returned" in trail(db, raised.id)


def test_without_the_demo_plant_there_is_no_demo_gateway(db, config):
    with db.transaction() as s:
        s.execute(update(Enterprise).where(Enterprise.credit_code == "91450102MA5K000001")
                  .values(credit_code="91450102MA5K00000X"))
    assert run(db, config) is None
    assert not (config.instance_path / "edge-demo.toml").exists()
