"""POST /api/v1/telemetry with the gateway's credential (not a user token), idempotent by reading id, unknown points
reported and acknowledged, ordered by seq; the latest value and history within the caller's data scope; the
registry: one-time gateway credential, Excel import of point lists (all or nothing, errors by row)."""
from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import Workbook

from engine.monitoring import HEADERS
from tests.engine.alarm_helpers import LEVEL, enterprise_id, open_alarms, register


@pytest.fixture
def gw(db):
    token, ids = register(db, [LEVEL])
    return {"Authorization": f"Bearer {token}"}, ids["plc.level"]


def reading(seq: int, value: float, point: str = "plc.level", ts: datetime | None = None, **kw) -> dict:
    ts = ts or datetime.now(UTC)
    return {"id": kw.pop("id", str(uuid.uuid4())), "point": point, "seq": seq,
            "ts": ts.isoformat().replace("+00:00", "Z"), "value": value, "quality": "good", "historical": False, **kw}


def body(*readings, devices=None) -> dict:
    return {"gateway": "gw-01", "readings": list(readings),
            "status": {"devices": devices or {"plc": "online"}, "dropped": 0, "backlog": 0, "oldest_backlog_ts": None,
                       "readings_per_minute": 60.0}}


def test_the_gateway_credential_is_required_and_a_user_token_is_not_one(client, api, gw):
    headers, _ = gw
    assert client.post("/api/v1/telemetry", json=body()).status_code == 401
    bad = client.post("/api/v1/telemetry", json=body(), headers={"Authorization": "Bearer gw_wrong"})
    assert bad.status_code == 401 and bad.get_json()["code"] == "gateway_token_invalid"
    assert client.post("/api/v1/telemetry", json=body(), headers=api("admin")).status_code == 401
    ok = client.post("/api/v1/telemetry", json=body(), headers=headers)
    assert ok.status_code == 200 and ok.get_json() == {"accepted": [], "duplicates": [], "unknown": []}
    other = client.post("/api/v1/telemetry", json={**body(), "gateway": "gw-99"}, headers=headers)
    assert other.status_code == 403


def test_idempotent_by_reading_id_and_unknown_points_are_acknowledged(client, gw):
    headers, _ = gw
    first, stranger = reading(1, 5.0), reading(1, 1.0, point="plc.nonexistent")
    answer = client.post("/api/v1/telemetry", json=body(first, stranger), headers=headers).get_json()
    assert answer == {"accepted": [first["id"], stranger["id"]], "duplicates": [], "unknown": [stranger["id"]]}
    again = client.post("/api/v1/telemetry", json=body(first, reading(2, 6.0, id=first["id"])), headers=headers)
    assert again.get_json()["duplicates"] == [first["id"], first["id"]] and again.get_json()["accepted"] == []


def test_invalid_readings_are_refused_by_field(client, gw):
    headers, _ = gw
    answer = client.post("/api/v1/telemetry", json=body({**reading(1, 5.0), "ts": "yesterday"}), headers=headers)
    assert answer.status_code == 422 and "readings[0].ts" in answer.get_json()["errors"]
    nan = client.post("/api/v1/telemetry", data=json.dumps(body(reading(1, float("nan")))),
                      content_type="application/json", headers=headers)
    assert nan.status_code == 422 and "readings[0].value" in nan.get_json()["errors"]
    long_name = client.post("/api/v1/telemetry", json=body(devices={"d" * 101: "online"}), headers=headers)
    assert long_name.status_code == 422 and "status.devices" in long_name.get_json()["errors"]


def test_latest_is_the_highest_seq_and_history_is_in_scope(client, api, gw, db):
    headers, pid = gw
    now = datetime.now(UTC)
    client.post("/api/v1/telemetry", json=body(reading(5, 7.5, ts=now)), headers=headers)
    client.post("/api/v1/telemetry", json=body(*(reading(s, float(s), ts=now - timedelta(minutes=10 - s),
                                                          historical=True) for s in range(1, 5))), headers=headers)
    latest = client.get(f"/api/v1/points/{pid}/latest", headers=api("chen.jie")).get_json()
    assert (latest["seq"], latest["value"], latest["limits"]["hi"]) == (5, 7.5, 8.0)
    frm = (now - timedelta(minutes=8)).isoformat()
    history = client.get(f"/api/v1/points/{pid}/history", query_string={"from": frm, "to": now.isoformat()},
                         headers=api("qiye.hg001")).get_json()
    assert [r["seq"] for r in history["items"]] == [2, 3, 4]
    everything = client.get(f"/api/v1/points/{pid}/history", headers=api("admin")).get_json()
    assert [r["seq"] for r in everything["items"]] == [1, 2, 3, 4, 5]
    for username in ("zhao.min",):  # 柳州 never sees 兴宁区
        assert client.get(f"/api/v1/points/{pid}/latest", headers=api(username)).status_code == 404
        assert client.get(f"/api/v1/points/{pid}/history", headers=api(username)).status_code == 404


def test_alarms_through_the_api(client, api, gw, db):
    headers, pid = gw
    client.post("/api/v1/telemetry", json=body(reading(1, 8.6)), headers=headers)
    [raised] = open_alarms(db, pid)
    listed = client.get("/api/v1/alarms", query_string={"state": "open"}, headers=api("huang.jian")).get_json()
    assert [a["id"] for a in listed] == [raised.id] and listed[0]["grade"] == 3
    assert client.get("/api/v1/alarms", headers=api("zhao.min")).get_json() == []
    assert client.get(f"/api/v1/alarms/{raised.id}", headers=api("zhao.min")).status_code == 404
    assert client.post(f"/api/v1/alarms/{raised.id}/acknowledge", json={}, headers=api("chen.jie")).status_code == 403
    acked = client.post(f"/api/v1/alarms/{raised.id}/acknowledge", json={"comment": "收到"},
                        headers=api("qiye.hg001"))
    assert acked.status_code == 200 and acked.get_json()["state"] == "ack"


def test_gateway_credential_is_shown_once_and_rotates(client, api, db):
    answer = client.post("/api/v1/gateways", json={"code": "gw-02", "enterprise_id": enterprise_id(db)},
                         headers=api("admin"))
    assert answer.status_code == 201
    token = answer.get_json()["token"]
    assert client.post("/api/v1/gateways", json={"code": "gw-03", "enterprise_id": enterprise_id(db)},
                       headers=api("chen.jie")).status_code == 403
    send = {**body(), "gateway": "gw-02"}
    assert client.post("/api/v1/telemetry", json=send, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    new = client.post(f"/api/v1/gateways/{answer.get_json()['id']}/token", headers=api("admin")).get_json()["token"]
    assert client.post("/api/v1/telemetry", json=send, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/api/v1/telemetry", json=send, headers={"Authorization": f"Bearer {new}"}).status_code == 200


def workbook(rows: list[list]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(list(HEADERS))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_excel_import_of_point_lists_is_all_or_nothing(client, api, gw, db):
    headers, _ = gw
    gateway_id = client.post("/api/v1/gateways", json={"code": "gw-xl", "enterprise_id": enterprise_id(db)},
                             headers=api("admin")).get_json()["id"]
    good = ["tank.t1_level", "1号罐液位", "YW", "m", 0.5, 2, 1, 4, 8, 3, 9, 1, 0.2, 10, 30, "tanks", "储罐液位"]
    bad_rows = [good, ["tank.t2_level", "", "", "m", None, None, None, None, 8, None],
                ["tank.t3_level", "", "", "m", None, None, None, None, 9, 3, 8, 1], [],
                ["tank.t1_level"], ["no_dot", "", "", "", None, None, None, None, "abc", 3]]
    refused = client.post(f"/api/v1/gateways/{gateway_id}/points/import", headers=api("admin"),
                          data={"file": (io.BytesIO(workbook(bad_rows)), "points.xlsx")})
    assert refused.status_code == 422
    assert sorted(refused.get_json()["errors"]) == ["row 3", "row 4", "row 6", "row 7"]
    answer = client.post(f"/api/v1/gateways/{gateway_id}/points/import", headers=api("admin"),
                         data={"file": (io.BytesIO(workbook([good, ["tank.t2_level", "2号罐液位"]])), "p.xlsx")})
    assert answer.status_code == 200 and answer.get_json()["imported"] == 2
    again = client.post(f"/api/v1/gateways/{gateway_id}/points/import", headers=api("admin"),
                        data={"file": (io.BytesIO(workbook([good])), "p.xlsx")})
    assert again.get_json()["points"][0]["id"] == answer.get_json()["points"][0]["id"]  # updated, not duplicated
    not_excel = client.post(f"/api/v1/gateways/{gateway_id}/points/import", headers=api("admin"),
                            data={"file": (io.BytesIO(b"name,hi\n"), "p.csv")})
    assert not_excel.status_code == 422


def test_administrators_list_gateways_and_set_their_switch_and_silence_threshold(client, api, gw):
    listed = client.get("/api/v1/gateways", headers=api("admin"))
    assert listed.status_code == 200
    [row] = [g for g in listed.get_json() if g["code"] == "gw-01"]
    assert (row["enabled"], row["silent_after_s"], row["effective_silent_after_s"]) == (True, None, 300)
    assert client.get("/api/v1/gateways", headers=api("qiye.hg001")).status_code == 403

    changed = client.patch(f"/api/v1/gateways/{row['id']}", json={"silent_after_s": 900, "enabled": False},
                           headers=api("admin"))
    assert changed.status_code == 200
    assert (changed.get_json()["silent_after_s"], changed.get_json()["effective_silent_after_s"],
            changed.get_json()["enabled"]) == (900, 900, False)
    headers, _ = gw
    assert client.post("/api/v1/telemetry", json=body(reading(1, 5.0)), headers=headers).status_code == 401

    bad = client.patch(f"/api/v1/gateways/{row['id']}", json={"silent_after_s": 10}, headers=api("admin"))
    assert bad.status_code == 422 and set(bad.get_json()["errors"]) == {"silent_after_s"}
    assert client.patch(f"/api/v1/gateways/{row['id']}", json={"enabled": True},
                        headers=api("qiye.hg001")).status_code == 403
    assert client.patch("/api/v1/gateways/999999", json={"enabled": True}, headers=api("admin")).status_code == 404
    again = client.patch(f"/api/v1/gateways/{row['id']}", json={"enabled": True, "silent_after_s": None},
                         headers=api("admin")).get_json()
    assert (again["enabled"], again["silent_after_s"], again["effective_silent_after_s"]) == (True, None, 300)
    assert client.post("/api/v1/telemetry", json=body(reading(1, 5.0)), headers=headers).status_code == 200
