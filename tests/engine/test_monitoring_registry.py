"""engine/monitoring's registry lookups for the gateway page: the enterprise picker and naming an enterprise."""
from __future__ import annotations

import pytest

from engine import monitoring
from engine.errors import Forbidden, ValidationFailed
from tests.engine.alarm_helpers import PLANT, add_enterprise
from tests.engine.helpers import load_user


def test_enterprises_by_fragment_and_by_exact_name_or_code(db):
    add_enterprise(db, "平南县金矿尾矿库有限公司", "尾矿库")
    add_enterprise(db, "同名企业", "尾矿库")
    add_enterprise(db, "同名企业", "危险化学品")
    with db.session() as s:
        admin = load_user(s, "admin")
        assert [e.name for e in monitoring.enterprises(s, admin, "尾矿")] == ["平南县金矿尾矿库有限公司"]
        assert [e.credit_code for e in monitoring.enterprises(s, admin, PLANT[-6:])] == [PLANT]
        assert monitoring.enterprises(s, admin, "_") == []  # LIKE wildcards are plain characters
        assert len(monitoring.enterprises(s, admin, limit=2)) == 2
        assert monitoring.enterprise_named(s, admin, PLANT).credit_code == PLANT
        assert monitoring.enterprise_named(s, admin, "平南县金矿尾矿库有限公司").industry == "尾矿库"
        for text, code in (("同名企业", "ambiguous"), ("没有这家", "unknown"), ("", "unknown")):
            with pytest.raises(ValidationFailed) as caught:
                monitoring.enterprise_named(s, admin, text)
            assert caught.value.errors["enterprise"][0]["code"] == code
        regulator = load_user(s, "huang.jian")
        with pytest.raises(Forbidden):
            monitoring.enterprises(s, regulator, "尾矿")
        with pytest.raises(Forbidden):
            monitoring.enterprise_named(s, regulator, PLANT)
