"""The operator console's pages through the real HTTP app: lists with search, a session's whole
story, recordings with their access log, and the charts' numbers on seeded data (both engines)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from concierge.model import RecordingAccess, Review, Room, utcnow
from concierge.ops.stats import chart_facts
from concierge.video import RECORDINGS
from tests.ops_console import HTML, Seeder, add_operator, console, log_in, sessions_of
from video_gateway.meter import EndReason
from video_gateway.rooms import MediaMode

sqlite_only = pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)


def _room(session_id: str, recording: str) -> Room:
    return Room(
        id=f"room-{session_id[-8:]}",
        session_id=session_id,
        customer_name="Carla",
        customer_language="en",
        expert_name="Tomás",
        expert_language="en",
        mode=MediaMode.RELAY,
        recorded=True,
        links_expire_at=utcnow() + timedelta(minutes=10),
        billed_seconds=600,
        end_reason=EndReason.HANGUP,
        recording=recording,
    )


@sqlite_only
async def test_lists_search_escape_and_refuse_bad_input_and_a_session_tells_its_whole_story(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        seeder = Seeder(sessions_of(client))
        shown, _, _ = await seeder.settled(utcnow() - timedelta(hours=2), customer="<b>Zoe</b>")
        other, _, _ = await seeder.settled(utcnow() - timedelta(hours=1), customer="Paul")
        await log_in(client)

        found = await client.get("/ops/lists/sessions", params={"q": "<B>zo"}, headers=HTML)
        text = await found.text()
        assert found.status == 200
        assert "1 found" in text
        assert f'href="/ops/sessions/{shown}"' in text
        assert other not in text
        assert "&lt;b&gt;Zoe&lt;/b&gt;" in text
        assert "<b>Zoe" not in text
        everyone = await (await client.get("/ops/lists/sessions")).text()
        assert "2 found" in everyone
        # LIKE wildcards typed in a search are plain characters.
        assert "0 found" in await (await client.get("/ops/lists/sessions", params={"q": "%"})).text()

        for params, status in (
            ({"page": "abc"}, 400),
            ({"page": "0"}, 400),
            ({"q": "x" * 101}, 400),
        ):
            assert (await client.get("/ops/lists/sessions", params=params)).status == status
        assert (await client.get("/ops/lists/nothing-like-this")).status == 404
        payments = await (await client.get("/ops/lists/payments", params={"q": shown})).text()
        assert "capture" in payments
        assert "€15.00" in payments

        detail = await client.get(f"/ops/sessions/{shown}")
        story = await detail.text()
        assert detail.status == 200
        for fact in ("Billed seconds", "600", "go_live", "settle", "platform:fees", "€3.00", "capture"):
            assert fact in story, fact
        assert (await client.get("/ops/sessions/ses_nope")).status == 404


@sqlite_only
async def test_a_recording_is_served_to_logged_in_operators_only_and_every_access_is_logged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        operator_id = await add_operator(client)
        seeder = Seeder(sessions_of(client))
        recorded, _, _ = await seeder.settled(utcnow() - timedelta(hours=2))
        tampered, _, _ = await seeder.settled(utcnow() - timedelta(hours=1))
        expired, _, _ = await seeder.settled(utcnow() - timedelta(minutes=30))
        directory = tmp_path / "var" / RECORDINGS
        directory.mkdir(parents=True)
        (directory / "call.mkv").write_bytes(b"\x1a\x45\xdf\xa3 a matroska file")
        async with sessions_of(client).begin() as db:
            db.add(_room(recorded, f"{RECORDINGS}/call.mkv"))
            db.add(_room(tampered, "secret_key"))  # a row pointing outside the recordings
            db.add(_room(expired, f"{RECORDINGS}/deleted.mkv"))

        async def accesses() -> list[RecordingAccess]:
            async with sessions_of(client)() as db:
                return list(await db.scalars(select(RecordingAccess)))

        assert (await client.get(f"/ops/recordings/{recorded}")).status == 401
        assert await accesses() == []

        await log_in(client)
        agent = {"User-Agent": "ops-test-agent/1.0"}
        served = await client.get(f"/ops/recordings/{recorded}", headers=agent)
        assert served.status == 200
        assert await served.read() == b"\x1a\x45\xdf\xa3 a matroska file"
        assert served.headers["Content-Disposition"] == f'attachment; filename="{recorded}.mkv"'
        assert served.headers["Cache-Control"] == "no-store"
        assert (await client.get(f"/ops/recordings/{tampered}")).status == 404
        assert (await client.get(f"/ops/recordings/{expired}")).status == 410
        assert (await client.get("/ops/recordings/ses_nope")).status == 404
        (logged,) = await accesses()
        assert (logged.operator_id, logged.session_id, logged.ip, logged.user_agent) == (
            operator_id,
            recorded,
            "127.0.0.1",
            "ops-test-agent/1.0",
        )

        log = await (await client.get("/ops/lists/recording-access", params={"q": "alice"})).text()
        assert "1 found" in log
        assert "ops-test-agent/1.0" in log
        listed = await (await client.get("/ops/lists/recordings")).text()
        assert "3 found" in listed
        assert "(opened 1 times)" in await (await client.get(f"/ops/sessions/{recorded}")).text()


def _figure(page: str, title: str) -> str:
    start = page.index(f"<figcaption>{title}")
    return page[start : page.index("</figure>", start)]


async def test_the_charts_count_what_was_seeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        sessions = sessions_of(client)
        seeder = Seeder(sessions)
        today = datetime.now(UTC).date()
        yesterday_10 = datetime.combine(today - timedelta(days=1), time(10), UTC)
        # Yesterday: two matched requests and one nobody took.
        first, first_customer, first_expert = await seeder.settled(yesterday_10, minutes=10, accept_after=30)
        second, second_customer, second_expert = await seeder.settled(
            yesterday_10 + timedelta(hours=2), minutes=4, offer_after=120, accept_after=90
        )
        await seeder.unmatched(yesterday_10 + timedelta(hours=3))
        # Today, early: one at €2.00 a minute.
        early = max(datetime.combine(today, time(0, 1), UTC), utcnow() - timedelta(hours=3))
        await seeder.settled(early, minutes=5, price=200)
        await seeder.cashier.refund(first, 300, "partly")
        async with sessions.begin() as db:
            db.add(Review(session_id=first, author_id=first_customer, subject_id=first_expert, stars=5))
            db.add(Review(session_id=second, author_id=second_customer, subject_id=second_expert, stars=3))
            db.add(Review(session_id=first, author_id=first_expert, subject_id=first_customer, stars=1))

        async with sessions() as db:
            facts = await chart_facts(db, today, 7)
        assert facts.days[-2:] == [today - timedelta(days=1), today]
        assert facts.sessions[-2:] == [2, 1]
        assert facts.minutes[-2:] == [14.0, 5.0]
        assert facts.requests[-2:] == [3, 1]
        assert facts.matched[-2:] == [2, 1]
        assert facts.match_rate[-2] == pytest.approx(2 / 3)
        assert facts.accept_median_s[-2] == pytest.approx(60.0)  # 30 s and 90 s
        assert facts.wait_median_s[-2] == pytest.approx(120.0)  # 30 s and 210 s
        assert facts.wait_p90_s[-2] == pytest.approx(210.0)
        # The ledger books charges when they are settled (today): 15.00 + 6.00 + 10.00 - 3.00.
        assert facts.revenue == {"EUR": [0, 0, 0, 0, 0, 0, 2800]}
        assert facts.commission == {"EUR": [0, 0, 0, 0, 0, 0, 560]}
        assert facts.ratings == [0, 0, 1, 0, 1]  # customers' stars only
        assert sum(facts.sessions[:-2]) == 0

        await log_in(client)
        page = await (await client.get("/ops/charts", params={"days": "7"})).text()
        revenue = _figure(page, "Revenue and commission per day (EUR")
        assert f'<th scope="row">{today.strftime("%m-%d")}</th><td>2,800</td><td>560</td>' in revenue
        assert "<svg" in revenue
        assert len(re.findall("<rect ", revenue)) == 2 + 2  # two bars, two legend keys
        rate = _figure(page, "Match rate per day (%)")
        yesterday = (today - timedelta(days=1)).strftime("%m-%d")
        assert f'<th scope="row">{yesterday}</th><td>66.7</td>' in rate
        ratings = _figure(page, "Ratings customers gave")
        assert '<th scope="row">5★</th><td>1</td>' in ratings
        for bad in ({"days": "8"}, {"days": "x"}, {"until": "2999-01-01"}, {"until": "yesterday"}):
            assert (await client.get("/ops/charts", params=bad)).status == 400


@sqlite_only
async def test_reports_from_the_chat_are_listed_and_searchable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from concierge.reports import Reports

    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        seeder = Seeder(sessions_of(client))
        session_id, customer_id, _ = await seeder.settled(utcnow() - timedelta(hours=1))
        report = await Reports(sessions_of(client)).file(
            session_id, customer_id, "He asked me to <pay> him outside the platform"
        )
        assert (await client.get("/ops/lists/reports")).status in (302, 303, 401)  # not logged in
        await log_in(client)
        page = await (await client.get("/ops/lists/reports", params={"q": "outside the platform"})).text()
        assert report.id in page
        assert "&lt;pay&gt;" in page  # escaped
        assert "<pay>" not in page
        assert (
            "0 found"
            in await (await client.get("/ops/lists/reports", params={"q": "nothing like it"})).text()
        )


@sqlite_only
async def test_self_help_articles_show_how_often_they_solved_the_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from concierge.articles import ArticleLibrary
    from concierge.database import read_sessions
    from concierge.model import ArticleOutcome
    from matcher.articles import ArticleHit

    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        seeder = Seeder(sessions_of(client))
        library = ArticleLibrary(sessions_of(client), read_sessions(sessions_of(client)))
        outcomes = [ArticleOutcome.SOLVED, ArticleOutcome.SOLVED, ArticleOutcome.STILL_WANT, None]
        for outcome in outcomes:
            request_id = await seeder.unmatched(utcnow() - timedelta(hours=1))
            await library.offered(request_id, ArticleHit("wifi-drops", None, 0.8), "en")
            if outcome is not None:
                assert await library.answer(request_id, outcome)
        await log_in(client)
        page = await (await client.get("/ops/lists/articles", params={"q": "wifi"})).text()
        row = re.search(r"<tr>(?:(?!</tr>).)*wifi-drops(?:(?!</tr>).)*</tr>", page, re.S)
        assert row is not None, page
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        assert cells[1:6] == ["shared", "4", "2", "1", "67%"]
