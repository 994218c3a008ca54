"""The `membership-scan` command used at the entrance.

`pair` once, then `run` all day: it reads codes from a keyboard-wedge scanner (or typed
numbers) on stdin, from QR images or from a camera, shows each decision, and keeps uploading
and syncing in the background. `sync`, `upload` and `status` do one piece of that by hand.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from scanner_client import __version__
from scanner_client.client import DOOR_TIMEOUT, Client
from scanner_client.config import CONFIG_DIR_ENV, DATA_DIR_ENV, Config, Paths, load, save
from scanner_client.display import Screen
from scanner_client.door import Door, OnlineGate, Uploader, sync, upload_queue, utc_now
from scanner_client.errors import ScannerError
from scanner_client.queue import ScanStore
from scanner_client.sources import camera_codes, image_codes, lines

app = typer.Typer(help="Door scanner client for the membership card service.", no_args_is_help=True)


CLOCK_SKEW_WARNING = 120.0
"""Seconds of drift worth a warning: offline decisions and scan times use the device clock."""


class Output(StrEnum):
    SCREEN = "screen"
    JSON = "json"


@app.callback()
def main(
    ctx: typer.Context,
    config_dir: Annotated[
        Path | None,
        typer.Option(envvar=CONFIG_DIR_ENV, help="Holds the device key (and the queue)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(envvar=DATA_DIR_ENV, help="Holds the queue of scans.")
    ] = None,
) -> None:
    """Door scanner client for the membership card service."""
    ctx.obj = Paths.resolve(config_dir, data_dir)


@contextlib.contextmanager
def _friendly_errors() -> Iterator[None]:
    """The client's own errors end the command with a sentence and exit code 1, not a trace."""
    try:
        yield
    except ScannerError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def version() -> None:
    """Print the client version (sent to the server with every request)."""
    typer.echo(__version__)


@app.command()
def pair(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(help="The API's base URL, e.g. https://cards.example.org")],
    code: Annotated[str, typer.Option(help="The pairing code a manager created for this door.")],
) -> None:
    """Pair this device with the code from a manager, then sync keys and revocations."""
    paths: Paths = ctx.obj
    with _friendly_errors():
        with Client(server, timeout=15.0) as client:
            pairing = client.pair(code)
        config = Config(
            server=server.rstrip("/"),
            device_key=pairing.device_key,
            device_id=pairing.device.id,
            device_name=pairing.device.name,
            institution_id=pairing.institution_id,
            venue_id=pairing.venue_id,
        )
        where = save(config, paths)
        typer.echo(f"Paired as {config.device_name!r}; key stored in {where}.")
        store = ScanStore(paths.queue_file)
        try:
            with Client(config.server, device_key=config.device_key, timeout=15.0) as client:
                sync(client, store)
            typer.echo(f"Synced: {_describe(store)}")
        except ScannerError as exc:
            typer.echo(f"Not synced yet ({exc}); `run` retries by itself.", err=True)
        finally:
            store.close()


@app.command("sync")
def sync_command(ctx: typer.Context) -> None:
    """Fetch keys, the institution's rules and the revocation delta now."""
    paths: Paths = ctx.obj
    with _friendly_errors():
        config = load(paths)
        store = ScanStore(paths.queue_file)
        try:
            with Client(config.server, device_key=config.device_key, timeout=15.0) as client:
                calls = sync(client, store)
            typer.echo(f"Synced in {calls} call(s): {_describe(store)}")
        finally:
            store.close()


@app.command()
def upload(ctx: typer.Context) -> None:
    """Send every queued scan to the server now."""
    paths: Paths = ctx.obj
    with _friendly_errors():
        config = load(paths)
        store = ScanStore(paths.queue_file)
        try:
            with Client(config.server, device_key=config.device_key) as client:
                report = upload_queue(client, store)
        finally:
            store.close()
        typer.echo(
            f"Recorded {report.recorded}, duplicates {report.duplicates}, "
            f"rejected {report.rejected}; {report.remaining} still queued."
        )


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Queue length, last sync, clock skew and key ids; works without the network."""
    paths: Paths = ctx.obj
    with _friendly_errors():
        config = load(paths)
        store = ScanStore(paths.queue_file)
        try:
            facts = _status(config, store)
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    for name, value in facts.items():
        typer.echo(f"{name.replace('_', ' '):>18}: {value}")


@app.command()
def run(
    ctx: typer.Context,
    image: Annotated[
        list[Path] | None,
        typer.Option(help="Scan the QR codes in these image files, then stop."),
    ] = None,
    camera: Annotated[
        int | None, typer.Option(help="Read codes from this camera (needs OpenCV).")
    ] = None,
    output: Annotated[Output, typer.Option(help="screen for the doorman, json for machines.")] = (
        Output.SCREEN
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = DOOR_TIMEOUT,
    offline_backoff: Annotated[
        float, typer.Option(help="After a failure, decide offline for this many seconds.")
    ] = 10.0,
    upload_every: Annotated[float, typer.Option(help="Seconds between uploads.")] = 5.0,
    sync_every: Annotated[float, typer.Option(help="Seconds between syncs.")] = 60.0,
    bell: Annotated[bool, typer.Option(help="Ring the terminal bell on a refusal.")] = True,
) -> None:
    """Scan all day: stdin lines (a keyboard-wedge scanner or typed numbers) unless told else."""
    paths: Paths = ctx.obj
    screen = Screen(as_json=output is Output.JSON, bell=bell)
    with _friendly_errors():
        config = load(paths)
        store = ScanStore(paths.queue_file)
        gate = OnlineGate(backoff=offline_backoff)
        client = Client(config.server, device_key=config.device_key, timeout=timeout)
        uploader = Uploader(
            make_client=lambda: Client(config.server, device_key=config.device_key),
            open_store=lambda: ScanStore(paths.queue_file),
            gate=gate,
            upload_every=upload_every,
            sync_every=sync_every,
        )
        door = Door(store=store, client=client, gate=gate)
        screen.message(f"Ready at {config.device_name!r}: {_describe(store)}")
        skew = store.state().clock_skew_seconds
        if skew is not None and abs(skew) > CLOCK_SKEW_WARNING:
            screen.message(f"Warning: this clock is {skew:+.0f} s off the server's: set the time.")
        uploader.start()
        try:
            for text in _codes(image, camera, screen):
                decision = door.scan(text)
                screen.show(
                    decision, counts=door.counts_today(), problem=door.problem or uploader.problem
                )
                if decision.offline:
                    uploader.wake()
        except KeyboardInterrupt:
            pass
        finally:
            uploader.stop()
            if gate.open():
                with contextlib.suppress(ScannerError):
                    # The door has stopped: every undecided scan is an orphan now.
                    upload_queue(client, store, orphaned_before=utc_now())
            screen.message(f"Stopped; {store.queue_length()} scan(s) queued.")
            client.close()
            store.close()


def _codes(images: list[Path] | None, camera: int | None, screen: Screen) -> Iterator[str]:
    if images:
        for path in images:
            found = image_codes(path)
            if not found:
                screen.message(f"No QR code found in {path}.")
            yield from found
    elif camera is not None:
        yield from camera_codes(camera)
    else:
        yield from lines(sys.stdin.buffer)


def _describe(store: ScanStore) -> str:
    state = store.state()
    if not state.synced:
        return f"never synced, {store.queue_length()} queued"
    return (
        f"{state.venue_name} ({state.institution_name}), {len(state.keys or {})} key(s), "
        f"{len(store.revocations)} revoked card number(s), {store.queue_length()} queued"
    )


def _status(config: Config, store: ScanStore) -> dict[str, Any]:
    state = store.state()
    counts = store.counts()
    return {
        "server": config.server,
        "device": f"{config.device_name} ({config.device_id})",
        "venue": state.venue_name,
        "institution": state.institution_name,
        "queue_length": counts.get("queued", 0),
        "rejected_scans": counts.get("rejected", 0),
        "last_sync": state.last_sync_at.isoformat() if state.last_sync_at else None,
        "clock_skew_seconds": state.clock_skew_seconds,
        "key_ids": sorted(state.keys or {}),
        "revocation_cursor": state.cursor,
        "revoked_cards": len(store.revocations),
        "queue_file": str(store.path),
    }
