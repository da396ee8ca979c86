"""Web fixtures: an app on the per-test database, a test client, and login helpers."""
from __future__ import annotations

import re

import pytest

from tests.conftest import DEMO_PASSWORD
from webapp import create_app
from webapp.platform import Platform


@pytest.fixture
def app(config):
    platform = Platform(config)
    application = create_app(config, platform=platform, overrides={"TESTING": True})
    yield application
    platform.stop()


@pytest.fixture
def client(app):
    return app.test_client()


LIMITS = {"max_upload_bytes": 600 * 1024, "max_request_bytes": 4 * 1024 * 1024}


@pytest.fixture
def limited_client(config):
    """A client of an app with small upload limits (600 KB a file, 4 MB a request), so tests can cross them."""
    limited = config.with_(**LIMITS)
    platform = Platform(limited)
    yield create_app(limited, platform=platform, overrides={"TESTING": True}).test_client()
    platform.stop()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    page = client.get(path)
    match = CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class Browser:
    """Form-posting helper around the test client (keeps the CSRF token)."""

    def __init__(self, client):
        self.client = client

    def login(self, username: str, password: str = DEMO_PASSWORD):
        token = csrf_token(self.client, "/login")
        return self.client.post("/login", data={"username": username, "password": password, "csrf_token": token})

    def post(self, path: str, data: dict | None = None, page: str | None = None, **kw):
        token = csrf_token(self.client, page or "/inbox")
        payload = dict(data or {})
        payload["csrf_token"] = token
        return self.client.post(path, data=payload, **kw)


@pytest.fixture
def web(client):
    return Browser(client)


@pytest.fixture
def api(client):
    """api('zhang.wei') -> headers with a bearer token for that user."""
    def headers(username: str) -> dict:
        response = client.post("/api/v1/auth/token", json={"username": username, "password": DEMO_PASSWORD})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    return headers
