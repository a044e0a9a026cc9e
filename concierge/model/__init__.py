"""The typed domain model, mapped to tables; one module per noun."""

from concierge.model.article import ArticleOffer, ArticleOutcome, BusinessArticle
from concierge.model.base import Base, new_id, utcnow
from concierge.model.birth_date_review import BirthDateReview, ReviewStatus
from concierge.model.block import Block
from concierge.model.booking import Booking, BookingStatus, CancellationPolicy, Outcome
from concierge.model.business import (
    Business,
    BusinessAdmin,
    BusinessAlert,
    Community,
    InviteCode,
    RosterScope,
)
from concierge.model.contact_flag import ContactFlag
from concierge.model.expert import Expert
from concierge.model.job import ScheduledJob
from concierge.model.money_back import MoneyBackRequest, MoneyBackStatus
from concierge.model.operator import Operator, RecordingAccess
from concierge.model.payment import LedgerEntry, Notice, Payment, PaymentKind, PaymentStatus, WebhookEvent
from concierge.model.person import Channel, ChannelIdentity, Person
from concierge.model.report import Report, ReportStatus
from concierge.model.request import HelpRequest, Offer, OfferStatus
from concierge.model.review import Review
from concierge.model.room import Room
from concierge.model.session import LifecycleEvent, Session

__all__ = [
    "ArticleOffer",
    "ArticleOutcome",
    "Base",
    "BirthDateReview",
    "Block",
    "Booking",
    "BookingStatus",
    "Business",
    "BusinessAdmin",
    "BusinessAlert",
    "BusinessArticle",
    "CancellationPolicy",
    "Channel",
    "ChannelIdentity",
    "Community",
    "ContactFlag",
    "Expert",
    "HelpRequest",
    "InviteCode",
    "LedgerEntry",
    "LifecycleEvent",
    "MoneyBackRequest",
    "MoneyBackStatus",
    "Notice",
    "Offer",
    "OfferStatus",
    "Operator",
    "Outcome",
    "Payment",
    "PaymentKind",
    "PaymentStatus",
    "Person",
    "RecordingAccess",
    "Report",
    "ReportStatus",
    "Review",
    "ReviewStatus",
    "Room",
    "RosterScope",
    "ScheduledJob",
    "Session",
    "WebhookEvent",
    "new_id",
    "utcnow",
]
