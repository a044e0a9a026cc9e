"""The dialogue engine: an incoming event plus the conversation state → replies.

Channel-agnostic and free of channel I/O: it reads and changes the conversation it is given,
asks the concierge core for everything that touches data, and returns `Reply` objects for any
number of people (the customer, the experts being notified). Delivering them is the
dispatcher's job. Every text comes from the message catalogues, in the reader's language.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from datetime import datetime

from bots import booking_talk
from bots.booking_talk import BookingTalk
from bots.business_menu import BusinessMenu
from bots.conversation import Conversation
from bots.events import Button, Incoming, Kind, Reply
from bots.listing_setup import ListingSetup
from bots.parsing import parse_birth_date
from bots.texts import HEALTH, Texts, reach_or_fail
from concierge.claims import AlreadyTaken
from concierge.errors import DomainError, InviteRefused, NotFound
from concierge.lifecycle import FINISHED_STATES, State
from concierge.linking import LinkRefused
from concierge.model import MoneyBackStatus
from concierge.moderation import MuteReason
from concierge.money_back import MoneyBackRefused
from concierge.onboarding import ListingRefused
from concierge.people import AgeGate
from concierge.reports import MAX_REASON_CHARS, MIN_REASON_CHARS, ReportRefused
from concierge.reviews import BLIND_DAYS, ReviewRefused
from concierge.service import Concierge
from concierge.views import (
    Accepted,
    Cancelled,
    NoMatch,
    OfferNotice,
    PaymentNotice,
    PersonView,
    Proposal,
    Queued,
    Round,
    SelfHelp,
)
from knowledge.abuse import is_abusive
from knowledge.i18n import LANGUAGES, moment, money, negotiate
from video_gateway.opening import RoomLinks

Handler = Callable[[Incoming, PersonView, Conversation, list[Reply]], Awaitable[None]]
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
    "zh": "中文",
    "ja": "日本語",
}


class Dialogue:
    def __init__(self, concierge: Concierge, texts: Texts, *, max_chars: int) -> None:
        self.concierge = concierge
        self.t = texts
        self.max_chars = max_chars
        self.setup = ListingSetup(concierge, texts)
        self.booking = BookingTalk(concierge, texts)
        self.business = BusinessMenu(concierge, texts)
        self._commands: dict[str, Handler] = {
            "start": self._start,
            "help": self._help,
            "lang": self._lang,
            "cancel": self._cancel,
            "sessions": self._sessions,
            "bookings": self._bookings,
            "schedule": self._schedule,
            "reviews": self._reviews,
            "blocks": self._blocks,
            "birthdate": self._birth_date_command,
            "profile": self._profile,
            "expert": self._expert,
            "online": self._online,
            "offline": self._offline,
            "link": self._link,
            "ask": self._ask_command,
            "setup": self._setup_community,
            "edit": self.setup.edit_command,
            "publish": self.setup.publish_command,
            "roster": self.business.roster_command,
            "budget": self.business.budget_command,
            "report": self.business.report_command,
        }

    # ------------------------------------------------------------------ entry points

    async def handle(self, event: Incoming, conversation: Conversation) -> list[Reply]:
        person = await self.concierge.identify(
            event.channel,
            event.user_id,
            name=event.name,
            locale=negotiate([event.locale]) if event.locale else None,
        )
        replies: list[Reply] = []
        if person.muted_until is not None:
            # Told once per mute, then silence: answering each message would reward flooding.
            if await self.concierge.moderation.tell_once(person.id, person.muted_until):
                reason = MuteReason(person.muted_reason or MuteReason.OPERATOR.value)
                replies.append(self._muted(person, person.muted_until, reason))
            return replies
        if event.kind is Kind.TEXT and is_abusive(event.text):
            until = await self.concierge.moderation.mute(person.id, MuteReason.ABUSE)
            await self.concierge.moderation.tell_once(person.id, until)
            replies.append(self._muted(person, until, MuteReason.ABUSE))
            return replies
        refused = person.gate is AgeGate.REFUSED
        if refused and not (event.kind is Kind.COMMAND and event.command[0] == "birthdate"):
            replies.append(self.t.say(person, "bot.age.refused"))
            return replies
        try:
            await self._route(event, person, conversation, replies)
        except AlreadyTaken:
            replies.append(self.t.say(person, "bot.offer.taken"))
        except InviteRefused as exc:
            replies.append(self.t.say(person, f"bot.expert.refused.{exc.reason}"))
        except ListingRefused as exc:
            replies.append(self.t.say(person, "bot.listing.refused", problems="; ".join(exc.problems)))
        except ReportRefused as exc:
            replies.append(self._report_refused(person, exc.reason))
        except LinkRefused as exc:
            replies.append(self.t.say(person, f"bot.link.refused.{exc.reason}"))
        except NotFound:
            replies.append(self.t.say(person, "bot.gone"))
        except DomainError as exc:
            replies.append(self.t.say(person, "bot.refused", reason=str(exc)))
        return replies

    async def _route(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        if event.kind is Kind.UNSUPPORTED:
            out.append(self.t.say(person, "bot.unsupported"))
            return
        if event.kind is Kind.COMMAND:
            name, _ = event.command
            handler = self._commands.get(name)
            if handler is None:
                out.append(self.t.say(person, "bot.unknown_command", command=f"/{name}"[:40]))
                return
            await handler(event, person, conv, out)
            return
        if event.kind is Kind.PRESS:
            await self._press(event, person, conv, out)
            return
        text = event.text.strip()
        if not text:
            out.append(self.t.say(person, "bot.empty"))
            return
        if len(text) > self.max_chars:
            out.append(self.t.say(person, "bot.too_long", limit=self.max_chars, count=self.max_chars))
            return
        if conv.step == "birth_date":
            await self._birth_date(event, person, conv, out, text)
        elif conv.step.startswith("biz:"):
            await self.business.answer(person, conv, text, out)
        elif conv.step.startswith("setup:") or conv.step == "price_amount":
            await self.setup.answer(person, conv, text, out)
        elif conv.step.startswith(("review:", "reply:")):
            await self._review_text(person, conv, text, out)
        elif conv.step.startswith("moneyback:"):
            await self._money_back_reason(person, conv, text, out)
        elif conv.step.startswith("report:"):
            await self._report_reason(person, conv, text, out)
        else:
            await self._ask(event, person, conv, out, text)

    # ------------------------------------------------------------------ asking for help

    async def _ask(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply], text: str
    ) -> None:
        if person.gate is AgeGate.UNKNOWN:
            conv.pending_text = text
            # The answer may come elsewhere (a Discord DM after /ask in a guild): the request
            # still belongs to the community it was asked in.
            conv.pending_community = event.community
            conv.step = "birth_date"
            out.append(self.t.say(person, "bot.age.ask"))
            return
        if conv.request_id is not None and conv.self_help:
            # Writing again instead of answering the article: the new message is the request.
            with suppress(DomainError):
                await self.concierge.cancel(person, conv.request_id)
            conv.request_id, conv.self_help = None, False
        if conv.request_id is not None and await self.concierge.is_open(conv.request_id):
            out.append(self.t.say(person, "bot.ask.already_open"))
            return
        community = (event.channel, event.community) if event.community else None
        if community is not None:
            used_up = await self.concierge.sponsorship.exhausted_in(*community)
            if used_up is not None:  # told before anyone accepts, not at the payment link
                out.append(self.t.say(person, "bot.sponsor.exhausted", business=used_up.business))
        outcome = await self.concierge.ask(
            person, text, community=community, adopt_language=not conv.language_fixed
        )
        detected = outcome.language if isinstance(outcome, Proposal | SelfHelp) else None
        if detected in LANGUAGES and detected != person.locale and not conv.language_fixed:
            assert detected is not None
            person = replace(person, locale=detected)  # the core adopted it with the request
        answered = len(out)
        if isinstance(outcome, SelfHelp):
            self._self_help(person, conv, outcome, out)
        else:
            self._outcome(person, conv, outcome, out)
        if community is not None and len(out) > answered:
            # Inside a business's community the answer comes under the business's name.
            brand = await self.concierge.businesses.brand_in(*community)
            if brand is not None:
                first = out[answered]
                out[answered] = replace(first, text=f"{brand.name}\n{first.text}")

    def _self_help(self, person: PersonView, conv: Conversation, offer: SelfHelp, out: list[Reply]) -> None:
        """The article first, with the way on to the experts one press away (no retyping)."""
        conv.request_id, conv.self_help = offer.request_id, True
        lang = person.locale
        buttons = (
            (
                Button(self.t("bot.article.solved_button", lang), f"kb_solved:{offer.request_id}"),
                Button(self.t("bot.article.expert_button", lang), f"kb_expert:{offer.request_id}"),
            ),
        )
        text = self.t("bot.article.offer", lang, title=offer.title, body=offer.body)
        out.append(Reply(reach_or_fail(person), text, buttons, ref=f"article:{offer.request_id}"))

    async def _article_press(
        self, action: str, request_id: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        if request_id != conv.request_id or not conv.self_help:
            out.append(self.t.say(person, "bot.gone"))
            return
        conv.self_help = False
        if action == "kb_solved":
            await self.concierge.solved_by_article(person, request_id)
            conv.request_id = None
            out.append(self.t.say(person, "bot.article.solved"))
            return
        self._outcome(person, conv, await self.concierge.still_want_expert(person, request_id), out)

    def _outcome(
        self, person: PersonView, conv: Conversation, outcome: Proposal | Queued | NoMatch, out: list[Reply]
    ) -> None:
        lang = person.locale
        if isinstance(outcome, NoMatch):
            conv.request_id = None
            out.append(self.t.say(person, f"bot.ask.{outcome.reason}"))
            return
        conv.request_id = outcome.request_id
        if isinstance(outcome, Queued):
            out.append(self._queue_reply(person, outcome.request_id, outcome.place, edit=False))
            return
        body = "\n\n".join(
            self.t.card(i, card, lang, person.time_zone) for i, card in enumerate(outcome.cards, 1)
        )
        # Buttons carry the position among all experts shown for the request, so a press on an
        # older card message (before "none of these") still names the right expert.
        # A later time is booked with one expert: their button opens their free times.
        pick, pick_key = (
            ("slots:{position}", "bot.cards.pick_time")
            if outcome.scheduled
            else (
                f"pick:{outcome.request_id}:{{position}}",
                "bot.cards.pick",
            )
        )
        picks = tuple(
            (
                Button(
                    self.t(pick_key, lang, number=i, name=card.name),
                    pick.format(position=outcome.offset + i - 1),
                ),
            )
            for i, card in enumerate(outcome.cards, 1)
        )
        footer: tuple[Button, ...] = (Button(self.t("bot.cards.more", lang), f"more:{outcome.request_id}"),)
        if not outcome.scheduled:
            anyone = Button(self.t("bot.cards.anyone", lang), f"anyone:{outcome.request_id}:{outcome.offset}")
            footer = (anyone, *footer)
        if any(HEALTH in card.categories for card in outcome.cards):
            body += "\n\n" + self.t("listing.health_disclaimer", lang)
        out.append(
            Reply(
                reach_or_fail(person),
                self.t("bot.cards.intro", lang, count=len(outcome.cards)) + "\n\n" + body,
                (*picks, footer),
                ref=f"cards:{outcome.request_id}",
            )
        )

    async def _ask_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        _, args = event.command
        if not args:
            out.append(self.t.say(person, "bot.ask.usage"))
            return
        if len(args) > self.max_chars:
            out.append(self.t.say(person, "bot.too_long", limit=self.max_chars, count=self.max_chars))
            return
        await self._ask(event, person, conv, out, args)

    async def _press(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        action, _, rest = event.text.partition(":")
        if action in booking_talk.ACTIONS:
            await self.booking.press(action, rest, person, conv, out)
        elif action in {"pick", "anyone", "more"}:
            await self._customer_press(action, rest, person, conv, out)
        elif action in {"kb_solved", "kb_expert"}:
            await self._article_press(action, rest, person, conv, out)
        elif action == "leave":  # leaving the waiting line
            if rest != conv.request_id:
                out.append(self.t.say(person, "bot.gone"))
                return
            conv.request_id = None
            await self._withdraw(person, rest, out)
        elif action in {"accept", "decline"}:
            await self._expert_press(action, rest, person, out)
        elif action == "lang":
            await self._set_language(rest, person, conv, out)
        elif action in {"mb_ask", "mb", "mb_esc"}:
            await self._money_back_press(action, rest, person, conv, out)
        elif action in {"block", "unblock"}:
            await self._block_press(action, rest, person, out)
        elif action == "report":
            await self._report_press(rest, person, conv, out)
        elif action == "rate":
            await self._rate_press(rest, person, conv, out)
        elif action == "review_skip":
            if conv.step == f"review:{rest}":
                conv.step = "idle"
            out.append(self.t.say(person, "bot.rate.saved"))
        elif action == "reply":
            conv.step = f"reply:{rest}"
            out.append(self.t.say(person, "bot.reviews.reply_ask"))
        elif action.startswith("biz_"):
            await self.business.press(action, rest, person, conv, out)
        else:
            await self.setup.press(action, rest, person, conv, out)

    async def _customer_press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        request_id, _, number = rest.partition(":")
        if request_id != conv.request_id:
            out.append(self.t.say(person, "bot.gone"))
            return
        if action == "more":
            outcome = await self.concierge.widen(person, request_id)
            self._outcome(person, conv, outcome, out)
            return
        shown = await self.concierge.shown_in_order(request_id)
        if not number.isdigit() or int(number) >= len(shown):
            out.append(self.t.say(person, "bot.gone"))
            return
        position = int(number)
        chosen = [shown[position]] if action == "pick" else shown[position : position + 3]
        round_ = await self.concierge.choose(person, request_id, chosen)
        names = ", ".join(notice.expert.name for notice in round_.notices)
        out.append(
            Reply(
                reach_or_fail(person),
                self.t(
                    "bot.cards.asked",
                    person.locale,
                    names=names,
                    seconds=self.concierge.settings.offer_timeout_seconds,
                    count=len(round_.notices),
                ),
                ref=f"cards:{request_id}",
                edit=True,
            )
        )
        out.extend(self.notices(round_.notices))

    async def _expert_press(self, action: str, request_id: str, person: PersonView, out: list[Reply]) -> None:
        if action == "decline":
            round_ = await self.concierge.decline(person, request_id)
            out.append(self._edit(person, f"offer:{request_id}", "bot.offer.declined"))
            if round_ is not None:
                out.extend(self.rounds([round_]))
            return
        try:
            accepted = await self.concierge.accept(person, request_id)
        except AlreadyTaken:
            out.append(self._edit(person, f"offer:{request_id}", "bot.offer.taken"))
            return
        out.extend(self.accepted(accepted))

    # ------------------------------------------------------------------ what others are told

    def notices(self, notices: tuple[OfferNotice, ...]) -> list[Reply]:
        replies = []
        for notice in notices:
            expert = notice.expert
            if expert.reach is None:
                continue
            lang = expert.locale
            language = LANGUAGE_NAMES.get(notice.language or "", notice.language or "?")
            replies.append(
                Reply(
                    expert.reach,
                    self.t(
                        "bot.offer.new",
                        lang,
                        text=notice.text,
                        language=language,
                        price=self.t.price(notice.pricing, lang),
                        seconds=self.concierge.settings.offer_timeout_seconds,
                    ),
                    (
                        (
                            Button(self.t("bot.offer.accept", lang), f"accept:{notice.request_id}"),
                            Button(self.t("bot.offer.decline", lang), f"decline:{notice.request_id}"),
                        ),
                    ),
                    ref=f"offer:{notice.request_id}",
                )
            )
        return replies

    def accepted(self, accepted: Accepted) -> list[Reply]:
        expert, customer, room = accepted.expert, accepted.customer, accepted.room
        won = self._edit(
            expert,
            f"offer:{accepted.request_id}",
            "bot.offer.won",
            text=accepted.text,
            quote=self.t.quote(accepted.quote, expert.locale, for_expert=True),
        )
        replies = [
            self._edit(other, f"offer:{accepted.request_id}", "bot.offer.taken") for other in accepted.taken
        ]
        if accepted.refused is not None:
            replies.append(replace(won, text=f"{won.text}\n{self.t('bot.pay.failed_expert', expert.locale)}"))
            if customer.reach is not None:
                reason = self.t(f"bot.pay.reason.{accepted.refused}", customer.locale)
                replies.append(self.t.say(customer, "bot.pay.failed", name=expert.name, reason=reason))
            return replies
        if accepted.state is State.AWAITING_PAYMENT:
            waiting = self.t("bot.pay.expert_waiting", expert.locale)
            replies.insert(0, replace(won, text=f"{won.text}\n{waiting}"))
        else:
            replies.insert(0, self._with_room(won, expert, room.expert if room else None, room))
        if customer.reach is None:
            return replies
        told = self.t.say(
            customer,
            "bot.accepted",
            name=expert.name,
            quote=self.t.quote(accepted.quote, customer.locale, for_expert=False),
        )
        if accepted.sponsor:
            sponsored = self.t("bot.pay.sponsored", customer.locale, business=accepted.sponsor)
            told = replace(told, text=f"{told.text}\n{sponsored}")
        if accepted.state is State.AWAITING_PAYMENT and accepted.checkout_url:
            total = money(accepted.quote.customer_max, accepted.quote.currency, customer.locale)
            ask = self.t(
                "bot.pay.customer",
                customer.locale,
                total=total,
                minutes=self.concierge.settings.payment_minutes,
            )
            button = Button(self.t("bot.pay.button", customer.locale, total=total), url=accepted.checkout_url)
            replies.append(replace(told, text=f"{told.text}\n{ask}", buttons=((button,),)))
        else:
            replies.append(self._with_room(told, customer, room.customer if room else None, room))
        return replies

    def payment_notices(self, notices: list[PaymentNotice]) -> list[Reply]:
        replies: list[Reply] = []
        for notice in notices:
            customer, expert = notice.customer, notice.expert
            c_lang, e_lang = customer.locale, expert.locale
            # Web visitors give no name: the expert reads "Customer has paid", not " has paid".
            who = customer.name or self.t("receipt.customer", e_lang)

            def amount(value: int, language: str, notice: PaymentNotice = notice) -> str:
                return money(value, notice.currency, language)

            if notice.kind == "paid":
                room = notice.room
                if customer.reach is not None:
                    paid = self.t.say(customer, "bot.pay.paid")
                    replies.append(self._with_room(paid, customer, room.customer if room else None, room))
                if expert.reach is not None:
                    paid = self.t.say(expert, "bot.pay.paid_expert", name=who)
                    replies.append(self._with_room(paid, expert, room.expert if room else None, room))
            elif notice.kind == "payment_expired":
                if customer.reach is not None:
                    replies.append(self.t.say(customer, "bot.pay.expired", name=expert.name))
                if expert.reach is not None:
                    replies.append(self.t.say(expert, "bot.pay.expired_expert", name=who))
            elif notice.kind == "settled":
                if customer.reach is not None and notice.receipt_url:
                    told = self.t.say(
                        customer,
                        "bot.settled.customer",
                        name=expert.name,
                        charged=amount(notice.amount, c_lang),
                    )
                    button = Button(self.t("bot.receipt.open", c_lang), url=notice.receipt_url)
                    rows: list[tuple[Button, ...]] = [(button,)]
                    if notice.amount:
                        money_back = Button(
                            self.t("bot.moneyback.button", c_lang), f"mb_ask:{notice.session_id}"
                        )
                        rows.append((money_back,))
                    replies.append(replace(told, buttons=tuple(rows)))
                    replies.append(self._rating_prompt(customer, notice.session_id, expert.name))
                if expert.reach is not None and notice.statement_url:
                    fee = amount(notice.fee, e_lang)
                    told = self.t.say(
                        expert,
                        "bot.settled.expert",
                        name=who,
                        charged=amount(notice.amount, e_lang),
                        payout=amount(notice.amount - notice.fee, e_lang),
                        fee=fee,
                    )
                    rows = [(Button(self.t("bot.statement.open", e_lang), url=notice.statement_url),)]
                    if notice.payout_link:
                        told = replace(told, text=f"{told.text}\n{self.t('bot.payout.blocked', e_lang)}")
                        rows.append((Button(self.t("bot.payout.setup", e_lang), url=notice.payout_link),))
                    replies.append(replace(told, buttons=tuple(rows)))
                    replies.append(self._rating_prompt(expert, notice.session_id, who))
            elif notice.kind == "ended":  # a free session: nothing to pay, something to rate
                if customer.reach is not None:
                    replies.append(self._rating_prompt(customer, notice.session_id, expert.name))
                if expert.reach is not None:
                    replies.append(self._rating_prompt(expert, notice.session_id, who))
            elif notice.kind == "refund":
                if customer.reach is not None:
                    told = self.t.say(
                        customer,
                        "bot.refund.customer",
                        name=expert.name,
                        amount=amount(notice.amount, c_lang),
                    )
                    if notice.receipt_url:
                        told = replace(
                            told,
                            buttons=((Button(self.t("bot.receipt.open", c_lang), url=notice.receipt_url),),),
                        )
                    replies.append(told)
                if expert.reach is not None:
                    replies.append(
                        self.t.say(
                            expert,
                            "bot.refund.expert",
                            name=who,
                            amount=amount(notice.amount, e_lang),
                            share=amount(notice.amount - notice.fee, e_lang),
                        )
                    )
            elif notice.kind == "moneyback_refused" and customer.reach is not None:
                replies.append(self.t.say(customer, "bot.moneyback.refused", note=notice.note or "—"))
            elif notice.kind.startswith(("booking_", "reminder", "pay_again")):
                replies.extend(self.booking.notice(notice))
            elif notice.kind == "paid_out" and expert.reach is not None:
                replies.append(self.t.say(expert, "bot.paid_out", amount=amount(notice.amount, e_lang)))
        return replies

    def _rating_prompt(self, person: PersonView, session_id: str, name: str) -> Reply:
        stars = tuple(Button("★" * n, f"rate:{session_id}:{n}") for n in range(1, 6))
        block = Button(self.t("bot.block.button", person.locale, name=name), f"block:{session_id}")
        report = Button(self.t("bot.report.button", person.locale, name=name), f"report:{session_id}")
        return replace(self.t.say(person, "bot.rate.ask", name=name), buttons=(stars, (block, report)))

    # ------------------------------------------------------------------ safety

    def _muted(self, person: PersonView, until: datetime, reason: MuteReason) -> Reply:
        why = self.t(f"bot.mute.reason.{reason.value}", person.locale)
        when = moment(until, person.locale, person.time_zone)
        return self.t.say(person, "bot.muted", until=when, reason=why)

    def _report_refused(self, person: PersonView, reason: str) -> Reply:
        return self.t.say(
            person, f"bot.report.refused.{reason}", min=MIN_REASON_CHARS, limit=MAX_REASON_CHARS
        )

    async def _report_press(
        self, session_id: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        reported = await self.concierge.reports.check(session_id, person.id)
        other = await self.concierge.person(reported)
        name = other.name or self.t("receipt.customer", person.locale)
        conv.step = f"report:{session_id}"
        out.append(
            self.t.say(person, "bot.report.ask", name=name, min=MIN_REASON_CHARS, limit=MAX_REASON_CHARS)
        )

    async def _report_reason(
        self, person: PersonView, conv: Conversation, text: str, out: list[Reply]
    ) -> None:
        session_id = conv.step.partition(":")[2]
        conv.step = "idle"
        await self.concierge.reports.file(session_id, person.id, text)
        out.append(self.t.say(person, "bot.report.sent"))

    async def _birth_date_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        _, args = event.command
        born = parse_birth_date(args) if args else None
        if born is None:
            out.append(self.t.say(person, "bot.age.change_usage"))
            return
        change = await self.concierge.change_birth_date(person.id, born)
        if change.review_id is not None:
            out.append(self.t.say(person, "bot.age.change_pending", review=change.review_id))
        elif change.gate is AgeGate.REFUSED:
            out.append(self.t.say(person, "bot.age.refused"))
        else:
            out.append(self.t.say(person, "bot.age.changed"))

    # ------------------------------------------------------------------ blocking

    async def _block_press(self, action: str, rest: str, person: PersonView, out: list[Reply]) -> None:
        blocks = self.concierge.blocks
        if action == "block":
            other = await self.concierge.person(await blocks.block_other_party(person.id, rest))
            name = other.name or self.t("receipt.customer", person.locale)
            out.append(self.t.say(person, "bot.block.done", name=name))
            return
        names = dict(await blocks.blocked_by(person.id))
        await blocks.unblock(person.id, rest)
        out.append(self.t.say(person, "bot.blocks.unblocked", name=names.get(rest) or "?"))

    async def _blocks(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        blocked = await self.concierge.blocks.blocked_by(person.id)
        if not blocked:
            out.append(self.t.say(person, "bot.blocks.none"))
            return
        buttons = tuple(
            (Button(self.t("bot.blocks.unblock", person.locale, name=name or "?"), f"unblock:{ident}"),)
            for ident, name in blocked[:10]
        )
        names = ", ".join(name or "?" for _, name in blocked)
        out.append(replace(self.t.say(person, "bot.blocks.title", names=names), buttons=buttons))

    # ------------------------------------------------------------------ reviews

    async def _rate_press(self, rest: str, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        session_id, _, number = rest.rpartition(":")
        if not number.isdigit():
            out.append(self.t.say(person, "bot.gone"))
            return
        try:
            rated = await self.concierge.rate(person, session_id, int(number))
        except ReviewRefused as exc:
            out.append(self.t.say(person, f"bot.rate.refused.{exc.reason}"))
            return
        conv.step = f"review:{rated.review_id}"
        skip = Button(self.t("bot.rate.skip", person.locale), f"review_skip:{rated.review_id}")
        out.append(replace(self.t.say(person, "bot.rate.thanks", days=BLIND_DAYS), buttons=((skip,),)))

    async def _review_text(self, person: PersonView, conv: Conversation, text: str, out: list[Reply]) -> None:
        step, _, review_id = conv.step.partition(":")
        conv.step = "idle"
        try:
            if step == "review":
                await self.concierge.reviews.add_text(review_id, person.id, text)
                out.append(self.t.say(person, "bot.rate.saved"))
            else:
                await self.concierge.reviews.reply(review_id, person.id, text)
                out.append(self.t.say(person, "bot.reviews.replied"))
        except ReviewRefused as exc:
            out.append(self.t.say(person, f"bot.rate.refused.{exc.reason}"))

    async def _reviews(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        lines = await self.concierge.reviews.about(person.id)
        if not lines:
            out.append(self.t.say(person, "bot.reviews.none"))
            return
        body = []
        for line in lines:
            body.append(
                self.t("bot.reviews.line", person.locale, stars="★" * line.stars, author=line.author or "?")
            )
            if line.text:
                body.append(f"  {line.text}")
            if line.reply:
                body.append(self.t("bot.reviews.reply_line", person.locale, text=line.reply))
        buttons = tuple(
            (
                Button(
                    self.t("bot.reviews.reply", person.locale, name=line.author or "?"),
                    f"reply:{line.review_id}",
                ),
            )
            for line in lines[:5]
            if line.reply is None
        )
        title = self.t("bot.reviews.title", person.locale)
        out.append(Reply(reach_or_fail(person), "\n".join([title, *body]), buttons=buttons))

    # ------------------------------------------------------------------ money back

    async def _money_back_press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        money_back = self.concierge.money_back
        try:
            if action == "mb_ask":
                session = await self.concierge.session_parties(rest)
                conv.step = f"moneyback:{rest}"
                out.append(self.t.say(person, "bot.moneyback.ask_reason", name=session[1].name))
            elif action == "mb":
                request_id, _, decision = rest.rpartition(":")
                view = await money_back.answer(person.id, request_id, decision)
                customer = await self.concierge.person(view.customer_id)
                who = customer.name or self.t("receipt.customer", person.locale)
                if view.status is MoneyBackStatus.GRANTED:
                    granted = money(view.granted_amount or 0, view.currency, person.locale)
                    out.append(self.t.say(person, "bot.moneyback.granted_expert", amount=granted, name=who))
                else:
                    out.append(self.t.say(person, "bot.moneyback.declined_expert", name=who))
                    if customer.reach is not None:
                        escalate = Button(
                            self.t("bot.moneyback.escalate", customer.locale), f"mb_esc:{view.id}"
                        )
                        told = self.t.say(customer, "bot.moneyback.declined", name=person.name)
                        out.append(replace(told, buttons=((escalate,),)))
            else:
                await money_back.escalate(person.id, rest)
                out.append(self.t.say(person, "bot.moneyback.escalated"))
        except MoneyBackRefused as exc:
            hours = self.concierge.settings.refund_window_hours
            out.append(self.t.say(person, f"bot.moneyback.refused.{exc.reason}", hours=hours))

    async def _money_back_reason(
        self, person: PersonView, conv: Conversation, text: str, out: list[Reply]
    ) -> None:
        session_id = conv.step.partition(":")[2]
        conv.step = "idle"
        try:
            view = await self.concierge.money_back.ask(person.id, session_id, text)
        except MoneyBackRefused as exc:
            hours = self.concierge.settings.refund_window_hours
            out.append(self.t.say(person, f"bot.moneyback.refused.{exc.reason}", hours=hours))
            return
        _, expert = await self.concierge.session_parties(session_id)
        out.append(self.t.say(person, "bot.moneyback.sent", name=expert.name))
        if expert.reach is None:
            return
        lang = expert.locale
        asked = self.t.say(
            expert,
            "bot.moneyback.request",
            name=person.name or self.t("receipt.customer", lang),
            amount=money(view.amount, view.currency, lang),
            reason=view.reason,
        )
        buttons = tuple(
            Button(self.t(f"bot.moneyback.{decision}", lang), f"mb:{view.id}:{decision}")
            for decision in ("all", "half", "decline")
        )
        out.append(replace(asked, buttons=(buttons,)))

    def _with_room(self, reply: Reply, person: PersonView, link: str | None, room: RoomLinks | None) -> Reply:
        """The person's own room link as a button, and the recording notice before they join."""
        if link is None or room is None:
            return replace(reply, text=f"{reply.text}\n{self.t('bot.room.later', person.locale)}")
        lines = [reply.text, self.t("bot.room.ready", person.locale)]
        if room.recorded:
            lines.append(self.t("bot.room.recorded", person.locale))
        button = Button(self.t("bot.room.join", person.locale), url=link)
        return replace(reply, text="\n".join(lines), buttons=((button,),))

    def rounds(self, rounds: list[Round]) -> list[Reply]:
        replies = []
        for round_ in rounds:
            customer = round_.customer
            replies += [
                self._edit(expert, f"offer:{round_.request_id}", "bot.offer.lapsed")
                for expert in round_.lapsed
            ]
            if customer.reach is None:
                continue
            if round_.notices:
                replies.append(self.t.say(customer, "bot.round.more", count=len(round_.notices)))
                replies += self.notices(round_.notices)
            elif round_.queued_place is not None:
                replies.append(
                    self._queue_reply(customer, round_.request_id, round_.queued_place, edit=False)
                )
            elif round_.exhausted:
                replies.append(self.t.say(customer, "bot.round.exhausted"))
        return replies

    def moved(self, moved: list[tuple[PersonView, str, int]]) -> list[Reply]:
        return [
            self._queue_reply(person, request_id, place, edit=True) for person, request_id, place in moved
        ]

    def _queue_reply(self, person: PersonView, request_id: str, place: int, *, edit: bool) -> Reply:
        return Reply(
            reach_or_fail(person),
            self.t("bot.queue.place", person.locale, count=place),
            ((Button(self.t("bot.queue.leave", person.locale), f"leave:{request_id}"),),),
            ref=f"queue:{request_id}",
            edit=edit,
        )

    def cancelled(self, cancelled: Cancelled) -> list[Reply]:
        return [
            self._edit(expert, f"offer:{cancelled.request_id}", "bot.offer.cancelled")
            for expert in cancelled.told
        ]

    # ------------------------------------------------------------------ commands

    async def _start(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        _, payload = event.command
        if event.locale is None and not conv.language_fixed and person.gate is AgeGate.UNKNOWN:
            out.append(self._language_menu(person))
        brand = None
        if event.community is not None:
            brand = await self.concierge.businesses.brand_in(event.channel, event.community)
        if brand is not None and brand.greeting:
            out.append(
                self.t.say(person, "bot.business.greeting", business=brand.name, greeting=brand.greeting)
            )
        else:
            out.append(self.t.say(person, "bot.welcome", name=person.name or "👋"))
        if payload.startswith("ask_"):
            out.append(self.t.say(person, "bot.ask.prompt"))

    async def _help(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        key = "bot.help.expert" if person.expert else "bot.help"
        out.append(self.t.say(person, key))

    async def _lang(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        _, args = event.command
        if args:
            await self._set_language(args.lower(), person, conv, out)
        else:
            out.append(self._language_menu(person))

    def _language_menu(self, person: PersonView) -> Reply:
        buttons = tuple(
            tuple(Button(LANGUAGE_NAMES[code], f"lang:{code}") for code in LANGUAGES[i : i + 3])
            for i in (0, 3)
        )
        return Reply(reach_or_fail(person), self.t("bot.lang.choose", person.locale), buttons)

    async def _set_language(
        self, code: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        if code not in LANGUAGES:
            out.append(self.t.say(person, "bot.lang.unknown", languages=", ".join(LANGUAGES)))
            return
        await self.concierge.set_locale(person.id, code)
        conv.language_fixed = True
        person = await self.concierge.person(person.id, reach=person.reach)
        out.append(self.t.say(person, "bot.lang.set", language=LANGUAGE_NAMES[code]))
        if conv.step == "birth_date":
            out.append(self.t.say(person, "bot.age.ask"))

    async def _cancel(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        if conv.step != "idle":
            conv.step, conv.setup, conv.pending_text, conv.pending_code = "idle", False, None, None
            out.append(self.t.say(person, "bot.cancel.step"))
            return
        if conv.request_id is None:
            out.append(self.t.say(person, "bot.cancel.nothing"))
            return
        request_id, conv.request_id, conv.self_help = conv.request_id, None, False
        await self._withdraw(person, request_id, out)

    async def _withdraw(self, person: PersonView, request_id: str, out: list[Reply]) -> None:
        """The customer takes their request back; experts still holding an offer are told."""
        try:
            cancelled = await self.concierge.cancel(person, request_id)
        except DomainError:
            out.append(self.t.say(person, "bot.cancel.too_late"))
            return
        out.append(self.t.say(person, "bot.cancel.request"))
        out.extend(self.cancelled(cancelled))

    async def _sessions(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        lines = await self.concierge.sessions_of(person)
        if not lines:
            out.append(self.t.say(person, "bot.sessions.none"))
            return
        body = "\n".join(self.t.session_line(line, person.locale, person.time_zone) for line in lines)
        buttons = tuple(
            (Button(self.t("bot.room.join_with", person.locale, name=line.other), url=line.room_link),)
            for line in lines
            if line.room_link
        )
        buttons += tuple(
            (Button(self.t("bot.pay.open", person.locale, name=line.other), url=line.pay_link),)
            for line in lines
            if line.pay_link
        )
        buttons += tuple(
            (Button(self.t("bot.receipt.open_with", person.locale, name=line.other), url=line.receipt_link),)
            for line in lines[:3]
            if line.receipt_link
        )
        buttons += tuple(
            (Button(self.t("bot.report.button", lang, name=line.other), f"report:{line.session_id}"),)
            for lang in (person.locale,)
            for line in lines[:3]
            if line.state in FINISHED_STATES
        )
        title = self.t("bot.sessions.title", person.locale)
        out.append(Reply(reach_or_fail(person), f"{title}\n{body}", buttons=buttons))

    async def _bookings(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        out.append(self.booking.listing(person, await self.concierge.booking.upcoming(person)))

    async def _schedule(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        await self.booking.schedule_command(person, event.command[1], out)

    async def _profile(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        lang = person.locale
        gate = self.t(f"bot.gate.{person.gate.value}", lang)
        text = self.t(
            "bot.profile", lang, name=person.name, language=LANGUAGE_NAMES.get(lang, lang), gate=gate
        )
        buttons: tuple[tuple[Button, ...], ...] = ()
        if person.expert is not None:
            text += "\n\n" + self.t.listing(person.expert, lang)
            buttons = self.setup.edit_buttons(person)
        out.append(Reply(reach_or_fail(person), text, buttons))

    async def _expert(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        _, code = event.command
        if person.expert is not None:
            out.append(self.t.say(person, "bot.expert.already"))
            await self._profile(event, person, conv, out)
            return
        if not code:
            out.append(self.t.say(person, "bot.expert.usage"))
            return
        if person.gate is AgeGate.UNKNOWN:
            conv.pending_code = code[:64]
            conv.step = "birth_date"
            out.append(self.t.say(person, "bot.age.ask"))
            return
        await self._become_expert(person, conv, code, out)

    async def _become_expert(
        self, person: PersonView, conv: Conversation, code: str, out: list[Reply]
    ) -> None:
        if person.gate is not AgeGate.ADULT:
            out.append(self.t.say(person, "bot.expert.adults_only"))
            return
        person = await self.concierge.become_expert(person, code)
        out.append(self.t.say(person, "bot.expert.welcome"))
        conv.setup = True
        self.setup.next_step(person, conv, out)

    async def _online(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        await self._presence(person, True, out)

    async def _offline(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        await self._presence(person, False, out)

    async def _presence(self, person: PersonView, online: bool, out: list[Reply]) -> None:
        if person.expert is None:
            out.append(self.t.say(person, "bot.expert.not_yet"))
            return
        await self.concierge.set_online(person, online)
        out.append(self.t.say(person, "bot.presence.online" if online else "bot.presence.offline"))
        if online:
            rounds, moved = await self.concierge.serve_line()
            out.extend(self.served(rounds) + self.moved(moved))

    def served(self, rounds: list[Round]) -> list[Reply]:
        replies = []
        for round_ in rounds:
            if round_.customer.reach is not None:
                replies.append(self.t.say(round_.customer, "bot.queue.served", count=len(round_.notices)))
            replies += self.notices(round_.notices)
        return replies

    async def _link(self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]) -> None:
        _, code = event.command
        if not code:
            new_code = await self.concierge.link_code(person)
            out.append(self.t.say(person, "bot.link.code", code=new_code))
            return
        linked = await self.concierge.link(event.channel, event.user_id, code)
        out.append(self.t.say(linked, "bot.link.done", name=linked.name or "—"))

    async def _setup_community(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        if await self.business.setup_command(event, person, conv, out):
            return
        _, code = event.command
        if event.community is None:
            out.append(self.t.say(person, "bot.community.where"))
        elif not event.is_admin:
            out.append(self.t.say(person, "bot.community.admins_only"))
        elif not code:
            out.append(self.t.say(person, "bot.community.usage"))
        else:
            name = await self.concierge.link_community(event.channel, event.community, code)
            out.append(self.t.say(person, "bot.community.done", business=name))

    async def _birth_date(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply], text: str
    ) -> None:
        born = parse_birth_date(text)
        if born is None:
            out.append(self.t.say(person, "bot.age.unreadable"))
            return
        gate = await self.concierge.state_birth_date(person.id, born)
        conv.step = "idle"
        pending_text, pending_code = conv.pending_text, conv.pending_code
        conv.pending_text = conv.pending_code = None
        person = await self.concierge.person(person.id, reach=person.reach)
        if gate is AgeGate.REFUSED:
            out.append(self.t.say(person, "bot.age.refused"))
            return
        if gate is AgeGate.MINOR:
            out.append(self.t.say(person, "bot.age.minor"))
        if pending_code is not None:
            await self._become_expert(person, conv, pending_code, out)
        elif pending_text is not None:
            if event.community is None and conv.pending_community is not None:
                event = replace(event, community=conv.pending_community)
            conv.pending_community = None
            await self._ask(event, person, conv, out, pending_text)
        else:
            out.append(self.t.say(person, "bot.ask.prompt"))

    # ------------------------------------------------------------------ helpers

    def _edit(self, person: PersonView, ref: str, key: str, **values: object) -> Reply:
        return Reply(reach_or_fail(person), self.t(key, person.locale, **values), ref=ref, edit=True)
