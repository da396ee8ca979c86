"""Human tasks: one row per BPMN user task instance; the inbox is an indexed query over them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class HumanTask(Base):
    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_task_assignee_open", "assignee_id", "state", "created_at"),
        Index("ix_task_completed_by", "completed_by_id", "completed_at"),
        Index("ix_task_instance_state", "instance_id", "state"),
        Index("ix_task_next_action", "state", "next_action_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow task UUID
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"))
    process_key: Mapped[str] = mapped_column(String(64))
    process_name: Mapped[str] = mapped_column(String(200), default="")
    instance_title: Mapped[str] = mapped_column(String(300), default="")
    bpmn_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    form_key: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | completed | cancelled
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    region_code: Mapped[str] = mapped_column(String(12))
    enterprise_id: Mapped[int | None] = mapped_column(Integer)
    loop_item: Mapped[str | None] = mapped_column(String(200))
    assignment_error: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opinion: Mapped[str | None] = mapped_column(Text)
    # Approval operations (see engine/operations.py):
    kind: Mapped[str] = mapped_column(String(16), default="task", server_default="task")  # task | signer
    parent_task_id: Mapped[str | None] = mapped_column(String(36), index=True)  # a signer's main task
    sign_position: Mapped[str | None] = mapped_column(String(8))  # before | after | parallel
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))  # who delegated it (it comes back)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set once signers are added and never cleared: only then does a completion look for signers still to sign
    # (the flag is on the row the completion locks, so a signer added just before is never missed).
    has_signers: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    pending: Mapped[dict | None] = mapped_column(JSONType)  # a decision waiting for added signers
    origin_task_id: Mapped[str | None] = mapped_column(String(36))  # the task whose completion created it
    returned_from: Mapped[str | None] = mapped_column(String(128))  # the step that returned it here
    return_to_me: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the next timeout action
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def waiting_for_signers(self) -> bool:
        """Decided, and waiting for added signers (the inbox's plain rows carry this flag, not the decision)."""
        return self.pending is not None


class TaskCandidate(Base):
    """A user or a group offered an unassigned task to claim."""

    __tablename__ = "task_candidate"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("human_task.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("group.id"), index=True)


class Attachment(Base):
    """An uploaded file referenced from form data by id."""

    __tablename__ = "attachment"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), index=True)


class Notification(Base):
    """An in-app message to one user (reminders, urges, alarms)."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_user", "user_id", "read_at", "created_at"),
        UniqueConstraint("user_id", "dedupe_key", name="uq_notification_dedupe"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32), default="reminder")
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str] = mapped_column(String(300), default="")
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extra: Mapped[dict | None] = mapped_column(JSONType)
    dedupe_key: Mapped[str | None] = mapped_column(String(128))  # a retried job does not notify twice


class TaskCopy(Base):
    """A copy of an instance sent to someone to read (抄送/传阅), with its read receipt."""

    __tablename__ = "task_copy"
    __table_args__ = (Index("ix_task_copy_user", "user_id", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OpinionPhrase(Base):
    """A common opinion (同意, 已阅 …): shared when user_id is empty, else one user's own."""

    __tablename__ = "opinion_phrase"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(200))
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class Signature(Base):
    """A handwritten signature image (PNG) given with an opinion."""

    __tablename__ = "signature"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProxyGrant(Base):
    """The proxy may record the principal's (a leader's) paper opinions on their tasks (领导意见代录)."""

    __tablename__ = "proxy_grant"
    __table_args__ = (UniqueConstraint("principal_id", "proxy_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    proxy_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
