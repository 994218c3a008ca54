"""The `membership` command: serve, migrate and manage the service."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn

import migrations
from membership import demo as demo_data
from membership.clock import local_date, utcnow
from membership.db import create_engine, create_sessionmaker
from membership.settings import Settings

app = typer.Typer(help="Membership card service.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    reload: bool = False,
) -> None:
    """Serve the API and web pages."""
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
    )


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to date (Alembic)."""
    settings = Settings()
    migrations.upgrade(settings.database_url, revision)
    typer.echo(f"Database at revision {revision}.")


@app.command()
def seed(
    demo: Annotated[bool, typer.Option("--demo", help="Add the demo programme.")] = False,
) -> None:
    """Load data into the database: `--demo` adds the demo programme once, and then never again."""
    if not demo:
        typer.echo("Nothing to seed: pass --demo.", err=True)
        raise typer.Exit(2)
    settings = Settings()
    summary = asyncio.run(_seed_demo(settings))
    if summary.created:
        typer.echo(
            f"Demo programme created: {summary.institutions} institutions, {summary.venues} "
            f"venues, {summary.products} products, {summary.members} members, "
            f"{summary.memberships} memberships, {summary.cards} cards, "
            f"{summary.checkins} check-ins."
        )
    else:
        typer.echo("Demo programme already present; nothing changed.")
    typer.echo("Demo staff logins (e-mail, password, role):")
    for line in demo_data.login_lines(summary.logins):
        typer.echo(f"  {line}")


async def _seed_demo(settings: Settings) -> demo_data.DemoSummary:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            today = local_date(utcnow(), settings.programme_timezone)
            summary = await demo_data.seed_demo(session, today=today)
            await session.commit()
            return summary
    finally:
        await engine.dispose()
