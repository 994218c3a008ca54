"""Server-rendered pages for what e-mails and checkouts link to: small, in English and Dutch.

A page is `templates/pages/<name>.<language>.html` extending `base.html`; autoescaping is on,
so member data can never inject markup. The language is the member's own when the page knows
who it is for, otherwise the browser's `Accept-Language`, otherwise English. No scripts and
no assets from elsewhere: the pages work with JavaScript off and leak nothing to a CDN.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

LANGUAGES = ("en", "nl")

# Seen by proxies and caches: the page depends on the member or the browser's language.
_HEADERS = {"Cache-Control": "no-store", "Vary": "Accept-Language"}


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {amount_minor // 100},{amount_minor % 100:02d}"


def _day(value: date) -> str:
    return value.strftime("%d-%m-%Y")


def _last_day(value: date) -> str:
    """Terms end before `ends_on`; members are shown the last day they may visit."""
    return _day(value - timedelta(days=1))


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("api", "templates/pages"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    environment.filters.update(day=_day, last_day=_last_day)
    environment.globals.update(money=_money)
    return environment


_ENVIRONMENT = _environment()


def browser_language(accept_language: str | None) -> str | None:
    """The first of our languages the browser asks for, by its `q` weights (RFC 9110)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and weight > 0:
            ranked.append((-weight, position, primary))
    return min(ranked)[2] if ranked else None


def language_for(request: Request, member_language: str | None = None) -> str:
    if member_language in LANGUAGES:
        return str(member_language)
    return browser_language(request.headers.get("accept-language")) or "en"


def render(
    request: Request,
    page: str,
    *,
    language: str,
    status_code: int = 200,
    refresh_seconds: int | None = None,
    **context: Any,
) -> HTMLResponse:
    settings = request.app.state.settings
    template = _ENVIRONMENT.get_template(f"{page}.{language}.html")
    body = template.render(
        language=language,
        programme=settings.programme_name,
        refresh_seconds=refresh_seconds,
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers=_HEADERS)
