"""Login, lockout, idle timeout, logout, CSRF, and login_required on every page."""
import time

import pytest
from sqlalchemy import select

from engine.models import SystemEvent
from tests.webapp.conftest import csrf_token

PAGES = ["/inbox", "/inbox?tab=group", "/start", "/instances", "/notifications", "/admin", "/lookup/users?q=li"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_and_logout(web, client, db):
    assert web.login("li.na").status_code == 302
    page = client.get("/inbox")
    assert "李娜" in page.get_data(as_text=True)
    response = web.post("/logout")
    assert response.status_code == 302
    assert client.get("/inbox").status_code == 302
    with db.session() as s:
        kinds = list(s.scalars(select(SystemEvent.kind).order_by(SystemEvent.seq)))
    assert kinds[-2:] == ["login", "logout"]


def test_wrong_password_is_refused_in_chinese(web):
    response = web.login("li.na", "wrong-password1")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.get_data(as_text=True)


def test_five_failures_lock_the_account(web):
    for _ in range(4):
        assert web.login("wang.fang", "nope12345").status_code == 401
    locked = web.login("wang.fang", "nope12345")
    assert "账号已被临时锁定" in locked.get_data(as_text=True)
    again = web.login("wang.fang")  # the right password is refused while locked
    assert again.status_code == 401 and "账号已被临时锁定" in again.get_data(as_text=True)


def test_login_without_csrf_token_is_rejected(client):
    response = client.post("/login", data={"username": "li.na", "password": "Demo2026x"})
    assert response.status_code == 400


def test_idle_session_expires(web, client, config):
    web.login("li.na")
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - config.session_idle_minutes * 60 - 5
    response = client.get("/inbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = client.get("/login")
    assert "长时间未操作" in page.get_data(as_text=True)


def test_open_redirect_after_login_is_refused(client):
    token = csrf_token(client, "/login")
    response = client.post("/login?next=//evil.example/x",
                           data={"username": "li.na", "password": "Demo2026x", "csrf_token": token})
    assert response.headers["Location"].endswith("/inbox")


def test_security_headers(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
