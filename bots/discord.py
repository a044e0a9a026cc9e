"""The Discord channel: discord.py 2.x slash commands, buttons and DMs around the dialogue engine.

Slash commands (/ask, /expert, /online, /offline, /setup, the business admins' /roster, /budget
and /report, and the everyday ones) and button presses are interactions: the engine's replies
to the person who acted answer that interaction (ephemeral inside a guild), everyone else is
reached by DM. `/setup` needs the Manage Server
permission and links the guild to a business. An `AutoShardedClient` lets Discord decide the
shard count for large installs.

discord.py keeps its REST base in a class attribute; it is set from the configuration when the
channel starts (a local Discord server in tests), the one piece of process-wide state this
channel has. The gateway's address comes from that REST API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import redis.asyncio as aioredis
import structlog
from discord import app_commands

from bots.dispatcher import Dispatcher
from bots.events import Incoming, Kind, Reply
from concierge.config import Settings
from concierge.model import Channel
from concierge.redis_keys import entity_key

log = structlog.get_logger("bots.discord")

MAX_TEXT = 2000
REF_TTL_SECONDS = 7 * 24 * 3600


def _refs_key(user_id: str) -> str:
    return entity_key("chat", f"discord.{user_id}", "refs")


def view_of(reply: Reply) -> discord.ui.View | None:
    if not reply.buttons:
        return None
    view = discord.ui.View(timeout=None)
    for row_number, row in enumerate(reply.buttons[:5]):
        for b in row[:5]:
            if b.url:
                view.add_item(discord.ui.Button(label=b.label[:80], url=b.url, row=row_number))
            else:
                view.add_item(
                    discord.ui.Button(
                        label=b.label[:80],
                        custom_id=b.action,
                        style=discord.ButtonStyle.primary,
                        row=row_number,
                    )
                )
    return view


class DiscordChannel:
    def __init__(self, settings: Settings, dispatcher: Dispatcher, redis: aioredis.Redis) -> None:
        assert settings.discord_token is not None
        self._settings = settings
        self._dispatcher = dispatcher
        self._redis = redis
        intents = discord.Intents.default()
        intents.dm_messages = True
        self.client = discord.AutoShardedClient(intents=intents)
        self.tree = app_commands.CommandTree(self.client)
        self._task: asyncio.Task[None] | None = None
        self._define_commands()
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self.client.event(self.on_guild_join)
        self.client.setup_hook = self._setup_hook  # type: ignore[method-assign]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # The gateway address comes from GET /gateway/bot on that REST base (sharded clients).
        discord.http.Route.BASE = self._settings.discord_api_url.rstrip("/")
        assert self._settings.discord_token is not None
        await self.client.login(self._settings.discord_token.get_secret_value())
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped the connection
        log.info("discord channel started", user=str(self.client.user), shards=self.client.shard_count)

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            try:
                await self._task
            except Exception as exc:  # closing: a failed gateway task is already over
                log.info("discord gateway task ended", error=repr(exc))

    async def _setup_hook(self) -> None:
        await self.tree.sync()

    # ------------------------------------------------------------------ slash commands

    def _define_commands(self) -> None:
        tree = self.tree

        async def run(interaction: discord.Interaction, text: str) -> None:
            await self._command(interaction, text)

        @tree.command(name="ask", description="Describe what you need help with")
        @app_commands.describe(text="your question, in your own words")
        async def ask(interaction: discord.Interaction, text: str) -> None:
            await run(interaction, f"/ask {text}")

        @tree.command(name="expert", description="Become an expert with an invitation code")
        async def expert(interaction: discord.Interaction, code: str) -> None:
            await run(interaction, f"/expert {code}")

        @tree.command(name="setup", description="Link this server to your business")
        @app_commands.default_permissions(manage_guild=True)
        @app_commands.guild_only()
        async def setup(interaction: discord.Interaction, code: str) -> None:
            await run(interaction, f"/setup {code}")

        @tree.command(name="report", description="Your business's monthly report (business admins)")
        @app_commands.describe(month="YYYY-MM; this month when left out")
        async def report(interaction: discord.Interaction, month: str | None = None) -> None:
            await run(interaction, f"/report {month or ''}".strip())

        @tree.command(name="lang", description="Change the language I speak")
        async def lang(interaction: discord.Interaction, language: str | None = None) -> None:
            await run(interaction, f"/lang {language or ''}".strip())

        @tree.command(name="schedule", description="Experts: your booking settings, or change one")
        async def schedule(interaction: discord.Interaction, change: str | None = None) -> None:
            await run(interaction, f"/schedule {change or ''}".strip())

        @tree.command(name="link", description="Use one account across Telegram, Discord and the website")
        async def link(interaction: discord.Interaction, code: str | None = None) -> None:
            await run(interaction, f"/link {code or ''}".strip())

        for name, description in (
            ("online", "Start taking requests"),
            ("offline", "Stop taking requests"),
            ("help", "What I can do"),
            ("cancel", "Stop what we are doing"),
            ("sessions", "Your sessions"),
            ("bookings", "Your coming bookings: move or cancel"),
            ("reviews", "Reviews of you"),
            ("blocks", "People you blocked"),
            ("profile", "What I know about you, and your listing"),
            ("roster", "Your business's experts (business admins)"),
            ("budget", "Your business's sponsorship budget (business admins)"),
        ):
            tree.add_command(
                app_commands.Command(name=name, description=description, callback=_plain(run, name))
            )

    async def _command(self, interaction: discord.Interaction, text: str) -> None:
        event = self._event(interaction, Kind.COMMAND, text)
        await self._dispatcher.handle(event, direct=_InteractionOutbox(self, interaction))

    # ------------------------------------------------------------------ events

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Added to a server: say what the bot does and how a manager links it, in the server's language."""
        me = guild.me
        candidates = [guild.system_channel, *guild.text_channels]
        channel = next((c for c in candidates if c is not None and c.permissions_for(me).send_messages), None)
        if channel is None:
            log.info("discord server joined, no channel to greet in", guild=guild.id)
            return
        language = str(guild.preferred_locale).split("-")[0]
        await channel.send(self._dispatcher.dialogue.t("bot.server.hello", language))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.component or interaction.data is None:
            return
        custom_id = interaction.data.get("custom_id")
        if not isinstance(custom_id, str):
            return
        event = self._event(interaction, Kind.PRESS, custom_id[:64])
        await self._dispatcher.handle(event, direct=_InteractionOutbox(self, interaction))

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is not None:
            return  # guild chatter is not for us: slash commands are
        author = message.author
        if message.attachments or message.stickers or not message.content:
            kind, text = Kind.UNSUPPORTED, "file"
        else:
            text = message.content
            kind = Kind.COMMAND if text.lstrip().startswith("/") else Kind.TEXT
        event = Incoming(Channel.DISCORD, str(author.id), author.display_name, kind, text)
        await self._dispatcher.handle(event)

    def _event(self, interaction: discord.Interaction, kind: Kind, text: str) -> Incoming:
        user = interaction.user
        guild = interaction.guild_id
        return Incoming(
            Channel.DISCORD,
            str(user.id),
            user.display_name,
            kind,
            text,
            locale=str(interaction.locale) if interaction.locale else None,
            community=str(guild) if guild is not None else None,
            is_admin=guild is not None and interaction.permissions.manage_guild,
            in_group=guild is not None,
        )

    # ------------------------------------------------------------------ outgoing

    async def deliver(self, reply: Reply) -> None:
        """To someone not in this turn: by DM, editing the DM named by `ref` when asked to."""
        user_id = int(reply.to.user_id)
        user = self.client.get_user(user_id) or await self.client.fetch_user(user_id)
        channel = user.dm_channel or await user.create_dm()
        text = reply.text[:MAX_TEXT]
        view = view_of(reply)
        if reply.edit and reply.ref:
            message_id = await self._redis.hget(_refs_key(reply.to.user_id), reply.ref)
            if message_id is not None:
                try:
                    await channel.get_partial_message(int(message_id)).edit(content=text, view=view)
                    _forget(view)
                    return
                except discord.HTTPException as exc:
                    log.info("discord edit failed, sending anew", error=str(exc))
        try:
            sent = await channel.send(text, view=view) if view is not None else await channel.send(text)
        except discord.Forbidden:
            log.info("discord user does not accept DMs", user=user_id)
            return
        _forget(view)
        await self.remember(reply, sent.id)

    async def remember(self, reply: Reply, message_id: int) -> None:
        if reply.ref:
            key = _refs_key(reply.to.user_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, reply.ref, message_id)
                pipe.expire(key, REF_TTL_SECONDS)
                await pipe.execute()


class _InteractionOutbox:
    """Replies to the person who used a command or pressed a button answer that interaction."""

    def __init__(self, channel: DiscordChannel, interaction: discord.Interaction) -> None:
        self._channel = channel
        self._interaction = interaction

    async def deliver(self, reply: Reply) -> None:
        interaction = self._interaction
        text = reply.text[:MAX_TEXT]
        view = view_of(reply)
        ephemeral = interaction.guild_id is not None
        kwargs: dict[str, Any] = {"view": view} if view is not None else {}
        if not interaction.response.is_done():
            if reply.edit and interaction.type is discord.InteractionType.component:
                # The pressed button sits on the message this edit names: update it in place.
                await interaction.response.edit_message(content=text, view=view)
                _forget(view)
                return
            await interaction.response.send_message(text, ephemeral=ephemeral, **kwargs)
            message_id = (await interaction.original_response()).id
        else:
            message_id = (await interaction.followup.send(text, ephemeral=ephemeral, wait=True, **kwargs)).id
        _forget(view)
        if not ephemeral:
            await self._channel.remember(reply, message_id)


def _forget(view: discord.ui.View | None) -> None:
    # Buttons are answered in `on_interaction` from their custom ids, so discord.py need not
    # keep every view ever sent in memory.
    if view is not None:
        view.stop()


def _plain(run: Any, name: str) -> Any:
    async def callback(interaction: discord.Interaction) -> None:
        await run(interaction, f"/{name}")

    return callback
