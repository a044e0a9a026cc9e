"""The business report page behind its signed link: `/business/<token>/report?month=YYYY-MM`."""

from __future__ import annotations

import html

from aiohttp import web

from concierge.appkeys import SESSIONS, SETTINGS
from concierge.business_reports import ReportLinks, monthly_report, parse_month, render_report
from concierge.errors import DomainError, NotFound
from knowledge.i18n import load_catalogues, negotiate

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _refused(language: str, text: str, status: int) -> web.Response:
    title = html.escape(load_catalogues().text("receipt.refused", language))
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS)


async def report_page(request: web.Request) -> web.Response:
    t = load_catalogues()
    settings = request.app[SETTINGS]
    claims = ReportLinks(settings.signing_key, settings.base_url).verify(request.match_info["token"])
    if claims is None:
        header = request.headers.get("Accept-Language", "")
        language = negotiate(part.split(";")[0] for part in header.split(","))
        return _refused(language, t.text("business.report.refused", language), 403)
    business_id, language = claims
    try:
        year, month = parse_month(request.query.get("month", "")[:16])
    except DomainError as exc:
        return _refused(language, str(exc), 400)
    try:
        async with request.app[SESSIONS]() as db:
            report = await monthly_report(db, business_id, year, month)
    except NotFound:
        return _refused(language, t.text("business.report.refused", language), 404)
    return web.Response(
        text=render_report(report, language, t), content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def install(app: web.Application) -> None:
    app.router.add_get("/business/{token}/report", report_page)
