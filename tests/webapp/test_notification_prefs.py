"""Message settings: the page (CSRF, Chinese) and the REST round trip of channel preferences."""
from __future__ import annotations

from sqlalchemy import select

from engine.models import UserChannelPref
from tests.engine.helpers import load_user


def give_mobile(db, username: str, number: str = "13800000001") -> None:
    with db.transaction() as s:
        load_user(s, username).phone = number


def stored(db, username: str) -> dict:
    with db.session() as s:
        user = load_user(s, username)
        return {r.category: r.channels for r in s.scalars(select(UserChannelPref).where(
            UserChannelPref.user_id == user.id))}


def test_the_page_is_linked_from_messages_and_saves_with_csrf(db, web, client):
    give_mobile(db, "wang.fang")
    web.login("wang.fang")
    assert "/notifications/preferences" in client.get("/notifications").get_data(as_text=True)

    page = client.get("/notifications/preferences").get_data(as_text=True)
    for text in ("消息设置", "站内消息", "短信", "催办", "预警", "系统通知", "138****0001"):
        assert text in page, text
    assert 'name="sms" value="urge" id="sms-urge" checked' in page
    assert 'name="sms" value="reminder" id="sms-reminder" aria' in page

    refused = client.post("/notifications/preferences", data={"sms": ["reminder"]})
    assert refused.status_code == 400 and stored(db, "wang.fang") == {}

    saved = web.post("/notifications/preferences", {"sms": ["reminder", "alarm"]}, page="/notifications/preferences")
    assert saved.status_code == 302
    prefs = stored(db, "wang.fang")
    assert (prefs["reminder"], prefs["alarm"], prefs["urge"], prefs["cc"]) == (
        ["inapp", "sms"], ["inapp", "sms"], ["inapp"], ["inapp"])
    assert "消息设置已保存" in client.get(saved.headers["Location"]).get_data(as_text=True)


def test_without_a_mobile_number_the_page_explains_and_stores_nothing(db, web, client):
    web.login("li.na")
    page = client.get("/notifications/preferences").get_data(as_text=True)
    assert "没有您的手机号码" in page and '保存</button>' not in page
    web.post("/notifications/preferences", {"sms": ["alarm"]}, page="/notifications/preferences")
    assert stored(db, "li.na") == {}


def test_the_api_round_trips_preferences(db, client, api):
    give_mobile(db, "wang.fang", "138 0000 0002")
    headers = api("wang.fang")

    got = client.get("/api/v1/notifications/preferences", headers=headers).get_json()
    assert got["preferences"]["alarm"] == ["inapp", "sms"] and got["preferences"]["message"] == ["inapp"]
    assert (got["mobile"], got["sms_available"]) == ("138****0002", False)  # no sms connector configured here
    assert got["categories"] == ["reminder", "urge", "alarm", "cc", "message", "system"]

    put = client.put("/api/v1/notifications/preferences", headers=headers,
                     json={"preferences": {"alarm": [], "message": ["inapp", "sms"]}})
    assert put.status_code == 200
    again = client.get("/api/v1/notifications/preferences", headers=headers).get_json()
    assert again == put.get_json()
    assert (again["preferences"]["alarm"], again["preferences"]["message"], again["preferences"]["urge"]) == (
        ["inapp"], ["inapp", "sms"], ["inapp", "sms"])

    bad = client.put("/api/v1/notifications/preferences", headers=headers,
                     json={"preferences": {"weather": ["sms"]}})
    assert bad.status_code == 422 and "preferences.weather" in bad.get_json()["errors"]
    assert client.get("/api/v1/notifications/preferences").status_code == 401
