"""Payments: the provider interface, its Stripe and local implementations, provider events."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from membership.payments.local import LocalProvider
from membership.payments.provider import PaymentProvider
from membership.payments.stripe import StripeProvider
from membership.settings import Settings


def provider_from_settings(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> PaymentProvider:
    """The provider `settings.payment_provider` names: `local` needs nothing configured."""
    if settings.payment_provider == "stripe":
        return StripeProvider.from_settings(settings)
    return LocalProvider(
        sessionmaker, base_url=settings.base_url, timezone=settings.programme_timezone
    )
