"""Importing experts: the documented JSON Lines format, bad lines reported, the rest imported."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.catalogue import MAX_LINE_BYTES, ExpertLine, Rejected, parse_expert_line, read_expert_lines
from concierge.cli import main
from concierge.model import Expert, Person
from concierge.pricing import PricingMode
from knowledge.demo import demo_catalogue_path
from knowledge.taxonomy import load_taxonomy
from tests.conftest import free_port


def expert(**changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": "thomas-net",
        "name": "Thomas Lefèvre",
        "headline": "Je dépanne votre Wi-Fi et votre box",
        "bio": "Technicien réseau depuis 12 ans.",
        "skills": ["Wi-Fi", "routeurs"],
        "categories": ["computers"],
        "languages": ["fr", "en"],
        "pricing": {"mode": "per_minute", "amount": 120, "currency": "EUR"},
        "timezone": "Europe/Paris",
        "hours": {"mon": ["09:00-12:00", "14:00-18:00"], "sat": ["10:00-13:00"]},
        "rating": {"count": 3, "mean": 4.67},
        "online": True,
    }
    line.update(changes)
    return line


def as_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_a_valid_line_parses() -> None:
    parsed = parse_expert_line(as_line(expert()))
    assert parsed.pricing_value.mode is PricingMode.PER_MINUTE
    assert parsed.rating_total == 14  # 3 ratings averaging 4.67


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (as_line({k: v for k, v in expert().items() if k != "headline"}), "headline: Field required"),
        (as_line(expert(colour="blue")), "colour: unknown field"),
        (as_line(expert(id="has space")), "id: must be 1-64 letters"),
        (as_line(expert(categories=["plumbing"])), "categories.0: unknown category 'plumbing'"),
        (as_line(expert(categories=[])), "categories: List should have at least 1 item"),
        (as_line(expert(languages=["french"])), "languages.0: language must be a two-letter"),
        (as_line(expert(languages=["fr", "fr"])), "languages: contains duplicates"),
        (as_line(expert(timezone="Mars/Olympus")), "timezone: unknown IANA time zone"),
        (as_line(expert(hours={"mon": ["18:00-09:00"]})), "hours: '18:00-09:00' ends before it starts"),
        (
            as_line(expert(pricing={"mode": "per_minute", "amount": 1.5, "currency": "EUR"})),
            "pricing.amount: Input should be a valid integer",
        ),
        (
            as_line(expert(pricing={"mode": "per_minute", "amount": "150", "currency": "EUR"})),
            "pricing.amount",
        ),
        (
            as_line(expert(pricing={"mode": "free", "amount": 100, "currency": "EUR"})),
            "a free listing has amount 0",
        ),
        (as_line(expert(pricing={"mode": "hourly", "amount": 100, "currency": "EUR"})), "pricing.mode"),
        (
            as_line(expert(pricing={"mode": "per_session", "amount": 100, "currency": "eur"})),
            "pricing.currency",
        ),
        (as_line(expert(rating={"count": 0, "mean": 4.0})), "mean must be 0 when count is 0"),
        (as_line(expert(rating={"count": 5, "mean": 7})), "rating.mean"),
        (as_line(expert(online="yes")), "online: Input should be a valid boolean"),
        (as_line(expert(name="")), "name: String should have at least 1 character"),
    ],
)
def test_a_bad_line_gets_a_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_expert_line(line)


def test_reading_numbers_lines_skips_blanks_and_refuses_repeats_binary_and_giants() -> None:
    lines = [
        as_line(expert(id="a")).encode(),
        b"",
        b"   ",
        as_line(expert(id="a")).encode(),
        b"\xff\xfe\x00binary",
        b"x" * (MAX_LINE_BYTES + 1),
        as_line(expert(id="b")).encode(),
    ]
    results = list(read_expert_lines(lines))
    assert [(n, type(r).__name__) for n, r in results] == [
        (1, "ExpertLine"),
        (4, "Rejected"),
        (5, "Rejected"),
        (6, "Rejected"),
        (7, "ExpertLine"),
    ]
    reasons = [str(r) for _, r in results if isinstance(r, Rejected)]
    assert reasons == [
        "line 4: id 'a' already on line 1",
        "line 5: not UTF-8 text",
        f"line 6: line is longer than {MAX_LINE_BYTES} bytes",
    ]


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    return CliRunner()


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


def test_import_reports_bad_lines_and_imports_the_rest(
    cli_env: CliRunner, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    source = write_lines(
        tmp_path / "experts.jsonl",
        [
            as_line(expert(id="good-1")),
            "{broken",
            as_line(
                expert(
                    id="good-2", languages=["de"], pricing={"mode": "free", "amount": 0, "currency": "EUR"}
                )
            ),
            as_line(expert(id="bad-3", categories=["astrology"])),
            b"\x00\x9f" * 10,
            as_line(expert(id="good-1", name="Duplicate")),
            "x" * (MAX_LINE_BYTES + 10),
            as_line(expert(id="good-3", pricing={"mode": "per_session", "amount": 3000, "currency": "JPY"})),
        ],
    )
    result = cli_env.invoke(main, ["experts", "import", str(source)])
    assert result.exit_code == 1, result.output
    assert "line 2: not valid JSON" in result.stderr
    assert "line 4: categories.0: unknown category 'astrology'" in result.stderr
    assert "line 5: not UTF-8 text" in result.stderr
    assert "line 6: id 'good-1' already on line 1" in result.stderr
    assert "line 7: line is longer than" in result.stderr
    assert "imported 3 experts: 3 new, 0 updated, 0 unchanged; 5 lines rejected" in result.stdout

    listed = cli_env.invoke(main, ["experts", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["good-1", "good-2", "good-3"]
    assert rows[2]["pricing"] == {"mode": "per_session", "amount": 3000, "currency": "JPY"}
    assert rows[0]["name"] == "Thomas Lefèvre"

    text = cli_env.invoke(main, ["experts", "list", "--language", "de"])
    assert text.stdout.splitlines()[0].startswith("good-2")
    assert "free" in text.stdout


def test_a_byte_order_mark_and_windows_line_endings_are_accepted(cli_env: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "from-windows.jsonl"
    source.write_bytes(
        b"\xef\xbb\xbf"
        + as_line(expert(id="w1")).encode()
        + b"\r\n"
        + as_line(expert(id="w2")).encode()
        + b"\r\n"
    )
    result = cli_env.invoke(main, ["experts", "import", "--json", str(source)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 2


def test_listing_filters_are_checked(cli_env: CliRunner) -> None:
    unknown = cli_env.invoke(main, ["experts", "list", "--category", "astrology"])
    assert unknown.exit_code == 2
    assert "unknown category" in unknown.output
    bad_language = cli_env.invoke(main, ["experts", "list", "--language", "french"])
    assert bad_language.exit_code == 2
    assert "two-letter" in bad_language.output


def test_an_unreachable_database_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", f"postgresql://app:pa55@127.0.0.1:{free_port()}/x")
    result = CliRunner().invoke(main, ["experts", "list"])
    assert result.exit_code == 1
    assert "cannot reach the database at postgresql+asyncpg://app:***@127.0.0.1" in result.output
    assert "pa55" not in result.output


def test_import_is_an_idempotent_upsert_by_id(
    cli_env: CliRunner, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    source = write_lines(tmp_path / "a.jsonl", [as_line(expert(id="e1")), as_line(expert(id="e2"))])
    first = cli_env.invoke(main, ["experts", "import", "--json", str(source)])
    assert json.loads(first.stdout) == {"created": 2, "updated": 0, "unchanged": 0, "rejected": []}
    again = cli_env.invoke(main, ["experts", "import", "--json", str(source)])
    assert json.loads(again.stdout) == {"created": 0, "updated": 0, "unchanged": 2, "rejected": []}
    assert again.exit_code == 0

    changed = write_lines(
        tmp_path / "b.jsonl",
        [as_line(expert(id="e1", name="Thomas L.", online=False, rating={"count": 4, "mean": 5.0}))],
    )
    third = cli_env.invoke(main, ["experts", "import", "--json", str(changed)])
    assert json.loads(third.stdout)["updated"] == 1

    async def check() -> None:
        async with sessions() as db:
            assert await db.scalar(select(func.count()).select_from(Expert)) == 2
            assert await db.scalar(select(func.count()).select_from(Person)) == 2
            e1 = await db.get(Expert, "e1")
            assert e1 is not None
            assert (e1.online, e1.rating_count, e1.rating_total) == (False, 4, 20)
            person = await db.get(Person, e1.person_id)
            assert person is not None
            assert person.display_name == "Thomas L."

    asyncio.run(check())


def test_import_before_migrating_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    source = write_lines(tmp_path / "a.jsonl", [as_line(expert())])
    result = CliRunner().invoke(main, ["experts", "import", str(source)])
    assert result.exit_code == 1
    assert "run `concierge db upgrade` first" in result.output


def test_the_demo_catalogue_is_valid_and_broad() -> None:
    results = list(read_expert_lines(demo_catalogue_path().read_bytes().splitlines()))
    rejected = [r for _, r in results if isinstance(r, Rejected)]
    assert rejected == []
    experts = [r for _, r in results if isinstance(r, ExpertLine)]
    assert len(experts) >= 150
    first_categories = Counter(e.categories[0] for e in experts)
    assert set(first_categories) == load_taxonomy().ids
    assert min(first_categories.values()) >= 10
    languages = Counter(language for e in experts for language in e.languages)
    assert len(languages) >= 8
    assert all(languages[code] >= 10 for code in ("en", "fr", "de", "es", "zh", "ja"))
    assert {e.pricing.mode for e in experts} == {"free", "per_session", "per_minute"}


def test_demo_load_is_idempotent(cli_env: CliRunner) -> None:
    first = cli_env.invoke(main, ["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "new" in first.stdout
    second = cli_env.invoke(main, ["demo", "load"])
    assert "0 new, 0 updated" in second.stdout


def test_the_taxonomy_speaks_every_ui_language() -> None:
    taxonomy = load_taxonomy()
    assert [c.id for c in taxonomy.categories] == [
        "computers", "education", "languages", "cooking", "health", "fitness",
        "arts_music", "hobbies", "home_garden", "repair", "fashion_beauty", "business",
    ]  # fmt: skip
    for category in taxonomy.categories:
        for language in ("en", "fr", "de", "es", "zh", "ja"):
            assert category.label(language)
            assert len(category.examples[language]) >= 3
    assert taxonomy.get("languages").label("ja") != taxonomy.get("languages").label("en")
