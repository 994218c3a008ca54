"""Fixtures of the payment tests: a real SMTP server on loopback, and paid memberships."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession

from membership import memberships
from membership.keys import KeyStore
from membership.models import Membership, Payment
from membership.settings import Settings
from tests.factories import create_member, create_pending_purchase, create_product


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Inbox:
    """What the SMTP server accepted, parsed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def mail_settings(settings: Settings, smtp_port: int) -> Settings:
    KeyStore.from_settings(settings).ensure()
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp_port})


@pytest.fixture
def inbox(smtp_port: int) -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield handler
    controller.stop()


async def paid_membership(
    session: AsyncSession,
    settings: Settings,
    *,
    now: datetime,
    holders: int = 1,
    grace_days: int = 14,
    auto_renew: bool = False,
    validity_months: int = 12,
    language: str = "nl",
) -> tuple[Membership, Payment]:
    """A purchase paid at `now`, applied as the webhook would apply it."""
    product = await create_product(
        session, max_holders=holders, grace_days=grace_days, validity_months=validity_months
    )
    people = [await create_member(session, language=language) for _ in range(holders)]
    payment = await create_pending_purchase(
        session, product=product, holders=people, auto_renew=auto_renew
    )
    await session.commit()
    applied = await memberships.apply_payment(
        session,
        payment_id=payment.id,
        provider_payment_id="pi_" + payment.reference,
        subscription_id=None,
        settings=settings,
        now=now,
    )
    await session.commit()
    membership = await memberships.load_membership(session, membership_id=payment.membership_id)
    await session.commit()
    return membership, applied.payment
