"""SQLAlchemy models of the engine."""
from .audit import ChainHead, InstanceEvent, SystemEvent
from .base import Base, utcnow
from .integration import ConnectorConfig, Incident, Secret
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
    "Attachment", "Base", "ChainHead", "ConnectorConfig", "Enterprise", "Group", "GroupMember", "Holiday", "HumanTask",
    "Incident", "InstanceEvent", "Job", "MessageSubscription", "Notification", "NumberAllocation", "NumberSequence",
    "OpinionPhrase", "ProcessInstance", "ProcessModel", "ProcessVersion", "ProxyGrant", "Region", "Role",
    "Secret", "Signature", "SystemEvent", "TaskCandidate", "TaskCopy", "Unit", "User", "UserRole", "utcnow",
]
