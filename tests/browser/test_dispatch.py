"""Every demo user in turn, in Chromium: a 发文 from draft to distribution, with screenshots.

Screenshots land in tests/artifacts/browser/ (or $EMFLOW_TEST_ARTIFACTS/browser/).
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, login, no_horizontal_scroll

pytestmark = pytest.mark.browser
TITLE = "关于开展汛期安全生产大检查的通知"


def _open_first_task(page: Page, tab: str = "mine") -> None:
    page.goto(page.url.split("/inbox")[0] + f"/inbox?tab={tab}")
    page.locator(".task-card a").first.click()
    expect(page.locator(".task-head h1")).to_be_visible()


def _submit(page: Page) -> None:
    page.locator(".task-form button[type=submit]").first.click()
    page.wait_for_load_state()


def test_dispatch_from_draft_to_distribution(browser, server, shots, tmp_path):
    body = tmp_path / "正文.pdf"
    body.write_bytes(b"%PDF-1.4\n% emflow browser test\n")

    # 张伟 drafts: first submits an incomplete form and sees the field errors, then completes it.
    page = login(browser, server, "zhang.wei")
    page.goto(f"{server}/start")
    shots(page, "zhang.wei-start")
    page.click("form[action='/start/document_dispatch'] button")
    expect(page.locator(".task-head h1")).to_have_text("拟稿")
    _submit(page)
    expect(page.locator("#field-title .error")).to_contain_text("此项为必填项")
    shots(page, "zhang.wei-draft-errors")
    page.fill("input[name='f.title']", TITLE)
    page.select_option("select[name='f.doc_type']", "通知")
    page.select_option("select[name='f.secrecy']", "公开")
    page.select_option("select[name='f.urgency']", "加急")
    page.fill("textarea[name='f.main_recipients']", "各市应急管理局")
    page.set_input_files("input[name='upload.body_file']", str(body))
    page.check("input[name='f.countersign_units'][value='ZCFGC']")
    page.fill("textarea[name='opinion']", "请审核")
    shots(page, "zhang.wei-draft")
    _submit(page)
    expect(page.locator(".flash-success")).to_contain_text("已办理")
    page.context.close()

    # 李娜 reviews (核稿).
    page = login(browser, server, "li.na")
    expect(page.locator(".task-card").first).to_contain_text(TITLE)
    shots(page, "li.na-inbox")
    _open_first_task(page)
    expect(page.locator("#field-body_file .file-link")).to_have_text("正文.pdf")
    page.check("input[name='f.review_decision'][value='approve']")
    page.fill("textarea[name='opinion']", "同意，请政策法规处会签")
    shots(page, "li.na-review")
    _submit(page)
    page.context.close()

    # 王芳 countersigns (会签) for 政策法规处.
    page = login(browser, server, "wang.fang")
    _open_first_task(page)
    expect(page.locator(".task-head .tag")).to_have_text("政策法规处")
    page.check("input[name='f.countersign_decision'][value='agree']")
    page.fill("textarea[name='opinion']", "无意见")
    _submit(page)
    page.context.close()

    # 刘洋 signs off (签发) on a phone.
    page = login(browser, server, "liu.yang", PHONE)
    no_horizontal_scroll(page)
    shots(page, "liu.yang-phone-inbox")
    _open_first_task(page)
    no_horizontal_scroll(page)
    page.check("input[name='f.sign_decision'][value='approve']")
    page.fill("textarea[name='opinion']", "同意印发")
    shots(page, "liu.yang-phone-sign-off")
    _submit(page)
    page.context.close()

    # 张伟 claims the distribution task once the number is allocated (a job in the server's worker thread).
    page = login(browser, server, "zhang.wei")
    for _ in range(50):
        page.goto(f"{server}/inbox?tab=group")
        if page.locator(".task-card").count():
            break
        page.wait_for_timeout(200)
    _open_first_task(page, "group")
    shots(page, "zhang.wei-claim")
    page.click(".claim-panel button")
    expect(page.locator("#field-doc_number .value")).to_contain_text(re.compile(r"桂应急发〔\d{4}〕1号"))
    page.check("input[name='f.seal_applied'][value='true']")
    page.fill("input[name='f.print_copies']", "30")
    page.fill("input[name='f.distribution.0.recipient']", "南宁市应急管理局")
    page.fill("input[name='f.distribution.0.copies']", "2")
    page.select_option("select[name='f.distribution.0.method']", "机要交换")
    page.click("[data-add-row]")
    page.fill("input[name='f.distribution.1.recipient']", "柳州市应急管理局")
    page.fill("input[name='f.distribution.1.copies']", "2")
    page.select_option("select[name='f.distribution.1.method']", "电子公文")
    page.fill("input[name='f.distributed_on']", "2026-12-01")
    shots(page, "zhang.wei-distribute")
    _submit(page)

    # The instance: completed, every opinion and signer in the history, the diagram drawn.
    page.goto(f"{server}/instances")
    page.locator(".cards .card a").first.click()
    expect(page.locator(".pill-completed")).to_be_visible()
    history = page.locator(".timeline")
    for text in ("请审核", "同意，请政策法规处会签", "无意见", "同意印发", "李娜", "王芳", "刘洋", "流程办结"):
        expect(history).to_contain_text(text)
    expect(page.locator(".diagram[data-rendered=true] .djs-element.completed").first).to_be_attached()
    shots(page, "zhang.wei-instance-completed")
    page.context.close()

    # The other demo users: scope decides what they see.
    page = login(browser, server, "admin")
    page.goto(f"{server}/instances")
    expect(page.locator(".cards .card")).to_have_count(1)
    page.goto(f"{server}/admin")
    shots(page, "admin")
    page.context.close()
    page = login(browser, server, "zhou.qiang")
    expect(page.locator(".empty")).to_be_visible()
    page.context.close()
    for username in ("chen.jie", "zhao.min"):
        page = login(browser, server, username, PHONE)
        page.goto(f"{server}/instances")
        expect(page.locator(".empty")).to_be_visible()
        no_horizontal_scroll(page)
        shots(page, f"{username}-sees-nothing-of-the-province")
        page.context.close()
    page = login(browser, server, "qiye.hg001", PHONE)
    page.goto(f"{server}/start")
    expect(page.locator(".empty")).to_be_visible()
    page.context.close()


def test_file_picker_names_the_files_and_keeps_back_one_too_large(browser, server, shots, tmp_path):
    small = tmp_path / "正文.pdf"
    small.write_bytes(b"%PDF-1.4\n% emflow browser test\n")
    big = tmp_path / "扫描件.pdf"
    with open(big, "wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)  # one byte over the default limit (sparse: nothing is written)
    page = login(browser, server, "zhang.wei", PHONE)
    page.goto(f"{server}/start")
    page.click("form[action='/start/document_dispatch'] button")
    field = page.locator("#field-body_file")
    # The page's own words, whatever language the browser speaks, and the limit before anyone hits it.
    expect(field.locator(".file-picker-button")).to_have_text("选择文件")
    expect(field.locator(".file-picker-names")).to_have_text("未选择文件")
    expect(field).to_contain_text("单个文件不超过 20 MB")

    # Too large: named as such, and the form is not sent (the request would fail whole, losing what was typed).
    page.fill("input[name='f.title']", TITLE)
    page.set_input_files("input[name='upload.body_file']", str(big))
    expect(field.locator(".file-picker-name.error")).to_have_text("扫描件.pdf（20.0 MB）：超过 20 MB，无法上传")
    shots(page, "zhang.wei-phone-file-too-large")
    url = page.url
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    _submit(page)
    expect(page).to_have_url(url)
    assert posts == []  # kept back in the page: the server would refuse it too, but only after the whole upload
    expect(page.locator("input[name='f.title']")).to_have_value(TITLE)
    expect(page.locator(".task-form button[type=submit]").first).to_be_enabled()
    no_horizontal_scroll(page)

    # A file of an allowed size goes: the server's own checks answer (the other required fields are empty).
    page.set_input_files("input[name='upload.body_file']", str(small))
    expect(field.locator(".file-picker-name")).to_have_text("正文.pdf（31 B）")
    _submit(page)
    expect(page.locator("#field-doc_type .error")).to_contain_text("此项为必填项")
    expect(page.locator("input[name='f.title']")).to_have_value(TITLE)
