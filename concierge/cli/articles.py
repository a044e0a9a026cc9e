"""`concierge articles`: a business's own self-help articles, and how useful every article was."""

from __future__ import annotations

import json
from pathlib import Path

import click

from concierge.articles import (
    ArticleStats,
    add_business_articles,
    article_stats,
    business_articles,
    remove_business_article,
)
from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from knowledge.articles import Article, ArticleInvalid, load_library, parse_article_file

_MAX_FILE_BYTES = 4 * 1024 * 1024
_RESTART = "a running service offers them after its next start"


@main.group()
def articles() -> None:
    """Self-help articles: a business's own, and their usefulness."""


@articles.command("add")
@click.option("--business", "business_id", required=True, help="The business whose communities see them.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def articles_add(business_id: str, path: Path) -> None:
    """Add or replace (by id) a business's articles from a JSON file: one article or a list."""
    settings = settings_or_exit()
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise click.ClickException(f"{path} is larger than {_MAX_FILE_BYTES // 1024 // 1024} MiB")
    try:
        parsed = parse_article_file(path.read_bytes(), all_languages=False, business_id=business_id)
    except ArticleInvalid as exc:
        for problem in exc.problems:
            click.echo(f"{path}: {problem}", err=True)
        raise click.ClickException("nothing was added") from exc

    async def run_command() -> tuple[int, int]:
        async with database(settings) as sessions:
            return await add_business_articles(sessions, business_id, parsed)

    added, replaced = run(run_command)
    click.echo(f"{added} article(s) added, {replaced} replaced for business {business_id} ({_RESTART})")


@articles.command("list")
@click.option("--business", "business_id", help="Only this business's articles.")
@click.option("--shared", is_flag=True, help="The shared library instead of businesses' articles.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def articles_list(business_id: str | None, shared: bool, as_json: bool) -> None:
    """List articles: businesses' own (default) or the shared library."""
    found: list[Article]
    if shared:
        found = list(load_library())
    else:
        settings = settings_or_exit()

        async def run_command() -> list[Article]:
            async with database(settings) as sessions:
                return await business_articles(sessions, business_id)

        found = run(run_command)
    for article in found:
        if as_json:
            click.echo(json.dumps({"business": article.business_id, **article.to_json()}, ensure_ascii=False))
        else:
            _, text = article.text_for("en")
            owner = article.business_id or "shared"
            languages = ",".join(article.texts)
            click.echo(f"{owner}  {article.id}  [{article.category}] ({languages})  {text.title}")


@articles.command("remove")
@click.option("--business", "business_id", required=True)
@click.argument("article_id")
def articles_remove(business_id: str, article_id: str) -> None:
    """Remove one of a business's articles (its usefulness history is kept)."""
    settings = settings_or_exit()

    async def run_command() -> None:
        async with database(settings) as sessions:
            await remove_business_article(sessions, business_id, article_id)

    run(run_command)
    click.echo(f"removed {article_id} from business {business_id} ({_RESTART})")


@articles.command("stats")
@click.option("--business", "business_id", help="Only this business's articles.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def articles_stats(business_id: str | None, as_json: bool) -> None:
    """How often each article was offered, solved the problem, or the person still wanted an expert."""
    settings = settings_or_exit()

    async def run_command() -> list[ArticleStats]:
        async with database(settings) as sessions, sessions() as db:
            return await article_stats(db, business_id=business_id)

    rows = run(run_command)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_json()))
        return
    if not rows:
        click.echo("no article has been offered yet")
        return
    click.echo(f"{'article':<40} {'shown':>6} {'solved':>7} {'expert':>7} {'solved %':>9}")
    for row in rows:
        rate = "-" if row.solved_rate is None else f"{row.solved_rate * 100:.0f}%"
        name = row.article_id if row.business_id is None else f"{row.business_id}/{row.article_id}"
        click.echo(f"{name:<40} {row.shown:>6} {row.solved:>7} {row.still_want:>7} {rate:>9}")
