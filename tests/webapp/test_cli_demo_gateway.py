"""``emflow demo`` and ``emflow up`` tell the user how to feed the demo plant's gateway: the simulate and run commands
with the real config path; a rerun writes nothing and rotates nothing; a lost credential is explained, not replaced."""
from __future__ import annotations

import hashlib

from sqlalchemy import select

from engine.config import Config
from engine.db import Database
from engine.models.monitoring import Gateway
from webapp import cli
from webapp.cli import main


def token_hash() -> str:
    db = Database(Config.from_env())
    with db.session() as s:
        value = s.scalar(select(Gateway.token_hash).where(Gateway.code == "gw-xinan-01"))
    db.dispose()
    return value


def test_demo_and_up_print_the_commands_that_feed_the_demo_gateway(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    for name in ("EMFLOW_DATABASE_URL", "EMFLOW_REDIS_URL", "EMFLOW_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", [".venv/bin/emflow", "demo"])
    toml, token = tmp_path / "edge-demo.toml", tmp_path / "edge-demo.token"
    feed = [f"  .venv/bin/emflow edge simulate --config {toml}", f"  .venv/bin/emflow edge run --config {toml}"]

    assert main(["demo", "--password", "Another2026"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == feed and "gw-xinan-01" in out[-3]
    assert 'url = "http://127.0.0.1:5000"' in toml.read_text()
    credential = token.read_text().strip()
    assert hashlib.sha256(credential.encode()).hexdigest() == token_hash()
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (toml, token)}

    assert main(["demo", "--password", "Another2026"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == feed
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files
    assert hashlib.sha256(credential.encode()).hexdigest() == token_hash()

    served = []
    monkeypatch.setattr(cli, "_serve", lambda config, host, port, workers, threads: served.append(port))
    assert main(["up", "--password", "Another2026", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert served == [8123] and "\n".join(feed) in out
    assert "edge-demo.toml sends to http://127.0.0.1:5000: edit its [platform] url" in out  # written for port 5000
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files

    token.unlink()
    assert main(["demo", "--password", "Another2026"]) == 0
    out = capsys.readouterr().out
    assert f"{token} is missing or holds an old credential" in out
    assert "call POST http://127.0.0.1:5000/api/v1/gateways/1/token as admin" in out and "Another2026" not in out
    assert out.splitlines()[-2:] == feed
    assert not token.exists() and hashlib.sha256(credential.encode()).hexdigest() == token_hash()


def test_up_on_a_fresh_instance_points_the_collector_at_the_port_it_serves(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    for name in ("EMFLOW_DATABASE_URL", "EMFLOW_REDIS_URL", "EMFLOW_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_serve", lambda *args: None)
    assert main(["up", "--password", "Another2026", "--port", "8124", "--host", "0.0.0.0"]) == 0  # noqa: S104
    out = capsys.readouterr().out
    assert f"emflow edge run --config {tmp_path / 'edge-demo.toml'}" in out and "sends to" not in out
    assert 'url = "http://127.0.0.1:8124"' in (tmp_path / "edge-demo.toml").read_text()
