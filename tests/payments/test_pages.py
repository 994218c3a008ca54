"""The member pages e-mails link to: the sign-in landing page, my memberships, checkout return.

Checked over HTTP with httpx: the HTML says the right thing in the member's language (or the
browser's), a prefetch of the sign-in link spends nothing, and the link signs in once.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.models import MemberSignInLink, OutboxEmail
from tests.factories import create_product

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _holder(language: str, *, email: str = "noor@example.org", first: str = "Noor") -> Any:
    return {
        "first_name": first,
        "last_name": "de Boer",
        "email": email,
        "birth_date": "1992-11-30",
        "postal_code": "6511 KL",
        "language": language,
    }


async def _buy(
    client: httpx.AsyncClient, holder: dict[str, Any], *, auto_renew: bool = False
) -> dict[str, Any]:
    bought = await client.post(
        "/v1/purchases",
        json={"product_code": "ANNUAL", "holders": [holder], "auto_renew": auto_renew},
    )
    assert bought.status_code == 201, bought.text
    answer: dict[str, Any] = bought.json()
    return answer


@pytest.fixture
async def annual(session: AsyncSession) -> None:
    await create_product(session, code="ANNUAL", price_minor=7500)
    await session.commit()


async def _link_token(session: AsyncSession, client: httpx.AsyncClient, email: str) -> str:
    assert (await client.post("/v1/members/sign-in", json={"email": email})).status_code == 202
    context = await session.scalar(
        select(OutboxEmail.context)
        .where(OutboxEmail.template == "magic_link")
        .order_by(OutboxEmail.id.desc())
    )
    await session.commit()
    assert context is not None
    link = urlsplit(context["link"])
    assert link.path == "/members/sign-in"
    return parse_qs(link.query)["token"][0]


async def _unused_links(session: AsyncSession) -> int:
    found = await session.scalars(
        select(MemberSignInLink.id).where(MemberSignInLink.used_at.is_(None))
    )
    count = len(list(found))
    await session.commit()
    return count


def _text(page: httpx.Response) -> str:
    """The visible words, without markup, for assertions that do not depend on layout."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))


@pytest.mark.usefixtures("annual")
class TestSignInPage:
    async def test_prefetching_the_link_spends_nothing_and_the_button_signs_in_once(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        answer = await _buy(client, _holder("nl", first="<b>Noor</b>"))
        await client.post(answer["checkout_url"] + "/pay")
        token = await _link_token(session, client, "noor@example.org")

        for _ in range(3):  # a mail scanner, a link preview, then the member
            page = await client.get("/members/sign-in", params={"token": token})
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "Inloggen" in page.text
            assert "noor@example.org" in page.text
            assert '<form method="post" action="/members/sign-in">' in page.text
            assert f'name="token" value="{token}"' in page.text
            assert "<script" not in page.text
        assert await _unused_links(session) == 1

        signed_in = await client.post(
            "/members/sign-in",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/members/me"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/members" in cookie
        assert await _unused_links(session) == 0

        mine = await client.get("/members/me")
        assert mine.status_code == 200
        text = _text(mine)
        assert "Mijn lidmaatschappen" in text
        assert "Annual card" in text
        assert "actief" in text
        assert "&lt;b&gt;Noor&lt;/b&gt;" in mine.text  # a holder's name is text, never markup
        assert "EUR 75,00" in text

        again = await client.post(
            "/members/sign-in",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 400
        assert "werkt niet" in again.text
        used = await client.get("/members/sign-in", params={"token": token})
        assert used.status_code == 400

        out = await client.post("/members/sign-out")
        assert out.status_code == 200
        assert "Je bent uitgelogd" in out.text
        client.cookies.clear()
        assert (await client.get("/members/me")).status_code == 401

    async def test_a_form_posted_from_another_site_is_refused(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await _buy(client, _holder("en"))
        token = await _link_token(session, client, "noor@example.org")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        foreign = await client.post(
            "/members/sign-in",
            content=f"token={token}",
            headers={**form, "Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert "set-cookie" not in foreign.headers
        assert await _unused_links(session) == 1
        own = await client.post(
            "/members/sign-in",
            content=f"token={token}",
            headers={**form, "Origin": "http://testserver"},
        )
        assert own.status_code == 303
        assert await _unused_links(session) == 0

    async def test_a_bad_link_speaks_the_browsers_language(self, client: httpx.AsyncClient) -> None:
        dutch = await client.get(
            "/members/sign-in",
            params={"token": "not-a-token"},
            headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.8"},
        )
        assert dutch.status_code == 400
        assert '<html lang="nl">' in dutch.text
        assert "Deze inloglink werkt niet" in dutch.text
        english = await client.get(
            "/members/sign-in", headers={"Accept-Language": "de-DE, en;q=0.5, nl;q=0.2"}
        )
        assert english.status_code == 400
        assert '<html lang="en">' in english.text
        assert "This sign-in link does not work" in english.text

    async def test_the_members_language_wins_over_the_browsers(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await _buy(client, _holder("en", email="ella@example.org"))
        token = await _link_token(session, client, "ella@example.org")
        page = await client.get(
            "/members/sign-in", params={"token": token}, headers={"Accept-Language": "nl"}
        )
        assert page.status_code == 200
        assert "You are about to sign in as" in page.text

    async def test_racing_posts_of_one_link_open_one_session(
        self, session: AsyncSession, client: httpx.AsyncClient, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: this race needs row locks")
        await _buy(client, _holder("en"))
        token = await _link_token(session, client, "noor@example.org")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        answers = await asyncio.gather(
            *(
                client.post("/members/sign-in", content=f"token={token}", headers=form)
                for _ in range(5)
            )
        )
        assert sorted(answer.status_code for answer in answers) == [303, 400, 400, 400, 400]


@pytest.mark.usefixtures("annual")
class TestCheckoutReturnPage:
    async def test_pending_then_paid_in_the_members_language(
        self, client: httpx.AsyncClient
    ) -> None:
        answer = await _buy(client, _holder("en"))
        back = f"/v1/purchases/{answer['payment']['id']}/return"
        pending = await client.get(back, headers=HTML)
        assert pending.status_code == 200
        assert "We are waiting for your payment" in pending.text
        assert '<meta http-equiv="refresh" content="5">' in pending.text

        paid = await client.post(answer["checkout_url"] + "/pay")
        page = await client.get(paid.headers["location"], headers=HTML)
        assert page.status_code == 200
        text = _text(page)
        assert "your payment has been received" in text
        assert answer["payment"]["reference"] in text
        assert "EUR 75,00" in text
        assert "Valid up to and including" in text
        assert "http-equiv" not in page.text
        # An API client still gets JSON from the same address.
        assert (await client.get(back)).json()["membership_status"] == "active"

    async def test_leaving_the_checkout_unpaid_shows_not_paid_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        answer = await _buy(client, _holder("en"))
        back = f"/v1/purchases/{answer['payment']['id']}/return"
        page = await client.get(back, params={"cancelled": "true"}, headers=HTML)
        assert page.status_code == 200
        assert "The payment did not go through" in page.text
        assert "http-equiv" not in page.text
        assert (await client.get(back)).json()["payment"]["status"] == "pending"
        # Going back to the checkout and paying still works.
        await client.post(answer["checkout_url"] + "/pay")
        paid = await client.get(back, params={"cancelled": "true"}, headers=HTML)
        assert "your payment has been received" in paid.text

    async def test_declined_in_dutch(self, client: httpx.AsyncClient) -> None:
        answer = await _buy(client, _holder("nl"))
        declined = await client.post(answer["checkout_url"] + "/decline")
        page = await client.get(declined.headers["location"], headers=HTML)
        assert page.status_code == 200
        assert '<html lang="nl">' in page.text
        assert "De betaling is niet gelukt" in page.text
        assert "Er is geen geld afgeschreven" in page.text

    async def test_the_local_checkout_offers_a_card_declined_at_renewal(
        self, client: httpx.AsyncClient
    ) -> None:
        one_off = await client.get((await _buy(client, _holder("en")))["checkout_url"])
        assert "Decline" in one_off.text
        assert "pay-expiring-card" not in one_off.text
        renewing = await _buy(client, _holder("nl", email="bram@example.org"), auto_renew=True)
        page = await client.get(renewing["checkout_url"])
        assert "Betalen met een kaart die bij verlenging geweigerd wordt" in page.text
        assert f'action="{urlsplit(renewing["checkout_url"]).path}/pay-expiring-card"' in page.text
