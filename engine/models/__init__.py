"""SQLAlchemy models of the engine."""
from .audit import ChainHead, InstanceEvent, SystemEvent
from .base import Base, utcnow
from .jobs import Holiday, Job, NumberAllocation, NumberSequence
from .org import Enterprise, Group, GroupMember, Region, Role, Unit, User, UserRole
from .process import MessageSubscription, ProcessInstance, ProcessModel, ProcessVersion
from .tasks import (
    Attachment,
    HumanTask,
    Notification,
    OpinionPhrase,
    ProxyGrant,
    Signature,
    TaskCandidate,
    TaskCopy,
)

__all__ = [
    "Attachment", "Base", "ChainHead", "Enterprise", "Group", "GroupMember", "Holiday", "HumanTask",
    "InstanceEvent", "Job", "MessageSubscription", "Notification", "NumberAllocation", "NumberSequence",
    "OpinionPhrase", "ProcessInstance", "ProcessModel", "ProcessVersion", "ProxyGrant", "Region", "Role",
    "Signature", "SystemEvent", "TaskCandidate", "TaskCopy", "Unit", "User", "UserRole", "utcnow",
]
