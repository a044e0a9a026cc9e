"""What a business admin does from a private chat: `/setup` (becoming an admin with a code, then
the settings menu), `/roster`, `/budget` and `/report`; and what admins are told without asking
(budget alerts, the monthly report).

The business an admin is working on is kept in the conversation, so buttons carry only their
target; every press and answer is checked against the admins table by the core again.
"""

from __future__ import annotations

from datetime import timedelta

from bots.conversation import Conversation
from bots.events import Button, Incoming, Reply
from bots.parsing import parse_price
from bots.texts import Texts, reach_or_fail
from concierge.business_admins import BusinessAdmins, BusinessView
from concierge.business_reports import MonthlyReport, ReportDue, parse_month, report_rows
from concierge.errors import DomainError
from concierge.invites import display_code
from concierge.model import RosterScope
from concierge.service import Concierge
from concierge.sponsorship import Budget, BudgetAlert
from concierge.views import PersonView
from knowledge.i18n import money

TEXT_FIELDS = ("name", "greeting", "colour", "logo", "budget", "invite")
CLEARABLE = ("greeting", "colour", "logo")  # "-" puts back the default
MAX_INVITE_USES = 100
MAX_INVITE_DAYS = 365


class BusinessMenu:
    def __init__(self, concierge: Concierge, texts: Texts) -> None:
        self.concierge = concierge
        self.t = texts

    @property
    def _admins(self) -> BusinessAdmins:
        return self.concierge.businesses

    # ------------------------------------------------------------------ commands

    async def setup_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> bool:
        """/setup in a private chat (the widget is one): True when it was a business admin's."""
        if event.in_group:
            return False  # in a group or guild: linking it, the dialogue's job
        _, code = event.command
        if code:
            joined = await self._admins.join(person.id, code[:64])
            if joined is None:
                out.append(self.t.say(person, "bot.business.unknown_code"))
                return True
            conv.business_id = joined.id
            out.append(self.t.say(person, "bot.business.joined", business=joined.name))
            out.append(self._menu(person, joined))
            return True
        business = await self._current(person, conv, out)
        if business is None:
            return bool(out)
        out.append(self._menu(person, business))
        return True

    async def roster_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        business = await self._current(person, conv, out, required=True)
        if business is not None:
            await self._roster(person, business, out)

    async def budget_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        business = await self._current(person, conv, out, required=True)
        if business is not None:
            await self._budget(person, business, out)

    async def report_command(
        self, event: Incoming, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        business = await self._current(person, conv, out, required=True)
        if business is None:
            return
        _, month = event.command
        if month:
            try:
                year, number = parse_month(month)
            except DomainError as exc:
                out.append(self.t.say(person, "bot.setup.again", reason=str(exc)))
                return
        else:
            now = self.concierge.now()
            year, number = now.year, now.month
        report = await self.concierge.business_reports.report(business.id, year, number)
        out.append(self.report_reply(person, report))

    async def _current(
        self, person: PersonView, conv: Conversation, out: list[Reply], *, required: bool = False
    ) -> BusinessView | None:
        """The business this admin is working on; with several, they choose (buttons)."""
        businesses = await self._admins.businesses_of(person.id)
        chosen = next((b for b in businesses if b.id == conv.business_id), None)
        if chosen is None and len(businesses) == 1:
            chosen = businesses[0]
        if chosen is not None:
            conv.business_id = chosen.id
            return chosen
        if businesses:
            rows = tuple((Button(b.name[:60], f"biz_pick:{b.id}"),) for b in businesses[:10])
            out.append(Reply(reach_or_fail(person), self.t("bot.business.choose", person.locale), rows))
        elif required:
            out.append(self.t.say(person, "bot.business.none"))
        return None

    # ------------------------------------------------------------------ presses and answers

    async def press(
        self, action: str, rest: str, person: PersonView, conv: Conversation, out: list[Reply]
    ) -> None:
        if action == "biz_pick":
            business = await self._admins.managed(person.id, rest)
            conv.business_id = business.id
            out.append(self._menu(person, business))
            return
        if conv.business_id is None:
            out.append(self.t.say(person, "bot.gone"))
            return
        business = await self._admins.managed(person.id, conv.business_id)
        lang = person.locale
        if action == "biz_set" and rest in TEXT_FIELDS:
            conv.step = f"biz:{rest}"
            out.append(self.t.say(person, f"bot.business.ask.{rest}"))
        elif action == "biz_scope" and rest in set(RosterScope):
            business = await self._admins.change(person.id, business.id, "scope", rest)
            out.append(self._menu(person, business, edit=True))
        elif action == "biz_sponsor" and rest in {"on", "off"}:
            business = await self._admins.sponsor(person.id, business.id, rest == "on")
            out.append(self._menu(person, business, edit=True))
        elif action == "biz_code":
            code = await self._admins.new_setup_code(person.id, business.id)
            out.append(self.t.say(person, "bot.business.code", code=code))
        elif action == "biz_widget":
            key = await self._admins.new_widget_key(person.id, business.id)
            base = self.concierge.settings.base_url
            snippet = f'<script src="{base}/chat/assets/widget.js" data-key="{key}" async></script>'
            out.append(self.t.say(person, "bot.business.widget", snippet=snippet))
        elif action == "biz_communities":
            await self._communities(person, business, out)
        elif action == "biz_unlink":
            await self._admins.unlink(person.id, business.id, rest)
            out.append(self.t.say(person, "bot.business.unlinked"))
            await self._communities(person, business, out)
        elif action == "biz_roster":
            await self._roster(person, business, out)
        elif action == "biz_remove":
            await self.concierge.remove_from_roster(person, business.id, rest)
            out.append(self.t.say(person, "bot.roster.removed"))
            await self._roster(person, business, out)
        elif action == "biz_budget":
            await self._budget(person, business, out)
        elif action == "biz_report":
            now = self.concierge.now()
            report = await self.concierge.business_reports.report(business.id, now.year, now.month)
            out.append(self.report_reply(person, report))
        else:
            out.append(Reply(reach_or_fail(person), self.t("bot.gone", lang)))

    async def answer(self, person: PersonView, conv: Conversation, text: str, out: list[Reply]) -> None:
        field = conv.step.removeprefix("biz:")
        if conv.business_id is None or field not in TEXT_FIELDS:
            conv.step = "idle"
            out.append(self.t.say(person, "bot.gone"))
            return
        business_id = conv.business_id
        try:
            if field == "budget":
                current = await self._admins.managed(person.id, business_id)
                amount, currency = parse_price(
                    text, current.budget_currency or self.concierge.settings.default_currency
                )
                business = await self._admins.set_budget(person.id, business_id, amount, currency)
            elif field == "invite":
                await self._invite(person, business_id, text, out)
                conv.step = "idle"
                return
            else:
                value = None if field in CLEARABLE and text.strip() == "-" else text
                business = await self._admins.change(person.id, business_id, field, value)
        except (ValueError, DomainError) as exc:
            out.append(self.t.say(person, "bot.setup.again", reason=str(exc)))
            return
        conv.step = "idle"
        out.append(self.t.say(person, "bot.setup.saved"))
        out.append(self._menu(person, business))

    async def _invite(self, person: PersonView, business_id: str, text: str, out: list[Reply]) -> None:
        numbers = text.split()
        if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
            raise ValueError("write two numbers: how many experts, and for how many days, such as 5 30")
        uses, days = int(numbers[0]), int(numbers[1])
        if not 1 <= uses <= MAX_INVITE_USES or not 1 <= days <= MAX_INVITE_DAYS:
            raise ValueError(f"between 1 and {MAX_INVITE_USES} experts, 1 and {MAX_INVITE_DAYS} days")
        invite = await self._admins.roster_invite(person.id, business_id, uses=uses, expires_in_days=days)
        until = invite.created_at + timedelta(days=days)
        out.append(
            self.t.say(
                person,
                "bot.roster.invite",
                code=display_code(invite.code),
                count=uses,
                until=self.t.moment(until, person.locale, person.time_zone),
            )
        )

    # ------------------------------------------------------------------ what admins see

    def _menu(self, person: PersonView, business: BusinessView, *, edit: bool = False) -> Reply:
        lang = person.locale
        default = self.t("bot.business.default", lang)
        if not business.sponsors_sessions:
            sponsorship = self.t("bot.business.sponsor.off", lang)
        elif business.budget_amount is None or business.budget_currency is None:
            sponsorship = self.t("bot.business.sponsor.unlimited", lang)
        else:
            budget = money(business.budget_amount, business.budget_currency, lang)
            sponsorship = self.t("bot.business.sponsor.on", lang, budget=budget)
        text = self.t(
            "bot.business.menu",
            lang,
            business=business.name,
            greeting=business.greeting or default,
            colour=business.brand_colour or default,
            logo=business.logo_url or default,
            scope=self.t(f"bot.business.scope.{business.scope.value}", lang),
            sponsorship=sponsorship,
        )

        def b(label: str, action: str) -> Button:
            return Button(self.t(f"bot.business.button.{label}", lang), action)

        other_scope = (
            b("roster_first", f"biz_scope:{RosterScope.ROSTER_FIRST.value}")
            if business.scope is RosterScope.ROSTER_ONLY
            else b("roster_only", f"biz_scope:{RosterScope.ROSTER_ONLY.value}")
        )
        sponsor = (
            b("sponsor_off", "biz_sponsor:off")
            if business.sponsors_sessions
            else b("sponsor_on", "biz_sponsor:on")
        )
        rows = (
            (b("name", "biz_set:name"), b("greeting", "biz_set:greeting")),
            (b("colour", "biz_set:colour"), b("logo", "biz_set:logo")),
            (other_scope, sponsor, b("budget", "biz_set:budget")),
            (b("code", "biz_code:"), b("widget", "biz_widget:"), b("communities", "biz_communities:")),
            (b("roster", "biz_roster:"), b("spend", "biz_budget:"), b("report", "biz_report:")),
        )
        return Reply(reach_or_fail(person), text, rows, ref=f"business:{business.id}", edit=edit)

    async def _communities(self, person: PersonView, business: BusinessView, out: list[Reply]) -> None:
        linked = await self._admins.communities(person.id, business.id)
        lang = person.locale
        if not linked:
            out.append(self.t.say(person, "bot.business.communities_none"))
            return
        lines = [
            f"{i}. " + self.t(f"bot.business.community.{c.channel.value}", lang, id=c.external_id[:40])
            for i, c in enumerate(linked, 1)
        ]
        rows = tuple(
            (Button(self.t("bot.business.unlink", lang, number=i), f"biz_unlink:{c.id}"),)
            for i, c in enumerate(linked[:20], 1)
        )
        title = self.t("bot.business.communities", lang, count=len(linked))
        out.append(Reply(reach_or_fail(person), title + "\n" + "\n".join(lines), rows))

    async def _roster(self, person: PersonView, business: BusinessView, out: list[Reply]) -> None:
        lang = person.locale
        lines = await self._admins.roster(person.id, business.id)
        invite = (Button(self.t("bot.roster.invite_button", lang), "biz_set:invite"),)
        if not lines:
            text = self.t("bot.roster.none", lang, business=business.name)
            out.append(Reply(reach_or_fail(person), text, (invite,)))
            return
        body = []
        for line in lines:
            rating = (
                self.t("bot.roster.unrated", lang)
                if line.rating is None
                else self.t("bot.roster.rating", lang, rating=f"{line.rating:.1f}")
            )
            body.append(
                self.t(
                    "bot.roster.line",
                    lang,
                    name=line.name or "—",
                    status=self.t("bot.roster.online" if line.online else "bot.roster.offline", lang),
                    rating=rating,
                    sessions=self.t("bot.roster.sessions", lang, count=line.sessions_this_month),
                )
            )
        removes = tuple(
            (
                Button(
                    self.t("bot.roster.remove", lang, name=(line.name or "—")[:40]),
                    f"biz_remove:{line.expert_id}",
                ),
            )
            for line in lines[:20]
            if len(f"biz_remove:{line.expert_id}") <= 64
        )
        title = self.t("bot.roster.title", lang, business=business.name, count=len(lines))
        out.append(Reply(reach_or_fail(person), title + "\n" + "\n".join(body), (invite, *removes)))

    async def _budget(self, person: PersonView, business: BusinessView, out: list[Reply]) -> None:
        budget = await self.concierge.sponsorship.budget(business.id)
        lang = person.locale
        rows = ((Button(self.t("bot.business.button.budget", lang), "biz_set:budget"),),)
        out.append(Reply(reach_or_fail(person), self.budget_text(budget, lang), rows))

    def budget_text(self, budget: Budget, lang: str) -> str:
        if not budget.sponsors:
            return self.t("bot.budget.off", lang, business=budget.business)
        if budget.amount is None or budget.currency is None:
            spent = money(budget.spent, budget.currency or "EUR", lang) if budget.currency else "—"
            return self.t("bot.budget.unlimited", lang, business=budget.business, spent=spent)
        return self.t(
            "bot.budget.status",
            lang,
            business=budget.business,
            spent=money(budget.spent, budget.currency, lang),
            budget=money(budget.amount, budget.currency, lang),
            remaining=money(budget.remaining or 0, budget.currency, lang),
            percent=budget.spent * 100 // budget.amount if budget.amount else 0,
        )

    def report_reply(self, person: PersonView, report: MonthlyReport) -> Reply:
        lang = person.locale
        rows = report_rows(report, lang, self.t.catalogues)
        lines = [self.t("business.report.title", lang, business=report.business, month=report.label)]
        lines += [self.t("bot.report.line", lang, label=label, value=value) for label, value in rows]
        if report.top_experts:
            top = ", ".join(f"{name} ({n})" for name, n in report.top_experts)
            lines.append(
                self.t("bot.report.line", lang, label=self.t("business.report.top", lang), value=top)
            )
        url = self.concierge.business_reports.links.url(report.business_id, lang, report.year, report.month)
        button = Button(self.t("bot.report.open", lang), url=url)
        return Reply(reach_or_fail(person), "\n".join(lines), ((button,),))

    # ------------------------------------------------------------------ told without asking

    def budget_alerts(self, alerts: list[tuple[BudgetAlert, list[PersonView]]]) -> list[Reply]:
        replies = []
        for alert, admins in alerts:
            budget = alert.budget
            for admin in admins:
                if admin.reach is None or budget.amount is None or budget.currency is None:
                    continue
                lang = admin.locale
                replies.append(
                    self.t.say(
                        admin,
                        f"bot.budget.{alert.kind}",
                        business=budget.business,
                        spent=money(budget.spent, budget.currency, lang),
                        budget=money(budget.amount, budget.currency, lang),
                    )
                )
        return replies

    def reports(self, due: list[tuple[ReportDue, list[PersonView]]]) -> list[Reply]:
        return [
            self.report_reply(admin, item.report) for item, admins in due for admin in admins if admin.reach
        ]
