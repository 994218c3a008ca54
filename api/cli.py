"""The `membership` command: serve, migrate and manage the service."""

from __future__ import annotations

import asyncio
import enum
import time as time_module
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
import uvicorn
from email_validator import EmailNotValidError, validate_email

import migrations
from membership import demo as demo_data
from membership import history, jobs, national, staff
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.db import create_engine, create_sessionmaker
from membership.errors import DomainError
from membership.keys import KeyInfo, KeyStore
from membership.models import StaffRole
from membership.settings import Settings
from reports import periods

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


keys_app = typer.Typer(
    help="Card-code signing keys (kept in MEMBERSHIP_KEY_DIR, never in the database).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _key_store() -> KeyStore:
    return KeyStore.from_settings(Settings())


def _echo_key(info: KeyInfo) -> None:
    created = info.created_at.isoformat(timespec="seconds") if info.created_at else "-"
    typer.echo(f"{info.key_id}  {info.status.value:<8}  created {created}")


def _key_command(action: Callable[[], KeyInfo]) -> None:
    try:
        _echo_key(action())
    except DomainError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@keys_app.command("list")
def keys_list() -> None:
    """List the keys: the newest active one signs, pending and retired ones only verify."""
    infos = _key_store().all_keys()
    if not infos:
        typer.echo("No keys: run `membership keys ensure`.")
    for info in infos:
        _echo_key(info)


@keys_app.command("generate")
def keys_generate() -> None:
    """Add a key; with an active key present it waits as pending until `rotate`."""
    _key_command(_key_store().generate)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make the pending (or a new) key sign; retire the old one, whose cards stay valid."""
    _key_command(_key_store().rotate)


@keys_app.command("retire")
def keys_retire(key_id: str) -> None:
    """Stop a key signing; it still verifies the cards it signed."""
    store = _key_store()
    _key_command(lambda: store.retire(key_id))


@keys_app.command("remove")
def keys_remove(key_id: str) -> None:
    """Delete a retired key: cards it signed are refused from then on."""
    try:
        _key_store().remove(key_id)
    except DomainError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{key_id} removed")


@keys_app.command("ensure")
def keys_ensure() -> None:
    """Generate the first key of a fresh install; do nothing when keys exist (`make run`)."""
    store = _key_store()
    if store.read_only:
        typer.echo("Keys come from MEMBERSHIP_SIGNING_KEYS.")
        return
    info = store.ensure()
    if info is None:
        typer.echo("Signing keys present; nothing changed.")
    else:
        typer.echo("First signing key generated:")
        _echo_key(info)


class SeedScale(enum.StrEnum):
    NATIONAL = "national"


@app.command()
def seed(
    demo: Annotated[bool, typer.Option("--demo", help="Add the demo programme.")] = False,
    scale: Annotated[
        SeedScale | None,
        typer.Option(help="national: 1.5 million members, 12 million check-ins (PostgreSQL)."),
    ] = None,
    factor: Annotated[
        float, typer.Option(min=0.0001, max=1.0, help="Shrink the national scale (0.01: 1 %).")
    ] = 1.0,
    seed_number: Annotated[
        int, typer.Option("--seed", help="Same seed, factor and day: the same data.")
    ] = national.DEFAULT_SEED,
    force: Annotated[
        bool, typer.Option("--force", help="Empty every table (staff too) before --scale.")
    ] = False,
) -> None:
    """Load data: `--demo` adds the demo programme once; `--scale national` fills an empty
    PostgreSQL database with a national programme (docs/reports.md, "Scale data")."""
    if demo == (scale is not None):
        typer.echo("Pass either --demo or --scale national.", err=True)
        raise typer.Exit(2)
    settings = Settings()
    if scale is SeedScale.NATIONAL:
        _seed_national(settings, factor=factor, seed=seed_number, force=force)
        return
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


def _seed_national(settings: Settings, *, factor: float, seed: int, force: bool) -> None:
    def phase(name: str, seconds: float) -> None:
        typer.echo(f"{seconds:8.1f} s  {name}")

    started = time_module.perf_counter()
    try:
        summary = asyncio.run(
            _load_national(settings, factor=factor, seed=seed, force=force, on_phase=phase)
        )
    except DomainError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"National programme ({summary.first_day} to {summary.last_day}): "
        f"{summary.institutions:,} institutions, {summary.venues:,} venues, "
        f"{summary.products} products, {summary.members:,} members, "
        f"{summary.memberships:,} memberships, {summary.terms:,} terms, "
        f"{summary.payments:,} payments, {summary.cards:,} cards, {summary.checkins:,} check-ins "
        f"({summary.visits:,} visits, {summary.reentries:,} re-entries, "
        f"{summary.refusals:,} refusals) in {time_module.perf_counter() - started:.0f} s."
    )


async def _load_national(
    settings: Settings,
    *,
    factor: float,
    seed: int,
    force: bool,
    on_phase: Callable[[str, float], None],
) -> national.NationalSummary:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            summary = await national.seed_national(
                session,
                today=local_date(utcnow(), settings.programme_timezone),
                factor=factor,
                seed=seed,
                force=force,
                programme_code=settings.programme_code,
                on_phase=on_phase,
            )
            started = time_module.perf_counter()
            await session.commit()
            on_phase("commit", time_module.perf_counter() - started)
            return summary
    finally:
        await engine.dispose()


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


users_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create-admin")
def users_create_admin(
    email: Annotated[str, typer.Option(help="Sign-in e-mail address.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    password: Annotated[
        str,
        typer.Option(
            envvar="MEMBERSHIP_ADMIN_PASSWORD",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="Else read from MEMBERSHIP_ADMIN_PASSWORD, else asked for (hidden).",
        ),
    ],
) -> None:
    """Create an operator admin: the first account of a fresh install, or a new colleague."""
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        asyncio.run(_create_admin(Settings(), email=email, name=name, password=password))
    except DomainError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Operator admin {email.lower()} created; sign in at POST /v1/auth/login.")


async def _create_admin(settings: Settings, *, email: str, name: str, password: str) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await staff.create_staff_user(
                session,
                email=email,
                name=name,
                password=password,
                role=StaffRole.OPERATOR_ADMIN,
                institution_id=None,
                actor=Actor(label="cli"),
            )
            await session.commit()
    finally:
        await engine.dispose()


jobs_app = typer.Typer(help="Background work: events, e-mail, renewals.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("run")
def jobs_run(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option(min=1.0, help="Seconds between passes.")] = 15.0,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Demo only (local provider): one pass as if it were this day, to show "
            "renewals, grace and expiry without waiting a year.",
        ),
    ] = None,
) -> None:
    """Drain provider events and the outbox, move memberships on, send reminders, cut old links.

    Safe to run on several machines at once: no two runners do the same work.
    """
    settings = Settings()
    if as_of is not None and settings.payment_provider != "local":
        raise typer.BadParameter("only with the local payment provider", param_hint="--as-of")
    now = (
        datetime.combine(as_of.date(), time(12), ZoneInfo(settings.programme_timezone))
        if as_of is not None
        else None
    )
    report = asyncio.run(
        _run_jobs(settings, once=once or now is not None, interval=interval, now=now)
    )
    if report is not None:
        typer.echo(report.summary())


async def _run_jobs(
    settings: Settings, *, once: bool, interval: float, now: datetime | None = None
) -> jobs.PassReport | None:
    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        if once:
            return await jobs.run_once(sessionmaker, settings=settings, now=now or utcnow())
        # The report rollups run beside the jobs, not in their pass: a first computation of
        # a national year takes minutes and must not hold up mail and renewals.
        await asyncio.gather(
            jobs.run_forever(sessionmaker, settings=settings, interval=interval),
            periods.refresh_forever(sessionmaker, interval=interval, k=settings.suppression_k),
        )
        return None
    finally:
        await engine.dispose()


reports_app = typer.Typer(help="Report figures kept ahead of time.", no_args_is_help=True)
app.add_typer(reports_app, name="reports")


@reports_app.command("refresh")
def reports_refresh() -> None:
    """Compute the rollups and stored institution reports of closed months, quarters, years
    and the last twelve months that are missing or changed.

    `membership jobs run` does this continuously; run it by hand after a large import.
    """
    result = asyncio.run(_refresh_reports(Settings()))
    typer.echo(
        f"rollups: {len(result.computed)} periods computed, {result.unchanged} unchanged "
        f"(check-ins up to id {result.marks.checkin})"
    )


async def _refresh_reports(settings: Settings) -> periods.RefreshReport:
    engine = create_engine(settings.database_url)
    try:
        return await periods.refresh(
            create_sessionmaker(engine), now=utcnow(), k=settings.suppression_k
        )
    finally:
        await engine.dispose()


import_app = typer.Typer(help="Load data from a previous system.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("checkins")
def import_checkins(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Load past scans as counted visits (columns: docs/import.md); a bad file imports nothing."""
    try:
        summary = asyncio.run(_import_checkins(Settings(), file.read_bytes()))
    except history.ImportRejected as exc:
        for error in exc.errors:
            typer.echo(f"line {error.line}: {error.message}", err=True)
        typer.echo(f"Error: {exc.detail}; nothing imported.", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"rows {summary.rows}, already imported {summary.already_imported}, visits counted "
        f"{summary.counted}, re-entries {summary.reentries}, holders created "
        f"{summary.holders_created}, cards created {summary.cards_created}"
    )


async def _import_checkins(settings: Settings, data: bytes) -> history.ImportSummary:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            summary = await history.import_checkins(
                session, data=data, actor=Actor(label="cli"), now=utcnow()
            )
            await session.commit()
            return summary
    finally:
        await engine.dispose()
