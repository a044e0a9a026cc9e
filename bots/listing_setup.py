"""The guided listing setup for a new expert, and editing one field of a listing later.

Each answer is checked by the core with the import format's rules (`onboarding.update_listing`);
a refused answer is explained and asked again, so nothing half-valid is ever stored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from billing.errors import BillingError
from bots.conversation import Conversation
from bots.events import Button, Incoming, Reply
from bots.parsing import parse_hours, parse_list, parse_price
from bots.texts import Texts, reach_or_fail
from concierge.errors import DomainError
from concierge.onboarding import ListingRefused
from concierge.pricing import PricingMode
from concierge.service import Concierge
from concierge.views import PersonView

log = structlog.get_logger("bots.listing_setup")

STEPS = ("name", "headline", "bio", "categories", "languages", "pricing", "timezone", "hours")
MODES = ("free", "per_session", "per_minute")


class ListingSetup:
    def __init__(self, concierge: Concierge, texts: Texts) -> None:
        self.concierge = concierge
        self.t = texts

    # ------------------------------------------------------------------ steps

    def next_step(
        self, person: PersonView, conv: Conversation, out: list[Reply], after: str | None = None
    ) -> None:
        """Ask for the field after `after` (the first when None); at the end, offer publication."""
        index = 0 if after is None else STEPS.index(after) + 1
        if index < len(STEPS) and STEPS[index] == "name" and person.name:
            index += 1  # the chat app told us their name already
        if index >= len(STEPS):
            conv.step, conv.setup = "idle", False
            self._summary(person, out)
            return
        self.ask(person, conv, STEPS[index], out)

    def ask(self, person: PersonView, conv: Conversation, field: str, out: list[Reply]) -> None:
        conv.step = f"setup:{field}"
        lang = person.locale
        reach = reach_or_fail(person)
        if field == "categories":
            current = person.expert.categories if person.expert else ()
            conv.categories = list(current)
            out.append(
                Reply(
                    reach,
                    self.t("bot.setup.categories", lang),
                    self._category_buttons(conv, lang),
                    ref="setup:categories",
                )
            )
        elif field == "pricing":
            buttons = (
                tuple(Button(self.t(f"bot.setup.mode.{mode}", lang), f"mode:{mode}") for mode in MODES),
            )
            out.append(Reply(reach, self.t("bot.setup.pricing", lang), buttons))
        else:
            out.append(Reply(reach, self.t(f"bot.setup.{field}", lang)))

    def _category_buttons(self, conv: Conversation, lang: str) -> tuple[tuple[Button, ...], ...]:
        ids = self.t.categories()
        buttons = [
            Button(("✓ " if c in conv.categories else "") + self.t.category(c, lang), f"cat:{c}") for c in ids
        ]
        rows = [tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2)]
        rows.append((Button(self.t("bot.setup.categories_done", lang), "cat:done"),))
        return tuple(rows)

    async def answer(self, person: PersonView, conv: Conversation, text: str, out: list[Reply]) -> None:
        field = "pricing" if conv.step == "price_amount" else conv.step.removeprefix("setup:")
        try:
            changes = self._changes(field, text, conv)
        except ValueError as exc:
            out.append(self.t.say(person, "bot.setup.again", reason=str(exc)))
            return
        if changes is None:  # categories and the pricing mode are chosen with buttons
            out.append(self.t.say(person, "bot.setup.use_buttons"))
            return
        await self._save(person, conv, field, changes, out)

    def _changes(self, field: str, text: str, conv: Conversation) -> dict[str, Any] | None:
        if field in {"name", "headline", "bio", "timezone"}:
            return {field: text}
        if field == "languages":
            return {"languages": parse_list(text)}
        if field == "hours":
            return {"hours": parse_hours(text)}
        if field == "pricing" and conv.step == "price_amount" and conv.price_mode:
            amount, currency = parse_price(text, self.concierge.settings.default_currency)
            return {"pricing": {"mode": conv.price_mode, "amount": amount, "currency": currency}}
        return None

    async def _save(
        self, person: PersonView, conv: Conversation, field: str, changes: dict[str, Any], out: list[Reply]
    ) -> None:
        try:
            if field == "name":
                person = await self.concierge.rename(person, changes["name"])
            else:
                person = await self.concierge.edit_listing(person, changes)
        except ListingRefused as exc:
            out.append(self.t.say(person, "bot.setup.again", reason="; ".join(exc.problems)))
            return
        if field == "timezone":  # the expert's own zone is how their times are shown to them too
            await self.concierge.set_time_zone(person.id, changes["timezone"])
        conv.price_mode = None
        out.append(self.t.say(person, "bot.setup.saved"))
        if conv.setup:
            self.next_step(person, conv, out, after=field)
        else:
            conv.step = "idle"
            self._summary(person, out)

    async def press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        lang = person.locale
        if person.expert is None:
            out.append(self.t.say(person, "bot.expert.not_yet"))
        elif action == "cat" and conv.step == "setup:categories":
            if rest == "done":
                if not conv.categories:
                    out.append(self.t.say(person, "bot.setup.categories_none"))
                    return
                await self._save(person, conv, "categories", {"categories": list(conv.categories)}, out)
                return
            if rest in conv.categories:
                conv.categories.remove(rest)
            elif len(conv.categories) < 3 and rest in self.t.categories():
                conv.categories.append(rest)
            else:
                out.append(self.t.say(person, "bot.setup.categories_max"))
                return
            out.append(
                Reply(
                    reach_or_fail(person),
                    self.t("bot.setup.categories", lang),
                    self._category_buttons(conv, lang),
                    ref="setup:categories",
                    edit=True,
                )
            )
        elif action == "mode" and conv.step == "setup:pricing" and rest in MODES:
            if rest == "free":
                await self._save(
                    person,
                    conv,
                    "pricing",
                    {"pricing": {"mode": "free", "amount": 0, "currency": person.expert.pricing.currency}},
                    out,
                )
                return
            conv.price_mode, conv.step = rest, "price_amount"
            out.append(self.t.say(person, f"bot.setup.amount.{rest}"))
        elif action == "edit" and rest in STEPS:
            conv.setup = False
            self.ask(person, conv, rest, out)
        elif action == "publish":
            await self._publish(person, out)
        elif action in {"online", "offline"}:
            await self.concierge.set_online(person, action == "online")
            out.append(self.t.say(person, f"bot.presence.{action}"))
        else:
            out.append(self.t.say(person, "bot.gone"))

    # ------------------------------------------------------------------ commands

    async def edit_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        _, field = event.command
        if person.expert is None:
            out.append(self.t.say(person, "bot.expert.not_yet"))
        elif field not in STEPS:
            out.append(self.t.say(person, "bot.setup.edit_usage", fields=", ".join(STEPS)))
        else:
            conv.setup = False
            self.ask(person, conv, field, out)

    async def publish_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        await self._publish(person, out)

    async def _publish(self, person: PersonView, out: list[Reply]) -> None:
        if person.expert is None:
            raise DomainError("you are not an expert yet: use /expert with an invitation code")
        person = await self.concierge.publish(person)
        out.append(self.t.say(person, "bot.setup.published"))
        expert = person.expert
        if expert is None or expert.pricing.mode is PricingMode.FREE:
            return
        try:
            link = await self.concierge.cashier.payout_link(expert.id)
        except BillingError as exc:  # the listing is published; the link comes again with the first payout
            log.warning("payout onboarding link failed", expert=expert.id, error=str(exc))
            return
        if link is not None:
            prompt = self.t.say(person, "bot.payout.prompt")
            out.append(
                replace(prompt, buttons=((Button(self.t("bot.payout.setup", person.locale), url=link),),))
            )

    def edit_buttons(self, person: PersonView) -> tuple[tuple[Button, ...], ...]:
        lang = person.locale
        expert = person.expert
        if expert is None:
            return ()
        fields = [Button(self.t(f"bot.field.{field}", lang), f"edit:{field}") for field in STEPS]
        rows = [tuple(fields[i : i + 3]) for i in range(0, len(fields), 3)]
        if not expert.published:
            rows.append((Button(self.t("bot.setup.publish", lang), "publish:"),))
        elif expert.online:
            rows.append((Button(self.t("bot.presence.go_offline", lang), "offline:"),))
        else:
            rows.append((Button(self.t("bot.presence.go_online", lang), "online:"),))
        return tuple(rows)

    def _summary(self, person: PersonView, out: list[Reply]) -> None:
        if person.expert is None:
            return
        lang = person.locale
        text = self.t.listing(person.expert, lang)
        if person.expert.missing:
            text += "\n\n" + self.t("bot.setup.missing", lang, fields=", ".join(person.expert.missing))
        out.append(Reply(reach_or_fail(person), text, self.edit_buttons(person)))
