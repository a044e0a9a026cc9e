"""The typed domain model, mapped to tables; one module per noun."""

from concierge.model.article import ArticleOffer, ArticleOutcome, BusinessArticle
from concierge.model.base import Base, new_id, utcnow
from concierge.model.block import Block
from concierge.model.business import Business, Community, InviteCode, RosterScope
from concierge.model.expert import Expert
from concierge.model.money_back import MoneyBackRequest, MoneyBackStatus
from concierge.model.payment import LedgerEntry, Notice, Payment, PaymentKind, PaymentStatus, WebhookEvent
from concierge.model.person import Channel, ChannelIdentity, Person
from concierge.model.request import HelpRequest, Offer, OfferStatus
from concierge.model.review import Review
from concierge.model.room import Room
from concierge.model.session import LifecycleEvent, Session

__all__ = [
    "ArticleOffer",
    "ArticleOutcome",
    "Base",
    "Block",
    "Business",
    "BusinessArticle",
    "Channel",
    "ChannelIdentity",
    "Community",
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
    "Payment",
    "PaymentKind",
    "PaymentStatus",
    "Person",
    "Review",
    "Room",
    "RosterScope",
    "Session",
    "WebhookEvent",
    "new_id",
    "utcnow",
]
