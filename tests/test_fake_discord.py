"""The fake Discord server (tests/fakes/discord_server.py) driven by the real, unmodified discord.py.

No part of the library is mocked: an ``AutoShardedClient`` with a ``CommandTree`` logs in over REST,
connects to the fake gateway, syncs its slash commands, and answers users simulated by the fake.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import threading
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.http import Route

from tests.fakes.discord_server import FakeDiscord, FakeDiscordError

GUILD_ID = 710000000000000001
CHANNEL_ID = 710000000000000002
OWNER_ID = 720000000000000001
MANAGER_ID = 720000000000000002
MEMBER_ID = 720000000000000003
ALICE_ID = 720000000000000004
MANAGE_GUILD = 1 << 5
EPHEMERAL = 1 << 6
LOADING = 1 << 7


def person(user_id: int) -> dict[str, str]:
    """What the simulation API needs to name a user."""
    return {"id": str(user_id)}


class AcceptButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"accept:(?P<request>[0-9]+)"
):
    """A persistent button: the request id lives in the custom_id, no view needs to be remembered."""

    def __init__(self, request_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Accept", style=discord.ButtonStyle.success, custom_id=f"accept:{request_id}"
            )
        )
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> AcceptButton:
        return cls(int(match["request"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"Accepted request {self.request_id}", view=None)


class ConfirmView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.pressed_by: int | None = None

    @discord.ui.button(label="Confirm", custom_id="confirm")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmView]) -> None:
        self.pressed_by = interaction.user.id
        await interaction.response.edit_message(content=f"Confirmed by {interaction.user.id}", view=None)


class SlotView(discord.ui.View):
    @discord.ui.select(
        custom_id="slot",
        options=[
            discord.SelectOption(label="Monday", value="mon"),
            discord.SelectOption(label="Tuesday", value="tue"),
        ],
    )
    async def slot(self, interaction: discord.Interaction, select: discord.ui.Select[SlotView]) -> None:
        await interaction.response.send_message(f"Booked {select.values[0]}", ephemeral=True)


class Bot(discord.AutoShardedClient):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.dm_messages = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.seen: dict[str, discord.Interaction] = {}
        self.errors: list[Exception] = []
        self.synced: list[app_commands.AppCommand] = []
        self.ready_fired = asyncio.Event()

        @self.tree.command(description="Ask for help")
        async def ask(interaction: discord.Interaction, text: str) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(AcceptButton(42))
            await interaction.response.send_message(f"Looking for help with: {text}", view=view)

        @self.tree.command(description="Set up your business")
        @app_commands.default_permissions(manage_guild=True)
        async def setup(interaction: discord.Interaction, code: str) -> None:
            self.seen["setup"] = interaction
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.edit_original_response(
                content=f"manage_guild={interaction.permissions.manage_guild} code={code}"
            )
            await interaction.followup.send("Setup complete", ephemeral=True)

        @self.tree.command(description="Repeat a text")
        async def echo(
            interaction: discord.Interaction, text: str, times: int = 1, attach: bool = False
        ) -> None:
            extra: dict[str, Any] = {}
            if attach:
                extra["file"] = discord.File(io.BytesIO(text.encode()), "echo.txt")
            try:
                await interaction.response.send_message(text * times, **extra)
            except discord.HTTPException as error:
                self.errors.append(error)
                await interaction.response.send_message("That is too long for Discord.", ephemeral=True)
                return
            await interaction.edit_original_response(content=f"{text * times} (edited)")

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AcceptButton)
        self.synced = await self.tree.sync()

    async def on_ready(self) -> None:
        self.ready_fired.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.inbox.put_nowait(message)


@asynccontextmanager
async def running(client: discord.Client, token: str) -> AsyncIterator[discord.Client]:
    await client.login(token)
    task = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(client.wait_until_ready(), 10)
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.user(OWNER_ID, "owner")
        server.user(MANAGER_ID, "manager", locale="de")
        server.user(MEMBER_ID, "member")
        server.user(ALICE_ID, "alice", locale="fr")
        server.guild(GUILD_ID, "Acme Plumbing", owner_id=OWNER_ID, channel_id=CHANNEL_ID)
        server.add_member(GUILD_ID, person(MANAGER_ID), manage_guild=True)
        server.add_member(GUILD_ID, person(MEMBER_ID))
        with server.point_client():
            yield server


@pytest.fixture
async def bot(fake: FakeDiscord, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Bot]:
    client = Bot()
    async with running(client, fake.token):
        yield client
    # discord.py logs exceptions raised in command, view and event handlers instead of raising them.
    logged = [
        r
        for phase in ("setup", "call", "teardown")
        for r in caplog.get_records(phase)
        if r.levelno >= logging.ERROR and r.name.startswith("discord")
    ]
    assert not logged, "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in logged)


async def test_auto_sharded_client_connects_and_registers_its_commands(fake: FakeDiscord, bot: Bot) -> None:
    assert bot.ready_fired.is_set()
    assert fake.identify is not None
    assert fake.identify["shard"] == [0, 1]
    assert fake.identify["intents"] == bot.intents.value
    assert fake.identify["intents"] & discord.Intents(dm_messages=True).value
    query = fake.gateway_queries[-1]
    assert query["v"] == "10"
    assert query["encoding"] == "json"
    assert query["compress"].endswith("-stream")
    app = fake.application_id
    for call in [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
        ("GET", "/gateway/bot"),
        ("PUT", f"/applications/{app}/commands"),
    ]:
        assert call in fake.calls

    by_name = {c["name"]: c for c in fake.commands}
    assert set(by_name) == {"ask", "setup", "echo"}
    assert by_name["setup"]["default_member_permissions"] == str(MANAGE_GUILD)
    assert by_name["ask"]["default_member_permissions"] is None
    assert by_name["ask"]["options"] == [{"type": 3, "name": "text", "description": "…", "required": True}]
    assert sorted(c.id for c in bot.synced) == sorted(int(c["id"]) for c in fake.commands)

    assert bot.user is not None
    assert bot.user.id == fake.bot_user_id
    assert bot.application_id == app
    assert bot.shard_count == 1
    guild = bot.get_guild(GUILD_ID)
    assert guild is not None
    assert guild.name == "Acme Plumbing"
    assert guild.owner_id == OWNER_ID
    assert guild.get_channel(CHANNEL_ID) is not None
    assert guild.me is not None
    assert guild.me.guild_permissions.send_messages
    assert fake.unknown_routes == []
    assert fake.server_errors == []


@pytest.mark.parametrize("in_guild", [False, True], ids=["dm", "guild"])
async def test_ask_answers_with_a_dynamic_button_whose_press_updates_the_message(
    fake: FakeDiscord, bot: Bot, in_guild: bool
) -> None:
    user = person(MEMBER_ID if in_guild else ALICE_ID)
    interaction = await fake.slash(
        user, "ask", {"text": "a leaking sink"}, guild_id=GUILD_ID if in_guild else None
    )
    assert interaction["data"]["options"] == [{"name": "text", "type": 3, "value": "a leaking sink"}]

    response = await fake.response_to(interaction)
    assert response["type"] == 4
    message = await fake.wait_for(lambda m: m["interaction_id"] == interaction["id"])
    assert message["content"] == "Looking for help with: a leaking sink"
    assert message["components"][0]["components"][0]["custom_id"] == "accept:42"
    assert message["edits"] == 0
    assert (message.get("guild_id") == str(GUILD_ID)) is in_guild
    if not in_guild:
        assert fake.dms_to(ALICE_ID) == [message]

    press = await fake.press(user, message, "accept:42")
    assert press["data"] == {"custom_id": "accept:42", "component_type": 2}
    assert (await fake.response_to(press))["type"] == 7
    updated = await fake.wait_for(lambda m: m["id"] == message["id"] and m["edits"] == 1)
    assert updated["content"] == "Accepted request 42"
    assert updated["components"] == []
    assert [m["id"] for m in fake.messages] == [message["id"]]  # updated in place, no new message

    with pytest.raises(FakeDiscordError, match="no component 'accept:42'"):
        await fake.press(user, updated, "accept:42")
    assert fake.server_errors == []


async def test_dm_sent_with_a_view_and_its_button(fake: FakeDiscord, bot: Bot) -> None:
    alice = await bot.fetch_user(ALICE_ID)
    view = ConfirmView()
    sent = await alice.send("hi", view=view)

    [dm] = fake.dms_to(ALICE_ID)
    assert dm["content"] == "hi"
    assert int(dm["id"]) == sent.id
    assert dm["channel_id"] == str(fake.dm_channel_id(ALICE_ID))
    assert dm["components"][0]["components"][0]["custom_id"] == "confirm"
    assert ("POST", "/users/@me/channels") in fake.calls

    with pytest.raises(FakeDiscordError, match="DM of user"):
        await fake.press(person(MEMBER_ID), dm, "confirm")
    press = await fake.press(person(ALICE_ID), dm, "confirm")
    assert (await fake.response_to(press))["type"] == 7
    edited = await fake.wait_for(lambda m: m["id"] == dm["id"] and m["edits"] == 1)
    assert edited["content"] == f"Confirmed by {ALICE_ID}"
    assert view.pressed_by == ALICE_ID


async def test_user_messages_reach_on_message_as_discord_delivers_them(fake: FakeDiscord, bot: Bot) -> None:
    await fake.dm(person(ALICE_ID), "hello bot")
    message = await asyncio.wait_for(bot.inbox.get(), 5)
    assert message.content == "hello bot"
    assert isinstance(message.channel, discord.DMChannel)
    assert message.author.id == ALICE_ID
    assert message.guild is None

    # Default intents lack MESSAGE_CONTENT: guild text arrives blank unless the bot is mentioned.
    await fake.say(person(MEMBER_ID), GUILD_ID, CHANNEL_ID, "anyone around?")
    plain = await asyncio.wait_for(bot.inbox.get(), 5)
    assert plain.content == ""
    assert plain.guild is not None
    assert plain.guild.id == GUILD_ID
    await fake.say(person(MEMBER_ID), GUILD_ID, CHANNEL_ID, f"<@{fake.bot_user_id}> I need a plumber")
    mention = await asyncio.wait_for(bot.inbox.get(), 5)
    assert mention.content.endswith("I need a plumber")
    assert bot.user in mention.mentions
    assert isinstance(mention.author, discord.Member)

    with pytest.raises(FakeDiscordError, match="not a member"):
        await fake.say(person(ALICE_ID), GUILD_ID, CHANNEL_ID, "I am not in this guild")


async def test_guild_setup_carries_member_permissions_defers_edits_and_follows_up(
    fake: FakeDiscord, bot: Bot
) -> None:
    interaction = await fake.slash(person(MANAGER_ID), "setup", {"code": "ABC-123"}, guild_id=GUILD_ID)
    assert int(interaction["member"]["permissions"]) & MANAGE_GUILD
    assert interaction["locale"] == "de"
    assert interaction["guild_locale"] == "en-US"

    response = await fake.response_to(interaction)
    assert response == {"type": 5, "data": {"flags": EPHEMERAL}}
    followup = await fake.wait_for(lambda m: m["content"] == "Setup complete")
    original = await fake.wait_for(lambda m: m["interaction_id"] == interaction["id"])
    assert original["content"] == "manage_guild=True code=ABC-123"
    assert original["flags"] & EPHEMERAL
    assert not original["flags"] & LOADING
    assert original["edits"] == 0  # completing a deferred response is not an edit
    assert followup["interaction_id"] == interaction["id"]
    assert followup["flags"] & EPHEMERAL
    assert followup["id"] != original["id"]
    seen = bot.seen["setup"]
    assert isinstance(seen.user, discord.Member)
    assert seen.user.id == MANAGER_ID
    assert seen.permissions.manage_guild
    assert seen.guild_id == GUILD_ID

    # A plain member does not even see /setup ...
    with pytest.raises(FakeDiscordError, match="default_member_permissions"):
        await fake.slash(person(MEMBER_ID), "setup", {"code": "X"}, guild_id=GUILD_ID)
    # ... unless a guild admin granted it to them, and then the bot sees what they lack.
    granted = await fake.slash(
        person(MEMBER_ID), "setup", {"code": "X"}, guild_id=GUILD_ID, ignore_default_permissions=True
    )
    denied = await fake.wait_for(
        lambda m: m["interaction_id"] == granted["id"] and m["content"].startswith("manage_guild")
    )
    assert denied["content"] == "manage_guild=False code=X"

    # The owner has every permission without any role.
    owner = await fake.slash(person(OWNER_ID), "setup", {"code": "O"}, guild_id=GUILD_ID)
    assert int(owner["member"]["permissions"]) == discord.Permissions.all().value
    await fake.wait_for(lambda m: m["interaction_id"] == owner["id"] and m["content"] == "Setup complete")


async def test_slash_is_checked_against_what_the_bot_registered(fake: FakeDiscord, bot: Bot) -> None:
    with pytest.raises(FakeDiscordError, match="did not register /nope"):
        await fake.slash(person(ALICE_ID), "nope")
    with pytest.raises(FakeDiscordError, match="'text' is required"):
        await fake.slash(person(ALICE_ID), "ask")
    with pytest.raises(FakeDiscordError, match="integer option"):
        await fake.slash(person(ALICE_ID), "echo", {"text": "a", "times": "2"})
    with pytest.raises(FakeDiscordError, match="no option"):
        await fake.slash(person(ALICE_ID), "ask", {"text": "a", "urgent": True})


async def test_interaction_response_edit_file_and_too_long_content(fake: FakeDiscord, bot: Bot) -> None:
    interaction = await fake.slash(person(ALICE_ID), "echo", {"text": "ab", "times": 2, "attach": True})
    message = await fake.wait_for(lambda m: m["interaction_id"] == interaction["id"] and m["edits"] == 1)
    assert message["content"] == "abab (edited)"
    [attachment] = message["attachments"]
    assert attachment["filename"] == "echo.txt"
    assert fake.files[attachment["id"]] == b"ab"

    too_long = await fake.slash(person(ALICE_ID), "echo", {"text": "x", "times": 2001})
    apology = await fake.wait_for(lambda m: m["interaction_id"] == too_long["id"])
    assert apology["content"] == "That is too long for Discord."
    assert apology["flags"] & EPHEMERAL
    [error] = bot.errors
    assert isinstance(error, discord.HTTPException)
    assert error.status == 400
    assert error.code == 50035
    assert "2000 or fewer" in error.text

    # The interaction is answered: Discord refuses a second callback.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.rest_base}/interactions/{interaction['id']}/{interaction['token']}/callback",
            json={"type": 4, "data": {"content": "again"}},
        ) as answer,
    ):
        assert answer.status == 400
        assert answer.headers["Content-Type"] == "application/json"
        assert (await answer.json())["code"] == 40060


async def test_channel_errors_come_back_as_discord_exceptions(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.status == 400
    assert too_long.value.code == 50035
    with pytest.raises(discord.HTTPException) as empty:
        await channel.send(" ")
    assert empty.value.code == 50006

    sent = await channel.send("report", file=discord.File(io.BytesIO(b"hello"), "report.txt"))
    assert sent.attachments[0].filename == "report.txt"
    edited = await sent.edit(content="report v2")
    assert edited.content == "report v2"
    record = await fake.wait_for(lambda m: m["id"] == str(sent.id))
    assert record["edits"] == 1
    assert record["channel_id"] == str(CHANNEL_ID)

    with pytest.raises(discord.NotFound):
        await bot.http.request(Route("GET", "/no/such/route"))
    assert ("GET", "/no/such/route") in fake.unknown_routes
    assert fake.messages == [record]


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    assert fake.calls == [("GET", "/users/@me")]


async def test_late_answers_miss_the_interaction_deadline() -> None:
    answers: list[discord.NotFound] = []
    answered = asyncio.Event()

    class Slow(discord.Client):
        def __init__(self) -> None:
            super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.01)
            self.tree = app_commands.CommandTree(self)

            @self.tree.command(description="Too slow")
            async def slow(interaction: discord.Interaction) -> None:
                await asyncio.sleep(0.3)
                try:
                    await interaction.response.send_message("finally")
                except discord.NotFound as error:
                    answers.append(error)
                answered.set()

        async def setup_hook(self) -> None:
            await self.tree.sync()

    async with FakeDiscord(interaction_deadline=0.1) as server:
        server.user(ALICE_ID, "alice")
        with server.point_client():
            async with running(Slow(), server.token):
                interaction = await server.slash(person(ALICE_ID), "slow")
                await asyncio.wait_for(answered.wait(), 5)
    [error] = answers
    assert error.code == 10062
    assert server.messages == []
    with pytest.raises(TimeoutError, match="response to interaction"):
        await server.response_to(interaction, timeout=0.01)


async def test_clean_shutdown_leaves_nothing_open(
    fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = Bot()
        async with running(client, fake.token):
            await fake.slash(person(ALICE_ID), "ask", {"text": "x"})
            await fake.wait_for(lambda m: m["content"].endswith("x"))
        assert client.is_closed()
        session = client.http._HTTPClient__session  # type: ignore[attr-defined]
        assert session.closed
        del client, session
        gc.collect()
        await asyncio.sleep(0)
    keep_alive = [t for t in threading.enumerate() if t.name.startswith("keep-alive-handler")]
    for thread in keep_alive:
        thread.join(2)
    assert not any(t.is_alive() for t in keep_alive)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [r for r in caplog.records if "nclosed" in r.getMessage()]
    assert fake.server_errors == []


async def test_reconnect_resumes_the_session(fake: FakeDiscord, bot: Bot) -> None:
    resumed = asyncio.ensure_future(bot.wait_for("shard_resumed", timeout=10))
    fake.request_reconnect()
    assert await resumed == 0
    assert len(fake.identifies) == 1
    assert len(fake.resumes) == 1
    assert len(fake.gateway_queries) == 2

    interaction = await fake.slash(person(ALICE_ID), "ask", {"text": "still there?"})
    assert (await fake.response_to(interaction))["type"] == 4


async def test_select_menu_in_a_guild_channel(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("Pick a slot", view=SlotView())
    offer = await fake.wait_for(lambda m: m["id"] == str(sent.id))

    with pytest.raises(FakeDiscordError, match="offers"):
        await fake.select(person(MEMBER_ID), offer, "slot", ["sun"])
    with pytest.raises(FakeDiscordError, match="not a member"):
        await fake.select(person(ALICE_ID), offer, "slot", ["mon"])
    picked = await fake.select(person(MEMBER_ID), offer, "slot", ["tue"])
    assert picked["data"] == {"custom_id": "slot", "component_type": 3, "values": ["tue"]}
    booked = await fake.wait_for(lambda m: m["interaction_id"] == picked["id"])
    assert booked["content"] == "Booked tue"
    assert booked["flags"] & EPHEMERAL
    assert booked["channel_id"] == str(CHANNEL_ID)
    assert booked["interaction_metadata"]["interacted_message_id"] == offer["id"]


async def test_guild_joined_while_connected_with_guild_commands(fake: FakeDiscord, bot: Bot) -> None:
    second_guild, second_channel, second_owner = 740000000000000001, 740000000000000002, 730000000000000001
    joined = asyncio.ensure_future(bot.wait_for("guild_join", timeout=10))
    fake.user(second_owner, "second-owner")
    fake.guild(second_guild, "Second Shop", owner_id=second_owner, channel_id=second_channel)
    guild = await joined
    assert guild.id == second_guild
    assert guild.get_channel(second_channel) is not None

    @bot.tree.command(description="Only here", guild=discord.Object(second_guild))
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"local to {interaction.guild_id}")

    synced = await bot.tree.sync(guild=discord.Object(second_guild))
    assert [c.name for c in synced] == ["local"]
    assert [c["name"] for c in fake.guild_commands[second_guild]] == ["local"]
    assert "local" not in {c["name"] for c in fake.commands}

    interaction = await fake.slash(person(second_owner), "local", guild_id=second_guild)
    assert interaction["data"]["guild_id"] == str(second_guild)
    answer = await fake.wait_for(lambda m: m["interaction_id"] == interaction["id"])
    assert answer["content"] == f"local to {second_guild}"
    with pytest.raises(FakeDiscordError, match="did not register /local"):
        await fake.slash(person(second_owner), "local")
