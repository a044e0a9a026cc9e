"""`concierge match`: what the matcher makes of a request, against the experts in the database."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.languages import check_language
from concierge.matching import build_matcher, load_listings
from concierge.money import check_currency
from matcher.engine import Matcher, MatchQuery
from matcher.understanding import MAX_REQUEST_CHARS

_MAX_BATCH_LINE = 4 * MAX_REQUEST_CHARS + 1024


def _checked(check: Any) -> Any:
    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        try:
            return None if value is None else str(check(value))
        except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
            raise click.BadParameter(str(exc) or f"unknown value {value!r}") from None

    return callback


def _zone(name: str) -> str:
    ZoneInfo(name)
    return name


@main.command()
@click.argument("text", required=False)
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines of {"id", "text"}: one result line per query.',
)
@click.option("--lang", callback=_checked(check_language), help="The request's language (skip detection).")
@click.option(
    "--locale",
    default="en",
    show_default=True,
    callback=_checked(check_language),
    help="The person's language, used when detection is unsure.",
)
@click.option(
    "--timezone",
    "zone",
    default="UTC",
    show_default=True,
    callback=_checked(_zone),
    help="The person's IANA time zone.",
)
@click.option(
    "--currency",
    default=None,
    callback=_checked(check_currency),
    help="The person's currency (default: CONCIERGE_DEFAULT_CURRENCY).",
)
@click.option("--top", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--at", "at", help="Match for this ISO time instead of the one in the text (or now).")
@click.option("--include-offline", is_flag=True, help="Ignore availability.")
@click.option("--accept-english", is_flag=True, help="The customer also accepts English.")
@click.option("--any-language", is_flag=True, help="Ignore the languages experts speak.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def match(
    text: str | None,
    batch: Path | None,
    lang: str | None,
    locale: str,
    zone: str,
    currency: str | None,
    top: int,
    at: str | None,
    include_offline: bool,
    accept_english: bool,
    any_language: bool,
    as_json: bool,
) -> None:
    """Rank the experts in the database for TEXT (or for each line of --batch)."""
    if (text is None) == (batch is None):
        raise click.UsageError("give either TEXT or --batch FILE")
    moment = _parse_at(at, zone)
    settings = settings_or_exit()

    def query(request: str) -> MatchQuery:
        return MatchQuery(
            text=request,
            locale=locale,
            timezone=zone,
            currency=currency or settings.default_currency,
            language=lang,
            at=moment,
            top=top,
            include_offline=include_offline,
            accept_english=accept_english,
            any_language=any_language,
        )

    async def prepare() -> Matcher:
        async with database(settings) as sessions, sessions() as db:
            listings = await load_listings(db)
        matcher = build_matcher(settings)
        matcher.sync(listings, progress=sys.stderr.isatty())
        return matcher

    matcher = run(prepare)
    if batch is not None:
        with batch.open("rb") as handle:
            _batch(matcher, handle, query, sys.stdout)
        return
    assert text is not None
    result = matcher.match(query(text)).to_json()
    click.echo(json.dumps(result, ensure_ascii=False) if as_json else _human(result))


def _parse_at(at: str | None, zone: str) -> datetime | None:
    if at is None:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise click.BadParameter(f"{at!r} is not an ISO date and time", param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def _batch(matcher: Matcher, handle: Any, query: Any, out: TextIO) -> None:
    for number, raw in enumerate(iter(lambda: handle.readline(_MAX_BATCH_LINE), b""), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError('expected {"id": ..., "text": "..."}')
        except (ValueError, UnicodeDecodeError) as exc:
            out.write(json.dumps({"id": None, "line": number, "error": str(exc)}) + "\n")
            continue
        result = matcher.match(query(item["text"])).to_json()
        out.write(json.dumps({"id": item.get("id"), **result}, ensure_ascii=False) + "\n")


def _human(result: dict[str, Any]) -> str:
    lines = [
        f"language {result['language']} ({result['language_source']}), category "
        f"{result['category'] or 'unsure'} ({result['category_confidence']}), "
        f"when {result['when'] or 'now'}, budget {result['budget'] or 'none'}"
    ]
    if result["problem"]:
        lines = [f"cannot understand this request: {result['problem']}"]
    for expert in result["experts"]:
        reasons = ", ".join(f"{name} {value}" for name, value in expert["reasons"].items())
        lines.append(f"{expert['score']:.3f}  {expert['id']}  ({reasons})")
    if result["no_experts"] and not result["problem"]:
        lines.append(f"no experts: {result['no_experts']}")
    return "\n".join(lines)
