"""HTTP routes: a landing page, liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import html

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from concierge import appkeys as keys
from concierge.catalogue_queries import experts_per_category
from concierge.database import ping
from concierge.errors import StorageError
from knowledge.i18n import load_catalogues, negotiate
from knowledge.taxonomy import load_taxonomy

_CHECK_TIMEOUT_S = 2.0


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app

    async def database() -> None:
        await ping(app[keys.ENGINE])

    async def redis() -> None:
        try:
            await app[keys.REDIS].ping()
        except Exception as exc:  # any client failure means "not ready"
            raise StorageError(f"redis unreachable: {type(exc).__name__}") from exc

    checks = {"database": database, "redis": redis}
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), _CHECK_TIMEOUT_S) for check in checks.values()),
        return_exceptions=True,
    )
    report: dict[str, str] = {}
    for name, result in zip(checks, results, strict=True):
        ok = not isinstance(result, BaseException)
        app[keys.METRICS].dependency_up.labels(name).set(1 if ok else 0)
        if ok:
            report[name] = "ok"
        elif isinstance(result, TimeoutError):
            report[name] = f"no answer within {_CHECK_TIMEOUT_S:.0f} s"
        else:
            report[name] = str(result)
    ready = all(value == "ok" for value in report.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": report},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    taxonomy = load_taxonomy()
    messages = load_catalogues()
    language = negotiate(_accept_language(request.headers.get("Accept-Language", "")))
    async with request.app[keys.SESSIONS]() as db:
        total, counts = await experts_per_category(db)
    rows = "".join(
        f"<li><strong>{html.escape(category.label(language))}</strong> "
        f"<span>{counts.get(category.id, 0)}</span><br><small>"
        f"{html.escape(category.description(language))}</small></li>"
        for category in taxonomy.categories
    )
    listings = messages.text("landing.listings", language, count=total)
    page = f"""<!doctype html>
<html lang="{language}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Concierge</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}
li{{margin:.5rem 0}} span{{float:right;color:#555}} small{{color:#666}}</style></head>
<body><h1>Concierge</h1>
<p>{html.escape(messages.text("landing.tagline", language))}</p>
<p>{html.escape(listings)} · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></p>
<h2>{html.escape(messages.text("landing.categories", language))}</h2><ul>{rows}</ul></body></html>"""
    return web.Response(text=page, content_type="text/html")


def _accept_language(header: str) -> list[str]:
    """Accept-Language tags, most wanted first; malformed weights are skipped."""
    weighted = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted) if tag]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
