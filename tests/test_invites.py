"""Invitation codes: created by operators, redeemed once per use, refused with a reason."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.cli import main
from concierge.errors import DomainError, InviteRefused, NotFound
from concierge.invites import create_invite, display_code, normalise_code, redeem_invite
from concierge.model import Business, InviteCode


async def redeem(sessions: async_sessionmaker[AsyncSession], code: str, now: datetime) -> InviteCode:
    async with sessions.begin() as db:
        return await redeem_invite(db, code, now)


async def test_a_code_is_used_up_after_its_uses(sessions: async_sessionmaker[AsyncSession]) -> None:
    invite = await create_invite(sessions, uses=2)
    now = datetime.now(UTC)
    typed = display_code(invite.code).lower().replace("0", "o")  # how people retype codes
    assert normalise_code(typed) == invite.code
    assert (await redeem(sessions, typed, now)).uses_left == 1
    assert (await redeem(sessions, invite.code, now)).uses_left == 0
    with pytest.raises(InviteRefused) as refused:
        await redeem(sessions, invite.code, now)
    assert refused.value.reason == "used_up"


async def test_expired_and_unknown_codes_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    created_at = datetime(2026, 1, 1, tzinfo=UTC)
    invite = await create_invite(sessions, expires_in_days=7, clock=lambda: created_at)
    assert invite.expires_at == created_at + timedelta(days=7)
    with pytest.raises(InviteRefused) as refused:
        await redeem(sessions, invite.code, created_at + timedelta(days=7, seconds=1))
    assert refused.value.reason == "expired"
    with pytest.raises(InviteRefused) as unknown:
        await redeem(sessions, "NOPE-NOPE", created_at)
    assert unknown.value.reason == "invalid"
    # A refused redemption used nothing up.
    assert (await redeem(sessions, invite.code, created_at + timedelta(days=1))).uses_left == 0


async def test_bad_invites_are_not_created(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(NotFound):
        await create_invite(sessions, business_id="biz_missing")
    with pytest.raises(DomainError, match="uses"):
        await create_invite(sessions, uses=0)
    with pytest.raises(DomainError, match="expiry"):
        await create_invite(sessions, expires_in_days=-1)


async def test_concurrent_redemptions_never_exceed_the_uses(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    invite = await create_invite(sessions, uses=2)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(redeem(sessions, invite.code, now) for _ in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, InviteCode) for r in results) == 2
    assert all(
        isinstance(r, InviteRefused) and r.reason == "used_up"
        for r in results
        if not isinstance(r, InviteCode)
    )


def test_invite_create_command(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    business = Business(name="Repair Café")

    async def add_business() -> None:
        async with sessions.begin() as db:
            db.add(business)

    asyncio.run(add_business())
    runner = CliRunner()
    result = runner.invoke(
        main, ["invite", "create", "--business", business.id, "--uses", "5", "--expires", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["business"] == business.id
    assert created["uses"] == 5
    assert len(normalise_code(created["code"])) == 10

    never = runner.invoke(main, ["invite", "create", "--expires", "0"])
    assert never.exit_code == 0
    assert "no expiry" in never.stdout

    missing = runner.invoke(main, ["invite", "create", "--business", "biz_nope"])
    assert missing.exit_code == 1
    assert "business 'biz_nope' does not exist" in missing.output
    assert runner.invoke(main, ["invite", "create", "--uses", "0"]).exit_code == 2


def test_business_create_and_widget_commands(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    created = runner.invoke(
        main, ["business", "create", "Repair Café", "--roster-only", "--commission", "12.5", "--json"]
    )
    assert created.exit_code == 0, created.output
    business = json.loads(created.stdout)
    assert business["name"] == "Repair Café"
    assert len(business["setup_code"]) == 10
    widget = runner.invoke(main, ["business", "widget", business["id"]])
    assert widget.exit_code == 0, widget.output
    key = widget.stdout.split("widget key: ")[1].split()[0]
    assert f'data-key="{key}"' in widget.stdout
    assert "/chat/assets/widget.js" in widget.stdout

    assert runner.invoke(main, ["business", "widget", "biz_nope"]).exit_code == 1
    assert runner.invoke(main, ["business", "create", "   "]).exit_code == 1
    assert runner.invoke(main, ["business", "create", "X", "--commission", "150"]).exit_code == 1
