"""A 收文 in Chromium: the leader instructs on a phone, signing by hand; operations panels; cc and the sheet.

Screenshots land in tests/artifacts/browser/receipt-*.png.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from engine import operations
from tests.browser.conftest import PHONE, login, no_horizontal_scroll
from tests.engine.helpers import claim, complete, load_user, only_task, open_tasks, poll, start, upload

pytestmark = pytest.mark.browser
TITLE = "关于做好寒潮天气防御工作的紧急通知"


def _to_instruct(db, config) -> int:
    """A 收文 signed in, registered (by the server's job thread), screened and proposed."""
    instance_id = start(db, config, "zhang.wei", "document_receipt")
    sign_in = only_task(db, instance_id, "sign_in")
    claim(db, config, "zhang.wei", sign_in.id)
    file_id = upload(db, config, "zhang.wei", "来文.pdf")
    with db.transaction() as s:
        operations.approve(s, config, load_user(s, "zhang.wei"), sign_in.id, {
            "title": TITLE, "source_unit": "应急管理部", "source_number": "应急明电〔2026〕31号", "copies": 1,
            "secrecy": "公开", "urgency": "特急", "received_on": "2026-11-29", "deadline": "2026-12-03",
            "handling_type": "办理", "file": file_id})
    screen = poll(lambda: _open(db, instance_id, "screen"), timeout=15)  # registered by the server's job thread
    complete(db, config, "zhang.wei", screen.id, {"opinion": "来文规范，请李主任拟办"})
    complete(db, config, "li.na", only_task(db, instance_id, "propose").id,
             {"lead_unit": "ZCFGC", "assist_units": ["GHCWC"], "opinion": "拟请刘厅长批示，政策法规处主办"})
    return instance_id


def _open(db, instance_id, bpmn_id):
    found = open_tasks(db, instance_id, bpmn_id)
    return found[0] if found else None


def _draw_signature(page: Page) -> None:
    """Write a short scrawl on the signature pad, as a finger would."""
    pad = page.locator(".signature-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    for stroke in ([(0.15, 0.6), (0.25, 0.3), (0.32, 0.7), (0.4, 0.35)], [(0.5, 0.5), (0.62, 0.4), (0.7, 0.65),
                                                                          (0.85, 0.45)]):
        page.mouse.move(x + w * stroke[0][0], y + h * stroke[0][1])
        page.mouse.down()
        for px, py in stroke[1:]:
            page.mouse.move(x + w * px, y + h * py, steps=6)
        page.mouse.up()


def test_leader_signs_by_hand_on_a_phone(browser, server, shots, db, config):
    instance_id = _to_instruct(db, config)

    # 刘洋 on a phone: the instruction task, one column, big buttons, no horizontal scrolling.
    page = login(browser, server, "liu.yang", PHONE, has_touch=True)
    page.locator(".task-card a").first.click()
    expect(page.locator(".task-head h1")).to_have_text("批办")
    no_horizontal_scroll(page)
    shots(page, "liu.yang-phone-instruct")
    approve = page.locator(".action-bar button[value=approve]")
    expect(approve).to_have_text("批示")
    assert approve.bounding_box()["height"] >= 44

    # Without an opinion the server refuses; the drawn signature survives the round trip.
    _draw_signature(page)
    approve.click()
    expect(page.locator("#field-opinion .error")).to_contain_text("此项为必填项")
    kept = page.locator("input[name=signature]").input_value()
    assert kept.startswith("data:image/png;base64,")
    no_horizontal_scroll(page)
    shots(page, "liu.yang-phone-opinion-required")

    # A common opinion, a fresh signature, and 批示.
    page.locator("[data-phrase='同意']").click()
    page.fill("textarea[name=opinion]", "同意。请政策法规处牵头，规划财务处配合，12月3日前报结果。")
    page.locator("[data-clear-signature]").click()
    _draw_signature(page)
    shots(page, "liu.yang-phone-signed")
    page.locator(".action-bar button[value=approve]").click()
    expect(page.locator(".flash-success")).to_contain_text("已办理")
    page.goto(f"{server}/instances/{instance_id}")
    signature = page.locator(".timeline .signature-img").first
    expect(signature).to_be_visible()
    assert signature.evaluate("img => img.naturalWidth") > 300  # drawn at the phone's pixel ratio
    no_horizontal_scroll(page)
    shots(page, "liu.yang-phone-trail-with-signature")
    page.context.close()

    # 王芳 handles: the operations panels, then a copy to 周强.
    page = login(browser, server, "wang.fang", PHONE)
    page.locator(".task-card a").first.click()
    expect(page.locator(".task-head h1")).to_have_text("承办")
    for label in ("退回", "转办", "委派", "加签", "抄送"):
        expect(page.locator(".more-ops summary", has_text=label)).to_be_visible()
    page.locator(".more-ops summary", has_text="退回").click()
    expect(page.locator(".op-return select[name=target] option").first).to_contain_text("批办 · 刘洋")
    no_horizontal_scroll(page)
    shots(page, "wang.fang-phone-return-panel")
    page.locator(".more-ops summary", has_text="抄送").click()
    page.fill(".op-cc input[name=users]", "zhou.qiang")
    page.fill(".op-cc input[name=note]", "请周处阅知")
    page.locator(".op-cc button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text("已抄送")
    page.context.close()
    page = login(browser, server, "wang.fang")
    page.locator(".task-card a").first.click()
    page.locator(".more-ops summary", has_text="加签").click()
    shots(page, "wang.fang-desktop-handle")
    page.locator(".op-addSigner input[name=users]").press_sequentially("zhou")  # suggestions as one types
    expect(page.locator("#people-signers option[value='zhou.qiang']")).to_have_count(1)
    page.context.close()

    # 周强 reads it under 抄送我的; the read receipt shows on the instance.
    page = login(browser, server, "zhou.qiang", PHONE)
    page.goto(f"{server}/inbox?tab=cc")
    expect(page.locator(".task-card")).to_contain_text(TITLE)
    shots(page, "zhou.qiang-phone-copied-to-me")
    page.locator(".task-card a").first.click()
    expect(page.locator(".receipts")).to_contain_text("周强")
    page.context.close()

    # The handling sheet shows the signature with the leader's opinion.
    page = login(browser, server, "li.na")
    page.goto(f"{server}/instances/{instance_id}/sheet")
    expect(page.locator("body")).to_contain_text("同意。请政策法规处牵头")
    expect(page.locator("img[src*='/signatures/']").first).to_be_visible()
    shots(page, "li.na-handling-sheet")
    page.context.close()
