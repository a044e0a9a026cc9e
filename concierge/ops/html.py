"""The console's HTML: one layout, tables and small pieces; every value escaped here, so pages
build markup only from `Markup` and plain strings that get escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web


class Markup(str):
    """Already-safe HTML: not escaped again."""


Cell = str | int | Markup | None


def esc(value: Cell) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value)))


def link(href: str, text: Cell) -> Markup:
    return Markup(f'<a href="{html.escape(href)}">{esc(text)}</a>')


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], caption: str = "") -> Markup:
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    if not body:
        body = f'<tr><td colspan="{len(headers)}">Nothing here.</td></tr>'
    return Markup(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def definition_list(pairs: Iterable[tuple[str, Cell]]) -> Markup:
    return Markup("<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs) + "</dl>")


def hidden_csrf(token: str) -> Markup:
    return Markup(f'<input type="hidden" name="csrf" value="{html.escape(token)}">')


def query_url(path: str, **params: str | int) -> str:
    kept = {k: v for k, v in params.items() if v not in ("", None)}
    return f"{path}?{urlencode(kept)}" if kept else path


NAVIGATION = (
    ("/ops/", "Live"),
    ("/ops/charts", "Charts"),
)


def page(
    title: str,
    body: Markup,
    *,
    operator: str | None = None,
    csrf: str | None = None,
    lists: Sequence[tuple[str, str]] = (),
    status: int = 200,
) -> web.Response:
    nav = ""
    if operator is not None and csrf is not None:
        entries = [*NAVIGATION, *((f"/ops/lists/{name}", label) for name, label in lists)]
        items = "".join(f"<li>{link(href, label)}</li>" for href, label in entries)
        nav = (
            f'<nav aria-label="Console"><ul>{items}</ul><form method="post" action="/ops/logout">'
            f'{hidden_csrf(csrf)}<span>{esc(operator)}</span> <button type="submit">Log out</button>'
            "</form></nav>"
        )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · Concierge operators</title><link rel="stylesheet" href="/ops/static/ops.css">'
        f"</head><body>{nav}<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
