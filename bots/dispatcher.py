"""Between the channels and the dialogue engine: limits, conversation state, delivery.

Adapters call `handle` with an `Incoming`; the dispatcher checks the sender's rate limit, loads
their conversation, lets the engine decide, saves the conversation and hands each reply to
the outbox of the channel it is addressed to (an expert may be on another channel than the
customer). Background ticks move offers that ran out and serve the waiting line.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import replace
from typing import Protocol

import structlog

from bots.conversation import Conversation, ConversationStore
from bots.dialogue import Dialogue
from bots.events import Incoming, Reply
from bots.rate_limit import RateLimiter, Verdict
from concierge.model import Channel
from concierge.moderation import Moderation
from concierge.round_trips import round_trips
from concierge.turn_writes import TurnWrites, collecting
from knowledge.i18n import negotiate

log = structlog.get_logger("bots.dispatcher")


class Outbox(Protocol):
    """A channel's way of delivering replies (sending, or editing a message sent before)."""

    async def deliver(self, reply: Reply) -> None: ...


class Dispatcher:
    def __init__(
        self,
        dialogue: Dialogue,
        store: ConversationStore,
        limiter: RateLimiter,
        moderation: Moderation | None = None,
    ) -> None:
        self.dialogue = dialogue
        self._store = store
        self._limiter = limiter
        self._moderation = moderation  # None: flooding is never more than a minute's silence
        self._outboxes: dict[Channel, Outbox] = {}
        # One turn at a time per person in this process: two quick presses must not interleave
        # their reads and writes of the same conversation.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def register(self, channel: Channel, outbox: Outbox) -> None:
        self._outboxes[channel] = outbox

    def unregister(self, channel: Channel) -> None:
        self._outboxes.pop(channel, None)

    async def handle(
        self, event: Incoming, direct: Outbox | None = None, *, community_key: str | None = None
    ) -> list[Reply]:
        """One turn. Replies to the sender go to `direct` when given (a group chat, a Discord
        interaction: where they wrote from); everyone else's go to their channel's outbox.
        `community_key`: a Redis string naming the community when the event does not (where
        the sender came from before, as the channel remembers it)."""
        key = str(event.reach)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        replies: list[Reply] = []
        async with lock:
            # The count, the conversation and the remembered community in one round trip: each
            # round trip costs this process more CPU than the commands cost Redis.
            async with self._store.redis.pipeline(transaction=False) as pipe:
                self._limiter.count(pipe, event.reach)
                self._store.queue_load(pipe, event.reach)
                if community_key is not None:
                    pipe.get(community_key)
                community = f"{event.channel.value}.{event.community}" if event.community else None
                counted = community is not None and self._limiter.count_community(pipe, community)
                count, _, state, *rest = await round_trips(self._store.redis).execute(pipe)
            remembered = rest[:1] if community_key is not None else []
            verdict = self._limiter.verdict(count, rest[-2] if counted else None)
            if verdict is Verdict.ALLOW:
                if remembered and remembered[0] is not None and event.community is None:
                    value = remembered[0]
                    event = replace(event, community=value.decode() if isinstance(value, bytes) else value)
                replies = await self._turn(event, Conversation.from_json(state))
        language = negotiate([event.locale]) if event.locale else "en"
        if verdict is Verdict.WARN:
            replies = [Reply(event.reach, self.dialogue.t("bot.rate_limited", language))]
            if self._moderation is not None:  # a minute over the limit is a strike
                await self._moderation.strike(event.channel, event.user_id)
        elif verdict is Verdict.COMMUNITY:
            replies = [Reply(event.reach, self.dialogue.t("bot.community_limited", language))]
        await self.deliver(replies, event, direct)
        return replies

    async def _turn(self, event: Incoming, conversation: Conversation) -> list[Reply]:
        # The turn's writes that nothing reads before it ends (the person's reach, a new
        # request's experts) go to Redis with the conversation, in one round trip.
        writes = TurnWrites(self._store.redis)
        try:
            with collecting(writes):
                replies = await self.dialogue.handle(event, conversation)
        except Exception as exc:  # a failure of ours: say so rather than stay silent
            log.exception("turn failed", channel=event.channel.value, kind=event.kind.value, error=repr(exc))
            await writes.send()  # what the turn did before it failed stands, as it would have
            language = negotiate([event.locale]) if event.locale else "en"
            return [Reply(event.reach, self.dialogue.t("bot.error", language))]
        self._store.queue_save(writes.pipe, event.reach, conversation)
        await writes.send()
        return replies

    async def deliver(
        self, replies: list[Reply], event: Incoming | None = None, direct: Outbox | None = None
    ) -> None:
        for reply in replies:
            to_sender = event is not None and reply.to == event.reach
            outbox = direct if direct is not None and to_sender else self._outboxes.get(reply.to.channel)
            if outbox is None:
                log.warning("reply for a channel that is off", channel=reply.to.channel.value)
                continue
            try:
                await outbox.deliver(reply)
            except Exception as exc:  # one unreachable person must not stop the others' replies
                log.warning("delivery failed", channel=reply.to.channel.value, error=repr(exc))

    async def tick(self, *, serve_line: bool) -> None:
        """Offers that ran out go to the next experts; free experts take people waiting in line."""
        concierge = self.dialogue.concierge
        await self.deliver(self.dialogue.rounds(await concierge.expire_due()))
        await self.deliver(self.dialogue.payment_notices(await concierge.payment_notices()))
        if serve_line:
            business = self.dialogue.business
            await self.deliver(business.budget_alerts(await concierge.budget_alerts()))
            await self.deliver(business.reports(await concierge.reports_due()))
            await concierge.publish_reviews()
            await concierge.attendance_changed(concierge.bookings.take_attended())
            rounds, moved = await concierge.serve_line()
            await self.deliver(self.dialogue.served(rounds) + self.dialogue.moved(moved))
