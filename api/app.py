"""The FastAPI application factory: the composition root of the HTTP side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.routers import (
    auth,
    checkins,
    devices,
    health,
    institutions,
    products,
    scanner_sync,
    staff_users,
)
from api.routers.admin_members import router as admin_members_router
from api.routers.cards import router as cards_router
from api.routers.failed_work import router as failed_work_router
from api.routers.keys import router as keys_router
from api.routers.members import router as members_router
from api.routers.pages import router as pages_router
from api.routers.payments import router as payments_router
from api.routers.purchases import router as purchases_router
from api.routers.reports import router as reports_router
from api.routers.scanner import router as scanner_router
from membership.db import create_engine, create_sessionmaker
from membership.payments import provider_from_settings
from membership.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app around one settings object; nothing is read from the environment later."""
    settings = settings or Settings()
    engine = create_engine(
        settings.database_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await _app.state.payment_provider.aclose()
        await engine.dispose()

    app = FastAPI(
        title=f"{settings.programme_name} API",
        version="0.1.0",
        description="Membership cards for cultural institutions: cards, check-ins, payments, "
        "reports. Every error is an RFC 9457 problem document.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.payment_provider = provider_from_settings(settings, app.state.sessionmaker)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(keys_router)
    app.include_router(cards_router)
    app.include_router(scanner_router)
    app.include_router(auth.router)
    app.include_router(institutions.router)
    app.include_router(products.router)
    app.include_router(staff_users.router)
    app.include_router(devices.router)
    app.include_router(checkins.router)
    app.include_router(scanner_sync.router)
    app.include_router(reports_router)
    app.include_router(purchases_router)
    app.include_router(payments_router)
    app.include_router(members_router)
    app.include_router(failed_work_router)
    app.include_router(admin_members_router)
    app.include_router(pages_router)
    return app
