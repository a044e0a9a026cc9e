"""Importing expert listings from JSON Lines: one listing per line, upserted by id.

A bad line is rejected with its number and the reason; the good lines are imported anyway.
Parsing is pure (`parse_expert_line`) so the format is tested without a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.hours import WeeklyHours
from concierge.languages import check_language
from concierge.model import Expert, Person
from concierge.money import check_currency
from concierge.pricing import Pricing, PricingMode
from knowledge.taxonomy import load_taxonomy

MAX_LINE_BYTES = 64 * 1024
# Minor units: generous enough for COP, IDR or VND session prices, far below BIGINT.
MAX_AMOUNT = 10**12
_BATCH = 500
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _check_category(value: str) -> str:
    if value not in load_taxonomy().ids:
        raise ValueError(f"unknown category {value!r}")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("contains duplicates")
    return values


Text = Annotated[StrictStr, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class PricingLine(_Strict):
    mode: Literal["free", "per_session", "per_minute"]
    amount: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
    currency: Annotated[StrictStr, AfterValidator(check_currency)]

    @model_validator(mode="after")
    def _consistent(self) -> PricingLine:
        Pricing(PricingMode(self.mode), self.amount, self.currency)
        return self


class RatingLine(_Strict):
    count: Annotated[StrictInt, Field(ge=0, le=10_000_000)]
    mean: Annotated[StrictFloat | StrictInt, Field(ge=0, le=5)]

    @model_validator(mode="after")
    def _consistent(self) -> RatingLine:
        if self.count == 0 and self.mean != 0:
            raise ValueError("mean must be 0 when count is 0")
        if self.count > 0 and self.mean < 1:
            raise ValueError("mean of 1-5 star ratings must be between 1 and 5")
        return self


def _check_hours(value: dict[str, Any]) -> dict[str, Any]:
    return WeeklyHours.parse(value).to_json()


# Listing fields, shared by the import format and by listing edits from a chat.
Headline = Annotated[Text, Field(max_length=200)]
Bio = Annotated[StrictStr, Field(max_length=4000)]
Skills = Annotated[
    list[Annotated[Text, Field(max_length=100)]], Field(max_length=30), AfterValidator(_unique)
]
Categories = Annotated[
    list[Annotated[StrictStr, AfterValidator(_check_category)]],
    Field(min_length=1, max_length=3),
    AfterValidator(_unique),
]
Languages = Annotated[
    list[Annotated[StrictStr, AfterValidator(check_language)]],
    Field(min_length=1, max_length=10),
    AfterValidator(_unique),
]
TimeZoneName = Annotated[StrictStr, AfterValidator(_check_timezone)]
Hours = Annotated[dict[str, Any], AfterValidator(_check_hours)]


class ExpertLine(_Strict):
    """One line of the import format; the README documents it field by field."""

    id: Annotated[StrictStr, AfterValidator(_check_id)]
    name: Annotated[Text, Field(max_length=200)]
    headline: Headline
    bio: Bio
    skills: Skills
    categories: Categories
    languages: Languages
    pricing: PricingLine
    timezone: TimeZoneName
    hours: Hours
    rating: RatingLine
    online: StrictBool

    @property
    def rating_total(self) -> int:
        # The format carries a mean; the model keeps the integer sum of star ratings.
        count = self.rating.count
        return min(5 * count, max(count, round(self.rating.mean * count)))

    @property
    def pricing_value(self) -> Pricing:
        return Pricing(PricingMode(self.pricing.mode), self.pricing.amount, self.pricing.currency)


def parse_expert_line(text: str) -> ExpertLine:
    """Parse one line; raise ValueError with a reason a person can act on."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    try:
        return ExpertLine.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "line"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}"


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def read_expert_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, ExpertLine | Rejected]]:
    """Number and parse raw lines; blank lines are skipped, a repeated id is rejected."""
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield number, Rejected(number, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, Rejected(number, "not UTF-8 text")
            continue
        if not text.strip():
            continue
        try:
            parsed = parse_expert_line(text)
        except ValueError as exc:
            yield number, Rejected(number, str(exc))
            continue
        if parsed.id in first_seen:
            yield (
                number,
                Rejected(number, f"id {parsed.id!r} already on line {first_seen[parsed.id]}"),
            )
            continue
        first_seen[parsed.id] = number
        yield number, parsed


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
        }


async def import_experts(sessions: async_sessionmaker[AsyncSession], path: Path) -> ImportReport:
    report = ImportReport()
    batch: list[ExpertLine] = []
    with path.open("rb") as handle:
        # Reading with a size cap keeps one huge "line" from being loaded into memory whole.
        lines = _bounded_lines(handle)
        for _, item in read_expert_lines(lines):
            if isinstance(item, Rejected):
                report.rejected.append(item)
                continue
            batch.append(item)
            if len(batch) >= _BATCH:
                await _upsert(sessions, batch, report)
                batch = []
    if batch:
        await _upsert(sessions, batch, report)
    return report


def _bounded_lines(handle: Any) -> Iterator[bytes]:
    """Lines without their line ending; an oversized line is cut short (and then rejected)."""
    limit = MAX_LINE_BYTES + 2  # room for the content plus "\r\n"
    first = True
    while line := handle.readline(limit):
        if first:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark from an editor
            first = False
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := handle.readline(limit)) and not rest.endswith(b"\n"):
                pass  # skip the remainder of an oversized line
        yield line.rstrip(b"\r\n")


async def _upsert(
    sessions: async_sessionmaker[AsyncSession], lines: list[ExpertLine], report: ImportReport
) -> None:
    async with sessions.begin() as db:
        existing = {
            expert.id: expert
            for expert in await db.scalars(select(Expert).where(Expert.id.in_([line.id for line in lines])))
        }
        persons = {
            person.id: person
            for person in await db.scalars(
                select(Person).where(Person.id.in_([e.person_id for e in existing.values()]))
            )
        }
        for line in lines:
            expert = existing.get(line.id)
            if expert is None:
                person = Person(display_name=line.name, locale=line.languages[0], time_zone=line.timezone)
                db.add(person)
                db.add(Expert(id=line.id, person_id=person.id, **_listing_fields(line)))
                report.created += 1
                continue
            person = persons[expert.person_id]
            changed = _apply(person, {"display_name": line.name, "time_zone": line.timezone})
            changed |= _apply(expert, _listing_fields(line))
            if changed:
                report.updated += 1
            else:
                report.unchanged += 1


def _listing_fields(line: ExpertLine) -> dict[str, Any]:
    return {
        "headline": line.headline,
        "bio": line.bio,
        "skills": list(line.skills),
        "categories": list(line.categories),
        "languages": list(line.languages),
        "pricing": line.pricing_value,
        "time_zone": line.timezone,
        "hours_json": line.hours,
        "online": line.online,
        "published": True,
        "rating_count": line.rating.count,
        "rating_total": line.rating_total,
    }


def _apply(target: object, values: dict[str, Any]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(target, name) != value:
            setattr(target, name, value)
            changed = True
    return changed
