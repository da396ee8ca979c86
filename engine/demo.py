"""The demo organisation (see the architecture page) and deployment of every bundled process.

Running it again updates the same rows: it never duplicates users, units or process versions.
"""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .auth import set_password
from .config import Config
from .connectors import Registry
from .deploy import bundle_from_dir, deploy
from .models import Enterprise, Group, GroupMember, ProxyGrant, Region, Role, Unit, User, UserRole
from .monitoring import load_demo as load_alarm_duty
from .org import invalidate_regions

REGIONS = [
    ("450000", "广西壮族自治区", None, 1),
    ("450100", "南宁市", "450000", 2),
    ("450102", "兴宁区", "450100", 3),
    ("450200", "柳州市", "450000", 2),
]
UNITS = [  # code, name, parent code, region
    ("GXYJT", "广西壮族自治区应急管理厅", None, "450000"),
    ("TLD", "厅领导", "GXYJT", "450000"),
    ("BGS", "厅办公室", "GXYJT", "450000"),
    ("ZCFGC", "政策法规处", "GXYJT", "450000"),
    ("GHCWC", "规划财务处", "GXYJT", "450000"),
    ("NNYJJ", "南宁市应急管理局", None, "450100"),
    ("LZYJJ", "柳州市应急管理局", None, "450200"),
]
ROLES = [
    ("staff", "工作人员", []),
    ("doc_clerk", "文书", []),
    ("office_director", "办公室主任", ["instance.supervise"]),
    ("division_head", "处室负责人", []),
    ("dept_head", "厅长", []),
    ("process_admin", "流程管理员", ["process.deploy", "instance.admin", "message.send"]),
    ("enterprise_user", "企业用户", []),
]
GROUPS = [("office_clerks", "办公室文书组")]
ENTERPRISES = [("91450102MA5K000001", "南宁市兴宁区鑫安化工有限公司", "450102", "危险化学品")]
# username, name, title, unit, region, roles, groups, superuser, enterprise credit code
USERS = [
    ("admin", "系统管理员", "平台管理员", "GXYJT", "450000", ["process_admin"], [], True, None),
    ("zhang.wei", "张伟", "办公室文书", "BGS", "450000", ["staff", "doc_clerk"], ["office_clerks"], False, None),
    ("li.na", "李娜", "办公室主任", "BGS", "450000", ["staff", "office_director"], [], False, None),
    ("wang.fang", "王芳", "政策法规处处长", "ZCFGC", "450000", ["staff", "division_head"], [], False, None),
    ("zhou.qiang", "周强", "规划财务处处长", "GHCWC", "450000", ["staff", "division_head"], [], False, None),
    ("liu.yang", "刘洋", "厅长", "TLD", "450000", ["staff", "dept_head"], [], False, None),
    ("chen.jie", "陈杰", "南宁市应急管理局科员", "NNYJJ", "450100", ["staff"], [], False, None),
    ("zhao.min", "赵敏", "柳州市应急管理局科员", "LZYJJ", "450200", ["staff"], [], False, None),
    ("qiye.hg001", "黄海", "安全管理员", None, "450102", ["enterprise_user"], [], False, "91450102MA5K000001"),
]
PROXIES = [("liu.yang", "zhang.wei")]  # (leader, clerk who records the leader's paper opinions)
LEADERS = {"GXYJT": "liu.yang", "TLD": "liu.yang", "BGS": "li.na", "ZCFGC": "wang.fang", "GHCWC": "zhou.qiang"}


def _upsert(session: Session, model, key: dict, **values):
    row = session.scalar(select(model).filter_by(**key))
    if row is None:
        row = model(**key, **values)
        session.add(row)
    else:
        for k, v in values.items():
            setattr(row, k, v)
    session.flush()
    return row


def load_org(session: Session, password: str) -> dict[str, User]:
    """Create or update the demo regions, units, roles, groups and users; every user gets ``password``."""
    for code, name, parent, level in REGIONS:
        _upsert(session, Region, {"code": code}, name=name, parent_code=parent, level=level)
    units = {}
    for i, (code, name, parent, region) in enumerate(UNITS):
        units[code] = _upsert(session, Unit, {"code": code}, name=name, region_code=region,
                              parent_id=units[parent].id if parent else None, sort_order=i)
    roles = {code: _upsert(session, Role, {"code": code}, name=name, permissions=perms) for code, name, perms in ROLES}
    groups = {code: _upsert(session, Group, {"code": code}, name=name) for code, name in GROUPS}
    enterprises = {cc: _upsert(session, Enterprise, {"credit_code": cc}, name=name, region_code=region, industry=ind)
                   for cc, name, region, ind in ENTERPRISES}
    users = {}
    for username, name, title, unit, region, role_codes, group_codes, superuser, ent in USERS:
        user = _upsert(session, User, {"username": username}, name=name, title=title,
                       unit_id=units[unit].id if unit else None, region_code=region, is_superuser=superuser,
                       is_active=True, enterprise_id=enterprises[ent].id if ent else None)
        set_password(user, password)
        session.execute(delete(UserRole).where(UserRole.user_id == user.id))
        session.execute(delete(GroupMember).where(GroupMember.user_id == user.id))
        session.flush()
        for code in role_codes:
            session.add(UserRole(user_id=user.id, role_id=roles[code].id))
        for code in group_codes:
            session.add(GroupMember(group_id=groups[code].id, user_id=user.id))
        users[username] = user
    for code, username in LEADERS.items():
        units[code].leader_id = users[username].id
    for leader, clerk in PROXIES:
        _upsert(session, ProxyGrant, {"principal_id": users[leader].id, "proxy_id": users[clerk].id})
    session.flush()
    load_alarm_duty(session, password)
    for user in users.values():
        session.expire(user, ["roles", "groups"])
    invalidate_regions()
    return users


def deploy_all(session: Session, config: Config, actor: User | None = None, registry: Registry | None = None):
    """Deploy every process folder under processes/; returns [(key, version, created)]."""
    registry = registry or Registry.discover()
    out = []
    for folder in sorted(p for p in config.processes_dir.iterdir() if (p / "process.json").is_file()):
        version, created = deploy(session, bundle_from_dir(folder, config.forms_dir), actor, registry.operations())
        out.append((version.process_key, version.version, created))
    return out
