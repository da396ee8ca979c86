"""SQLAlchemy models of the engine."""
from . import (
    monitoring,  # noqa: F401 - the monitoring tables (import them from engine.models.monitoring)
    oa,  # noqa: F401 - the OA integration's tables (import them from engine.models.oa)
)
from .audit import ChainHead, InstanceEvent, SystemEvent
from .base import Base, utcnow
from .bus import BusCall, BusConsumer, BusService
from .integration import ConnectorConfig, Incident, Secret
from .jobs import Holiday, Job, NumberAllocation, NumberSequence
from .messaging import RateLimitHit, SmsMessage, UserChannelPref
from .org import Enterprise, Group, GroupMember, OrgVersion, Region, Role, Unit, User, UserRole
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
    "Attachment", "Base", "BusCall", "BusConsumer", "BusService", "ChainHead", "ConnectorConfig", "Enterprise",
    "Group", "GroupMember", "Holiday", "HumanTask",
    "Incident", "InstanceEvent", "Job", "MessageSubscription", "Notification", "NumberAllocation", "NumberSequence",
    "OpinionPhrase", "OrgVersion", "ProcessInstance", "ProcessModel", "ProcessVersion", "ProxyGrant", "RateLimitHit",
    "Region",
    "Role", "Secret", "Signature", "SmsMessage", "SystemEvent", "TaskCandidate", "TaskCopy", "Unit", "User",
    "UserChannelPref", "UserRole", "utcnow",
]
