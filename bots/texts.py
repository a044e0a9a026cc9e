"""Rendering core facts as text in a reader's language: cards, prices, quotes, moments.

Every word comes from the message catalogues (knowledge/messages); this module only decides
which message and fills in the values.
"""

from __future__ import annotations

from datetime import datetime

from billing.quotes import Quote
from bots.events import Reply
from concierge.errors import DomainError
from concierge.lifecycle import State
from concierge.pricing import Pricing, PricingMode
from concierge.reach import Reach
from concierge.views import ExpertCard, ExpertView, PersonView, SessionLine
from knowledge.i18n import Catalogues, moment, money
from knowledge.taxonomy import load_taxonomy

HEALTH = "health"  # its listings carry a disclaimer: help, not medical care


def reach_or_fail(person: PersonView) -> Reach:
    if person.reach is None:
        raise DomainError("this person cannot be reached on any channel")
    return person.reach


class Texts:
    def __init__(self, catalogues: Catalogues) -> None:
        self.catalogues = catalogues
        self._taxonomy = load_taxonomy()

    def __call__(self, key: str, language: str, /, **values: object) -> str:
        return self.catalogues.text(key, language, **values)

    def say(self, person: PersonView, key: str, /, **values: object) -> Reply:
        """Message `key` to `person`, in their language."""
        return Reply(reach_or_fail(person), self(key, person.locale, **values))

    def price(self, pricing: Pricing, language: str) -> str:
        if pricing.mode is PricingMode.FREE:
            return self("bot.price.free", language)
        amount = money(pricing.amount, pricing.currency, language)
        return self(f"bot.price.{pricing.mode.value}", language, amount=amount)

    def category(self, category: str, language: str) -> str:
        for entry in self._taxonomy.categories:
            if entry.id == category:
                return entry.label(language)
        return category

    def categories(self) -> list[str]:
        return [entry.id for entry in self._taxonomy.categories]

    def card(self, number: int, card: ExpertCard, language: str, zone: str) -> str:
        if card.rating_count and card.rating is not None:
            rating = self("bot.card.rating", language, stars=f"{card.rating:.1f}", count=card.rating_count)
        else:
            rating = self("bot.card.new", language)
        if card.available_now:
            when = self("bot.card.now", language)
        elif card.next_free is not None:
            when = self("bot.card.next", language, when=moment(card.next_free, language, zone))
        else:
            when = self("bot.card.later", language)
        reasons = " · ".join(self(f"bot.reason.{reason}", language) for reason in card.reasons)
        return self(
            "bot.card",
            language,
            number=number,
            name=card.name,
            headline=card.headline,
            languages=", ".join(card.languages),
            rating=rating,
            price=self.price(card.pricing, language),
            when=when,
            reasons=reasons or "—",
        )

    def quote(self, quote: Quote, language: str, *, for_expert: bool) -> str:
        if quote.free:
            return self("bot.quote.free", language)
        total = money(quote.customer_max, quote.currency, language)
        unit = money(quote.unit_price, quote.currency, language)
        payout = money(quote.expert_payout, quote.currency, language)
        if for_expert:
            return self("bot.quote.expert", language, payout=payout, total=total)
        if quote.max_minutes is not None:
            return self("bot.quote.per_minute", language, rate=unit, count=quote.max_minutes, total=total)
        return self("bot.quote.per_session", language, total=total)

    def session_line(self, line: SessionLine, language: str, zone: str) -> str:
        return self(
            "bot.sessions.line",
            language,
            when=moment(line.created_at, language, zone),
            role=self(f"bot.role.{line.role}", language),
            other=line.other,
            state=self(f"bot.state.{line.state.value}", language),
            text=_short(line.text),
            price=self.price(line.pricing, language),
        )

    def listing(self, expert: ExpertView, language: str) -> str:
        hours = "; ".join(f"{day} {', '.join(ranges)}" for day, ranges in expert.hours.items()) or "—"
        status = "bot.profile.online" if expert.online else "bot.profile.offline"
        if not expert.published:
            status = "bot.profile.draft"
        listing = self(
            "bot.profile.listing",
            language,
            headline=expert.headline or "—",
            bio=_short(expert.bio, 200) or "—",
            categories=", ".join(self.category(c, language) for c in expert.categories) or "—",
            languages=", ".join(expert.languages) or "—",
            price=self.price(expert.pricing, language),
            zone=expert.time_zone,
            hours=hours,
            status=self(status, language),
        )
        if HEALTH in expert.categories:
            listing += "\n" + self("listing.health_disclaimer", language)
        return listing

    def state(self, state: State, language: str) -> str:
        return self(f"bot.state.{state.value}", language)

    def moment(self, when: datetime, language: str, zone: str) -> str:
        return moment(when, language, zone)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
