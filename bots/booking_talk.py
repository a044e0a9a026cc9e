"""The booking part of the dialogue: picking a time, the expert's answer, /bookings with cancel and
move, and the booking news the ticker delivers (confirmations, reminders, call-offs).

Button actions stay under Telegram's 64 bytes by naming the expert by their place among the
cards shown and a time by its minute since the epoch.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bots.conversation import Conversation
from bots.events import Button, Reply
from bots.texts import Texts, reach_or_fail
from concierge.booking_desk import BookingNews, SlotChoice
from concierge.bookings import BookingRefused, SlotUnavailable
from concierge.expert_schedule import ScheduleRefused, ScheduleView
from concierge.model import BookingStatus
from concierge.service import Concierge
from concierge.views import PaymentNotice, PersonView
from knowledge.i18n import lead_time

ACTIONS = frozenset({"slots", "book", "bk_ok", "bk_no", "bk_cancel", "bk_cancel_late", "bk_move", "bk_to"})


def _minute(moment: datetime) -> str:
    return str(int(moment.timestamp() // 60))


def _from_minute(text: str) -> datetime | None:
    if not text.isdigit() or len(text) > 10:
        return None
    return datetime.fromtimestamp(int(text) * 60, UTC)


class BookingTalk:
    def __init__(self, concierge: Concierge, texts: Texts) -> None:
        self.concierge = concierge
        self.t = texts

    # ------------------------------------------------------------------ presses

    async def press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        try:
            await self._press(action, rest, person, conv, out)
        except SlotUnavailable as exc:
            out.append(self.t.say(person, f"bot.booking.unavailable.{exc.reason.value}"))
        except BookingRefused as exc:
            out.append(self.t.say(person, f"bot.booking.refused.{exc.reason}"))

    async def _press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        desk = self.concierge.booking
        if action in {"slots", "book"}:
            request_id = conv.request_id
            position, _, minute = rest.partition(":")
            if request_id is None or not position.isdigit():
                out.append(self.t.say(person, "bot.gone"))
                return
            if action == "slots":
                out.append(self.slot_menu(person, await desk.slots(person, request_id, int(position))))
                return
            at = _from_minute(minute)
            if at is None:
                out.append(self.t.say(person, "bot.gone"))
                return
            news = await desk.book(person, request_id, int(position), at)
            conv.request_id = None
            out.extend(self.booked(news))
        elif action == "bk_ok":
            out.extend(self.confirmed(await desk.confirm(person, rest), edit=True))
        elif action == "bk_no":
            out.extend(self.called_off(await desk.decline(person, rest), by="expert"))
        elif action == "bk_cancel":
            booking = await desk.rules.get(rest)
            late = datetime.now(UTC) >= booking.free_until and booking.status is BookingStatus.CONFIRMED
            is_customer = booking.customer_id == person.id
            if late and is_customer:
                ask = self.t.say(
                    person, "bot.booking.cancel_late_ask", policy=self.policy(booking.policy.value, person)
                )
                button = Button(self.t("bot.booking.cancel_anyway", person.locale), f"bk_cancel_late:{rest}")
                out.append(replace(ask, buttons=((button,),)))
                return
            news = await desk.cancel(person, rest)
            out.extend(self.called_off(news, by="customer" if is_customer else "expert"))
        elif action == "bk_cancel_late":
            news = await desk.cancel(person, rest)
            out.extend(self.called_off(news, by="customer"))
        elif action == "bk_move":
            booking, slots = await desk.move_choices(person, rest)
            if not slots:
                out.append(self.t.say(person, "bot.booking.no_slots"))
                return
            rows = tuple(
                (Button(self.t.moment(s, person.locale, person.time_zone), f"bk_to:{rest}:{_minute(s)}"),)
                for s in slots
            )
            out.append(replace(self.t.say(person, "bot.booking.move_pick"), buttons=rows))
        elif action == "bk_to":
            booking_id, _, minute = rest.partition(":")
            at = _from_minute(minute)
            if at is None:
                out.append(self.t.say(person, "bot.gone"))
                return
            out.extend(self.moved(await desk.move(person, booking_id, at)))

    async def schedule_command(self, person: PersonView, args: str, out: list[Reply]) -> None:
        """`/schedule` shows an expert's booking settings; `/schedule off 2026-12-24` etc. change one."""
        if person.expert is None:
            out.append(self.t.say(person, "bot.schedule.experts_only"))
            return
        schedules = self.concierge.schedules
        try:
            view = await (
                schedules.change(person.expert.id, args.split()) if args else schedules.show(person.expert.id)
            )
        except ScheduleRefused as exc:
            out.append(self.t.say(person, f"bot.schedule.refused.{exc.reason}", reason=str(exc)))
            return
        out.append(self.t.say(person, "bot.schedule.show", **self._schedule_values(view, person)))

    def _schedule_values(self, view: ScheduleView, person: PersonView) -> dict[str, object]:
        lang = person.locale
        exceptions = ", ".join(
            f"{day}: {' '.join(ranges) if ranges else self.t('bot.schedule.day_off', lang)}"
            for day, ranges in view.exceptions.items()
        )
        return {
            "zone": view.time_zone,
            "exceptions": exceptions or "—",
            "length": view.booking_minutes,
            "before": view.buffer_before,
            "after": view.buffer_after,
            "max": view.max_per_day if view.max_per_day is not None else "—",
            "notice": view.min_notice,
            "confirm": self.t(f"bot.schedule.confirm.{'auto' if view.auto_confirm else 'manual'}", lang),
            "policy": self.t(f"bot.booking.policy.{view.policy.value}", lang),
        }

    # ------------------------------------------------------------------ what people read

    def slot_menu(self, person: PersonView, choice: SlotChoice) -> Reply:
        lang, zone = person.locale, person.time_zone
        if not choice.slots:
            return self.t.say(person, "bot.booking.no_slots")
        rows = tuple(
            (
                Button(
                    self.t.moment(slot, lang, zone),
                    f"book:{choice.position}:{_minute(slot)}",
                ),
            )
            for slot in choice.slots
        )
        key = "bot.booking.pick" if choice.wanted in choice.slots else "bot.booking.pick_other"
        return replace(
            self.t.say(person, key, name=choice.expert.name, minutes=choice.minutes, zone=zone), buttons=rows
        )

    def policy(self, policy: str, person: PersonView) -> str:
        return self.t(f"bot.booking.policy.{policy}", person.locale)

    def booked(self, news: BookingNews) -> list[Reply]:
        booking, customer, expert = news.booking, news.customer, news.expert
        replies = []
        if booking.status is BookingStatus.PENDING:
            if customer.reach is not None:
                replies.append(
                    self.t.say(
                        customer, "bot.booking.requested", name=expert.name, when=self._when(news, customer)
                    )
                )
            if expert.reach is not None:
                ask = self.t.say(
                    expert,
                    "bot.booking.confirm_ask",
                    text=news.request_text,
                    when=self._when(news, expert),
                    price=self.t.price(news.pricing, expert.locale),
                )
                buttons = (
                    Button(self.t("bot.booking.confirm", expert.locale), f"bk_ok:{booking.id}"),
                    Button(self.t("bot.booking.decline", expert.locale), f"bk_no:{booking.id}"),
                )
                replies.append(replace(ask, buttons=(buttons,), ref=f"booking:{booking.id}"))
            return replies
        return self.confirmed(news, edit=False)

    def confirmed(self, news: BookingNews, *, edit: bool) -> list[Reply]:
        booking, customer, expert = news.booking, news.customer, news.expert
        replies = []
        if customer.reach is not None:
            told = self.t.say(
                customer,
                "bot.booking.confirmed",
                name=expert.name,
                when=self._when(news, customer),
                policy=self.policy(booking.policy.value, customer),
            )
            replies.append(replace(told, buttons=self._manage(customer, booking.id)))
        if expert.reach is not None:
            told = self.t.say(
                expert, "bot.booking.confirmed_expert", text=news.request_text, when=self._when(news, expert)
            )
            replies.append(
                replace(
                    told, buttons=self._manage(expert, booking.id), ref=f"booking:{booking.id}", edit=edit
                )
            )
        return replies

    def called_off(self, news: BookingNews, *, by: str) -> list[Reply]:
        """Said to the one who pressed; the other party hears it from the ticker's notice."""
        booking = news.booking
        person = news.customer if by == "customer" else news.expert
        if person.reach is None:
            return []
        if booking.status is BookingStatus.DECLINED:
            return [
                replace(
                    self.t.say(person, "bot.booking.declined_done"), ref=f"booking:{booking.id}", edit=True
                )
            ]
        key = "bot.booking.cancelled_charged" if news.charged else "bot.booking.cancelled_done"
        return [self.t.say(person, key, when=self._when(news, person))]

    def moved(self, news: BookingNews) -> list[Reply]:
        customer = news.customer
        told = self.t.say(
            customer, "bot.booking.moved", name=news.expert.name, when=self._when(news, customer)
        )
        return [replace(told, buttons=self._manage(customer, news.booking.id))]

    def listing(self, person: PersonView, items: list[BookingNews]) -> Reply:
        if not items:
            return self.t.say(person, "bot.booking.none")
        lines: list[str] = []
        rows: list[tuple[Button, ...]] = []
        for news in items:
            other = news.expert.name if news.customer.id == person.id else (news.customer.name or "?")
            status = self.t(f"bot.booking.status.{news.booking.status.value}", person.locale)
            lines.append(f"• {self._when(news, person)} — {other} ({status})")
            rows.extend(self._manage(person, news.booking.id, label=other))
        title = self.t("bot.booking.title", person.locale)
        return Reply(reach_or_fail(person), f"{title}\n" + "\n".join(lines), tuple(rows))

    def _manage(self, person: PersonView, booking_id: str, label: str = "") -> tuple[tuple[Button, ...], ...]:
        lang = person.locale
        cancel = Button(self.t("bot.booking.cancel", lang, name=label).strip(), f"bk_cancel:{booking_id}")
        if person.expert is not None and not label:
            return ((cancel,),)
        move = Button(self.t("bot.booking.move", lang, name=label).strip(), f"bk_move:{booking_id}")
        return ((move, cancel),)

    def _when(self, news: BookingNews, person: PersonView) -> str:
        return self.t.moment(news.booking.starts_at, person.locale, person.time_zone)

    # ------------------------------------------------------------------ the ticker's news

    def notice(self, notice: PaymentNotice) -> list[Reply]:
        """Booking news from the outbox: reminders, and what the other party or the clock did."""
        customer, expert = notice.customer, notice.expert
        replies: list[Reply] = []
        both = [(p, p is customer) for p in (customer, expert) if p.reach is not None]
        when = notice.starts_at
        for person, is_customer in both:
            other = (
                expert.name if is_customer else (customer.name or self.t("receipt.customer", person.locale))
            )
            at = self.t.moment(when, person.locale, person.time_zone) if when else ""
            if notice.kind == "reminder":
                key = "bot.booking.reminder_soon" if notice.last else "bot.booking.reminder"
                lead = lead_time(notice.minutes or 0, person.locale)
                told = self.t.say(person, key, name=other, when=at, lead=lead)
                rows: list[tuple[Button, ...]] = []
                room = notice.room
                link = (room.customer if is_customer else room.expert) if room else None
                if link:
                    rows.append((Button(self.t("bot.room.join", person.locale), url=link),))
                if notice.calendar_urls:
                    url = notice.calendar_urls[0 if is_customer else 1]
                    rows.append((Button(self.t("bot.booking.calendar", person.locale), url=url),))
                replies.append(replace(told, buttons=tuple(rows)))
            elif notice.kind == "booking_confirmed" and is_customer:
                replies.append(self.t.say(person, "bot.booking.confirmed_by", name=other, when=at))
            elif notice.kind == "booking_declined" and is_customer:
                replies.append(self.t.say(person, "bot.booking.declined", name=other, when=at))
            elif notice.kind.startswith("booking_cancelled_by_"):
                by = notice.kind.removeprefix("booking_cancelled_by_")
                mine = (by == "customer") == is_customer
                if by == "system":
                    key = f"bot.booking.called_off.{notice.outcome or 'unpaid'}"
                    replies.append(self.t.say(person, key, name=other, when=at))
                elif not mine:
                    replies.append(self.t.say(person, "bot.booking.cancelled_by_other", name=other, when=at))
            elif notice.kind == "booking_forfeit":
                key = f"bot.booking.forfeit.{'customer' if is_customer else 'expert'}"
                replies.append(self.t.say(person, key, name=other, when=at, outcome=notice.outcome or ""))
            elif notice.kind == "booking_moved" and not is_customer:
                replies.append(self.t.say(person, "bot.booking.moved_expert", name=other, when=at))
            elif notice.kind in {"booking_pay", "pay_again"} and is_customer and notice.url:
                key = "bot.booking.pay" if notice.kind == "booking_pay" else "bot.booking.pay_again"
                told = self.t.say(person, key, name=other, when=at)
                button = Button(self.t("bot.pay.open", person.locale, name=other), url=notice.url)
                replies.append(replace(told, buttons=((button,),)))
        return replies
