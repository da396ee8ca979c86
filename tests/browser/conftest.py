"""A real emflow server (embedded mode, as `emflow serve` runs it) and Debian's Chromium via Playwright."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO_PASSWORD

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--lang=zh-CN", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(config, tmp_path):
    """`emflow serve` on this test's database, with its job and timer threads."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMFLOW_")}
    env.update(EMFLOW_DATABASE_URL=config.database_url, EMFLOW_INSTANCE_PATH=str(tmp_path),
               EMFLOW_SECRET_KEY="browser-test-secret")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).parent / "emflow"), "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            log.close()
            raise AssertionError(f"emflow serve did not start:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an event loop running
    in this thread while it is open, and later tests in the same worker (edge, pyhanko) need asyncio.run()."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the browser tests never download one)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def shots(artifacts, request):
    """shots(page, name): a full-page screenshot, numbered per test module, in artifacts/browser/."""
    folder = artifacts / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    counter = iter(range(1, 1000))

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(folder / f"{prefix}-{next(counter):02d}-{name}.png"), full_page=True)
    return take


def login(browser, base: str, username: str, viewport=DESKTOP, **context) -> Page:
    """A fresh browser context logged in as ``username``, on the inbox."""
    page = browser.new_context(viewport=viewport, locale="zh-CN", **context).new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/inbox$"))
    return page


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide on a {page.viewport_size['width']}px screen"
