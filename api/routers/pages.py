"""Member pages that e-mails link to: the sign-in link's landing page and "my memberships".

The sign-in link in the e-mail is opened with GET, and mail scanners fetch every link to check
it; so GET only shows a button, and only the POST it sends spends the single-use token. The
session it opens lives in an HttpOnly cookie scoped to these pages (SameSite=Lax, so another
site cannot make the browser post with it).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import pages
from api.deps import SessionDep, SettingsDep
from membership import cards, members, memberships
from membership.clock import local_date, utcnow
from membership.settings import Settings

router = APIRouter(prefix="/members", include_in_schema=False)

COOKIE = "member_session"
_COOKIE_PATH = "/members"


def _cross_site(request: Request, settings: Settings) -> bool:
    """A form posted from another site (its browser says so in `Origin`): refused, so nobody
    can sign a visitor in to someone else's account or sign them out."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = urlsplit(settings.base_url)
    return origin.rstrip("/") != f"{own.scheme}://{own.netloc}"


def _not_signed_in(request: Request, language: str | None, status_code: int) -> HTMLResponse:
    return pages.render(
        request,
        "sign_in",
        language=pages.language_for(request, language),
        status_code=status_code,
        email=None,
        token="",
    )


async def _form_token(request: Request) -> str:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    return (form.get("token") or [""])[0]


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, session: SessionDep, token: str = "") -> HTMLResponse:
    """Looks at the link without using it: a prefetch changes nothing."""
    email = await members.pending_sign_in(session, token=token, now=utcnow()) if token else None
    language = await members.link_language(session, token=token) if token else None
    return pages.render(
        request,
        "sign_in",
        language=pages.language_for(request, language),
        status_code=status.HTTP_200_OK if email else status.HTTP_400_BAD_REQUEST,
        email=email,
        token=token,
    )


@router.post("/sign-in", response_model=None)
async def sign_in(
    request: Request, session: SessionDep, settings: SettingsDep
) -> RedirectResponse | HTMLResponse:
    """Spends the link (once) for a session, then shows the member's own page."""
    if _cross_site(request, settings):
        return _not_signed_in(request, None, status.HTTP_403_FORBIDDEN)
    token = await _form_token(request)
    try:
        opened = await members.redeem_sign_in(
            session,
            token=token,
            ttl=timedelta(hours=settings.token_ttl_hours),
            now=utcnow(),
        )
    except members.InvalidSignInLink:
        language = await members.link_language(session, token=token) if token else None
        return _not_signed_in(request, language, status.HTTP_400_BAD_REQUEST)
    response = RedirectResponse("/members/me", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        opened.token,
        max_age=int(timedelta(hours=settings.token_ttl_hours).total_seconds()),
        path=_COOKIE_PATH,
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/me", response_class=HTMLResponse, response_model=None)
async def my_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Memberships, cards and receipts of the signed-in address; without a session, sign in."""
    token = request.cookies.get(COOKIE, "")
    try:
        email = await members.authenticate(session, token=token, now=utcnow())
    except members.InvalidMemberToken:
        return _not_signed_in(request, None, status.HTTP_401_UNAUTHORIZED)
    held = await memberships.memberships_of(session, email=email)
    today = local_date(utcnow(), settings.programme_timezone)
    items = []
    for membership in held:
        own_cards = [
            {
                "number": card.number,
                "holder": f"{card.member.first_name} {card.member.last_name}",
                "status": card.status.value,
            }
            for card in await cards.list_cards(session, membership_id=membership.id)
            if card.member.email == email
        ]
        items.append(
            {
                "product": membership.product.name,
                "status": membership.status.value,
                "paid_until": memberships.paid_until(membership),
                "paid_again_on": memberships.paid_again_on(membership, today=today),
                "auto_renew": membership.auto_renew,
                "cards": own_cards,
            }
        )
    return pages.render(
        request,
        "member",
        language=pages.language_for(request, await members.language_of(session, email=email)),
        email=email,
        memberships=items,
        receipts=await memberships.receipts_of(session, email=email),
    )


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    if _cross_site(request, settings):
        return _not_signed_in(request, None, status.HTTP_403_FORBIDDEN)
    token = request.cookies.get(COOKIE)
    language = None
    if token:
        with suppress(members.InvalidMemberToken):
            email = await members.authenticate(session, token=token, now=utcnow())
            language = await members.language_of(session, email=email)
        await members.sign_out(session, token=token, now=utcnow())
    response = pages.render(request, "signed_out", language=pages.language_for(request, language))
    response.delete_cookie(COOKIE, path=_COOKIE_PATH)
    return response
