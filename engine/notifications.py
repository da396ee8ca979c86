"""In-app notifications: write, list, mark read."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import page_of
from .models import Notification, User, utcnow


def send(session: Session, users: list[User], title: str, body: str = "", category: str = "reminder",
         link: str = "", instance_id: int | None = None, dedupe_key: str | None = None, **extra) -> int:
    """Write one notification per user; with a dedupe_key, users who already have it are skipped."""
    if dedupe_key:
        done = set(session.scalars(select(Notification.user_id).where(Notification.dedupe_key == dedupe_key)))
        users = [u for u in users if u.id not in done]
    for user in users:
        session.add(Notification(user_id=user.id, category=category, title=title[:300], body=body, link=link,
                                 instance_id=instance_id, extra=extra or None, dedupe_key=dedupe_key))
    return len(users)


def for_user(session: Session, user: User, unread_only: bool = False, page: int = 1, per_page: int = 20):
    stmt = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return page_of(session, stmt, (Notification.created_at.desc(), Notification.id.desc()), page, per_page)


def unread_count(session: Session, user: User) -> int:
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)))


def mark_read(session: Session, user: User, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (all when ids is None)."""
    stmt = update(Notification).where(Notification.user_id == user.id, Notification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(ids))
    return session.execute(stmt.values(read_at=utcnow())).rowcount
