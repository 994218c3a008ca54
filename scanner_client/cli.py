"""The `membership-scan` command used at the entrance."""

from __future__ import annotations

import typer

from scanner_client import __version__

app = typer.Typer(help="Door scanner client for the membership card service.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the client version (sent to the server with every request)."""
    typer.echo(__version__)
