"""The emflow command: init, demo (repeatable), deploy with clear rejections."""
import pytest
from sqlalchemy import func, select

from engine.config import Config
from engine.db import Database
from engine.models import ProcessVersion, User, UserRole
from webapp.cli import main


def test_init_and_demo_twice_is_harmless(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("EMFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMFLOW_REDIS_URL", raising=False)
    assert main(["init"]) == 0
    assert main(["demo", "--password", "Another2026"]) == 0
    assert main(["demo", "--password", "Another2026"]) == 0
    out = capsys.readouterr().out
    assert "document_dispatch: version 1 (new)" in out and out.count("version 1") == 6
    db = Database(Config.from_env())
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 11  # with the alarm duty officers
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == 3
        assert s.scalar(select(func.count()).select_from(UserRole)) == 20
    db.dispose()


def test_deploy_reports_rejections(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("EMFLOW_DATABASE_URL", raising=False)
    assert main(["init"]) == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "process.json").write_text('{"key": "broken", "name": "坏"}')
    (broken / "broken.bpmn").write_text("<bpmn:definitions>")
    assert main(["deploy", str(broken)]) == 1
    assert "broken.bpmn, line 1: invalid XML" in capsys.readouterr().err


def test_worker_refuses_embedded_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("EMFLOW_REDIS_URL", raising=False)
    assert main(["worker"]) == 2
    assert main(["scheduler"]) == 2
    assert "EMFLOW_REDIS_URL" in capsys.readouterr().err


def test_a_bad_setting_is_named_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMFLOW_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("EMFLOW_MAX_REQUEST_MB", "lots")
    with pytest.raises(SystemExit) as stopped:
        main(["init"])
    assert str(stopped.value) == ("emflow: EMFLOW_MAX_REQUEST_MB must be a whole number of megabytes (at least 1), "
                                  "not 'lots'")
