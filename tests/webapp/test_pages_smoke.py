def test_login_page_renders(client):
    page = client.get("/login")
    assert page.status_code == 200


def test_inbox_after_login(web, client):
    response = web.login("zhang.wei")
    assert response.status_code == 302
    page = client.get("/inbox")
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
