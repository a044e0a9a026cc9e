"""Who gets into the operator console, all through the real HTTP app: accounts made with the
`concierge operators` commands, argon2 passwords, session cookies, CSRF tokens, throttling."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import select

from concierge.cli import main
from concierge.config import load_settings
from concierge.errors import ConfigError
from concierge.model import MoneyBackRequest, MoneyBackStatus, Operator, Payment, PaymentKind, utcnow
from concierge.redis_keys import entity_key
from tests.ops_console import (
    HTML,
    PASSWORD,
    Seeder,
    add_operator,
    console,
    csrf_of,
    log_in,
    page_csrf,
    sessions_of,
)

pytestmark = pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)


async def cli(args: list[str], input: str | None = None) -> Result:
    # In a thread: the command runs its own event loop, and the app serves from this one.
    return await asyncio.to_thread(CliRunner().invoke, main, args, input)


WRONG = "Wrong operator name or password, or this operator is disabled."


async def test_an_operator_made_on_the_command_line_logs_in_sees_strict_pages_and_logs_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        mismatch = await cli(["operators", "create", "alice"], input=f"{PASSWORD}\nsomething else\n")
        assert mismatch.exit_code != 0
        short = await cli(["operators", "create", "alice", "--password-stdin"], input="short\n")
        assert (short.exit_code, "at least 12 characters" in short.output) == (1, True)
        made = await cli(["operators", "create", "alice"], input=f"{PASSWORD}\n{PASSWORD}\n")
        assert made.exit_code == 0, made.output
        again = await cli(["operators", "create", "alice", "--password-stdin"], input=f"{PASSWORD}\n")
        assert again.exit_code == 1
        assert "exists already" in again.output

        unauthenticated = await client.get("/ops/", headers=HTML, allow_redirects=False)
        assert unauthenticated.status == 302
        assert unauthenticated.headers["Location"] == "/ops/login?next=/ops/"
        assert (await client.get("/ops/lists/sessions")).status == 401  # not a browser: no redirect
        assert (await client.get("/ops", allow_redirects=False)).headers["Location"] == "/ops/"

        logged_in = await log_in(client)
        assert (logged_in.status, logged_in.headers["Location"]) == (303, "/ops/")
        cookie = next(c for c in logged_in.headers.getall("Set-Cookie") if c.startswith("ops_session="))
        assert {"HttpOnly", "SameSite=Strict", "Path=/ops"} <= {part.strip() for part in cookie.split(";")}
        assert "Secure" not in cookie  # plain http in tests; https base URLs get Secure

        live = await client.get("/ops/", headers=HTML)
        assert live.status == 200
        text = await live.text()
        assert "experts online" in text
        assert "<script" not in text
        assert live.headers["Cache-Control"] == "no-store"
        assert live.headers["X-Frame-Options"] == "DENY"
        policy = live.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src" not in policy  # falls back to 'none': no script runs at all
        assert "frame-ancestors 'none'" in policy
        css = await client.get("/ops/static/ops.css")
        assert (css.status, css.headers["Cache-Control"]) == (200, "no-store")

        async with sessions_of(client)() as db:
            operator = await db.scalar(select(Operator).where(Operator.name == "alice"))
        assert operator is not None
        assert operator.last_login_at is not None
        assert operator.password_hash.startswith("$argon2id$")

        stale = await client.post("/ops/logout", data={"csrf": "not-the-token"}, allow_redirects=False)
        assert stale.status == 403
        assert (await client.get("/ops/", headers=HTML)).status == 200  # still logged in
        out = await client.post("/ops/logout", data={"csrf": await page_csrf(client)}, allow_redirects=False)
        assert (out.status, out.headers["Location"]) == (303, "/ops/login")
        assert (await client.get("/ops/")).status == 401

        bad_name = await cli(["operators", "create", "Bad Name!", "--password-stdin"], input=f"{PASSWORD}\n")
        assert (bad_name.exit_code, "operator name" in bad_name.output) == (1, True)
        assert (await cli(["operators", "disable", "nobody"])).exit_code == 1
        listed = await cli(["operators", "list"])
        assert "alice" in listed.output
        assert "enabled" in listed.output


async def test_wrong_password_unknown_and_disabled_operators_are_refused_alike(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client, "alice")
        await add_operator(client, "bob")
        for name, password in (("alice", "wrong password!!"), ("nobody", PASSWORD), ("", PASSWORD)):
            refused = await log_in(client, name, password)
            assert refused.status in (400, 401)
            assert "ops_session=" not in " ".join(refused.headers.getall("Set-Cookie", []))
        assert WRONG in await (await log_in(client, "alice", "wrong password!!")).text()

        # Bob is logged in when he is disabled: his session ends with his next request.
        bob = aiohttp.ClientSession(
            base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        try:
            form = await bob.get("/ops/login")
            await bob.post(
                "/ops/login", data={"csrf": csrf_of(await form.text()), "name": "bob", "password": PASSWORD}
            )
            assert (await bob.get("/ops/")).status == 200
            disabled = await cli(["operators", "disable", "bob"])
            assert disabled.exit_code == 0, disabled.output
            assert (await bob.get("/ops/")).status == 401
        finally:
            await bob.close()
        refused = await log_in(client, "bob", PASSWORD)
        assert refused.status == 401
        assert WRONG in await refused.text()
        async with sessions_of(client)() as db:
            alice = await db.scalar(select(Operator).where(Operator.name == "alice"))
        assert alice is not None
        assert alice.last_login_at is None


async def test_forged_replayed_and_expired_cookies_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url, ops_session_hours="12") as client:
        await add_operator(client)
        for forged in ("forged-token", "x" * 5000, ""):
            client.session.cookie_jar.update_cookies({"ops_session": forged})
            assert (await client.get("/ops/lists/sessions")).status == 401

        logged_in = await log_in(client)
        token = logged_in.cookies["ops_session"].value
        key = entity_key("ops_session", hashlib.sha256(token.encode()).hexdigest())
        redis = aioredis.Redis.from_url(redis_url)
        try:
            assert (await client.get("/ops/")).status == 200
            # The key expires when idle: its TTL is the idle timeout, renewed on use.
            assert 0 < await redis.ttl(key) <= 30 * 60
            assert token not in str(await redis.keys("*"))  # only its hash is stored
            # Twelve hours after login the session is over, however busy it was.
            await redis.hset(key, "started", repr(time.time() - 12 * 3600 - 1))
            assert (await client.get("/ops/")).status == 401
            assert not await redis.exists(key)
        finally:
            await redis.aclose()

        # A logged-out session's cookie, replayed, opens nothing.
        await log_in(client)
        replay = client.session.cookie_jar.filter_cookies(client.make_url("/ops/"))["ops_session"].value
        await client.post("/ops/logout", data={"csrf": await page_csrf(client)})
        client.session.cookie_jar.update_cookies({"ops_session": replay})
        assert (await client.get("/ops/")).status == 401


async def test_posts_without_or_with_a_wrong_csrf_token_change_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        seeder = Seeder(sessions_of(client))
        request_id, session_id = await seeder.escalated(utcnow())

        # The login form itself: without its token no session starts, even with the right password.
        no_token = await client.post(
            "/ops/login", data={"name": "alice", "password": PASSWORD}, allow_redirects=False
        )
        assert no_token.status == 403
        assert (await client.get("/ops/")).status == 401

        decide = f"/ops/disputes/{request_id}/decide"
        grant = {"decision": "grant", "amount": "", "note": "fair"}
        assert (await client.post(decide, data=grant, allow_redirects=False)).status == 401  # no cookie
        await log_in(client)
        assert (await client.post(decide, data=grant, allow_redirects=False)).status == 403
        wrong = await client.post(decide, data={**grant, "csrf": "guess"}, allow_redirects=False)
        assert wrong.status == 403
        async with sessions_of(client)() as db:
            row = await db.get(MoneyBackRequest, request_id)
            refunds = list(await db.scalars(select(Payment).where(Payment.kind == PaymentKind.REFUND)))
        assert row is not None
        assert row.status is MoneyBackStatus.ESCALATED
        assert refunds == []

        detail = await client.get(f"/ops/sessions/{session_id}", headers=HTML)
        token = csrf_of(await detail.text())
        bad = await client.post(decide, data={**grant, "csrf": token, "amount": "-5"})
        assert bad.status == 400
        done = await client.post(
            decide, data={**grant, "csrf": token, "amount": "300"}, allow_redirects=False
        )
        assert (done.status, done.headers["Location"]) == (303, f"/ops/sessions/{session_id}")
        again = await client.post(decide, data={**grant, "csrf": token})
        assert again.status == 409
        assert "already decided" in await again.text()
        async with sessions_of(client)() as db:
            row = await db.get(MoneyBackRequest, request_id)
            refunds = list(await db.scalars(select(Payment.amount).where(Payment.kind == PaymentKind.REFUND)))
        assert row is not None
        assert (row.status, row.granted_amount, row.decided_by) == (MoneyBackStatus.GRANTED, 300, "operator")
        assert refunds == [300]


async def test_failed_logins_are_throttled_per_name_and_per_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(
        monkeypatch, tmp_path, database_url, redis_url, ops_login_attempts="3", ops_lockout_minutes="15"
    ) as client:
        await add_operator(client, "alice")
        await add_operator(client, "bob")

        async def attempt(address: str, name: str, password: str) -> aiohttp.ClientResponse:
            connector = aiohttp.TCPConnector(local_addr=(address, 0))
            async with aiohttp.ClientSession(
                base_url=str(client.make_url("/")),
                connector=connector,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            ) as browser:
                form = await browser.get("/ops/login")
                response = await browser.post(
                    "/ops/login",
                    data={"csrf": csrf_of(await form.text()), "name": name, "password": password},
                    allow_redirects=False,
                )
                await response.read()
                return response

        # Per name: three wrong passwords from three addresses lock alice, even the right one.
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            assert (await attempt(address, "alice", "not her password")).status == 401
        locked = await attempt("127.0.0.5", "alice", PASSWORD)
        assert locked.status == 429
        assert "try again in 15 minutes" in await locked.text()
        assert (await attempt("127.0.0.5", "bob", PASSWORD)).status == 303  # others are not

        # Per address: three names guessed from one address lock that address for everyone.
        for name in ("carol", "dave", "erin"):
            assert (await attempt("127.0.0.6", name, "guess guess guess")).status == 401
        assert (await attempt("127.0.0.6", "bob", PASSWORD)).status == 429
        assert (await attempt("127.0.0.7", "bob", PASSWORD)).status == 303


async def test_a_hash_made_with_weaker_parameters_is_replaced_at_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
        async with sessions_of(client).begin() as db:
            db.add(Operator(name="old", password_hash=weak))
        assert (await log_in(client, "old", PASSWORD)).status == 303
        async with sessions_of(client)() as db:
            stored = await db.scalar(select(Operator.password_hash).where(Operator.name == "old"))
        assert stored is not None
        assert stored != weak
        assert not PasswordHasher().check_needs_rehash(stored)
        assert PasswordHasher().verify(stored, PASSWORD)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"CONCIERGE_OPS_IDLE_MINUTES": "0"}, "CONCIERGE_OPS_IDLE_MINUTES"),
        ({"CONCIERGE_OPS_LOGIN_ATTEMPTS": "many"}, "CONCIERGE_OPS_LOGIN_ATTEMPTS"),
        (
            {"CONCIERGE_OPS_IDLE_MINUTES": "120", "CONCIERGE_OPS_SESSION_HOURS": "1"},
            "CONCIERGE_OPS_IDLE_MINUTES",
        ),
    ],
)
def test_bad_console_settings_stop_the_start(
    variables: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine_name: str
) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


async def test_cookies_are_secure_when_the_service_is_reached_over_https(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(
        monkeypatch, tmp_path, database_url, redis_url, public_url="https://help.example.org"
    ) as client:
        await add_operator(client)
        form = await client.get("/ops/login")
        assert "Secure" in form.headers["Set-Cookie"]
        logged_in = await client.post(
            "/ops/login",
            data={"csrf": csrf_of(await form.text()), "name": "alice", "password": PASSWORD},
            # The client keeps Secure cookies for https only; a TLS proxy would pass it on.
            headers={"Cookie": f"ops_login={form.cookies['ops_login'].value}"},
            allow_redirects=False,
        )
        assert logged_in.status == 303
        cookie = next(c for c in logged_in.headers.getall("Set-Cookie") if c.startswith("ops_session="))
        assert "Secure" in {part.strip() for part in cookie.split(";")}
