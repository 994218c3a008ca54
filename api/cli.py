"""The `membership` command: serve, migrate and manage the service."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

import migrations
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
