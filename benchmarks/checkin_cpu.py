"""CPU per scan of the door and of the one-INSERT ceiling, without the network or a load generator.

`benchmarks/checkin.py` measures throughput and latency, which on a shared machine depend on
everything else that runs. This one drives the same app (`_ceiling_app.py`) in-process through
its ASGI interface, one request after the other, against the database `benchmarks/checkin.py`
loaded, and prints the server's CPU time per request: what the code costs, whatever the load.

Under callgrind it counts instructions instead, which no other process can disturb; it switches
the instrumentation on only around the measured requests (start-up and warm-up excluded):

    .venv/bin/python -m benchmarks.checkin --cards 2000 --checkins 20000   # once, to load
    .venv/bin/python -m benchmarks.checkin_cpu
    valgrind --tool=callgrind --instr-atstart=no \\
        .venv/bin/python -m benchmarks.checkin_cpu --requests 50 --callgrind
    # then: instructions per request = "Collected" / requests, per endpoint (--endpoint)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._ceiling_app import create_app
from benchmarks.checkin import (
    CEILING_PATH,
    CHECKIN_PATH,
    DEFAULT_DATABASE,
    DEFAULT_URL,
    PROGRAMME,
    Traffic,
    delete_bench_rows,
    prepare_traffic,
    resolve_target,
)
from membership.keys import KeyStore


async def _call(app: Any, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """One POST through the app's ASGI interface, as uvicorn would make it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    received = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the app asks again only to watch for a disconnect: there is none
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _callgrind(switch: str) -> None:
    """Switch callgrind's instrumentation of this process on or off (no-op outside valgrind).

    Polled rather than waited for: valgrind answers the request while this process runs.
    """
    control = subprocess.Popen(
        ["callgrind_control", "--instr=" + switch, str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while control.poll() is None:
        time.sleep(0.05)


async def measure(
    app: Any, traffic: Traffic, *, endpoint: str, warmup: int, requests: int, callgrind: bool
) -> None:
    outcomes: Counter[str] = Counter()
    for _ in range(warmup):
        headers, body = traffic.next()
        status, _content = await _call(app, endpoint, headers, body)
        if status != 200:
            raise SystemExit(f"{endpoint} answered {status} during the warm-up")
    # Made beforehand: building the scans is the scanners' work, not the server's.
    scans = [traffic.next() for _ in range(requests)]
    if callgrind:
        _callgrind("on")
    answers = []
    cpu, wall = time.process_time(), time.perf_counter()
    for headers, body in scans:
        answers.append(await _call(app, endpoint, headers, body))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if callgrind:
        _callgrind("off")
    for status, content in answers:
        if status != 200:
            outcomes[f"HTTP {status}"] += 1
        elif endpoint == CHECKIN_PATH:
            answer = json.loads(content)
            outcomes[f"{answer['result']}/{answer['reason']}"] += 1
    mix = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
    print(
        f"{endpoint:<16} {requests} requests: CPU {cpu / requests * 1000:.2f} ms/request, "
        f"wall {wall / requests * 1000:.2f} ms/request{f' ({mix})' if mix else ''}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help=f"as for benchmarks.checkin (default database {DEFAULT_DATABASE}, already loaded)",
    )
    parser.add_argument("--endpoint", choices=("both", "checkin", "ceiling"), default="both")
    parser.add_argument("--requests", type=int, default=500, help="measured, per endpoint")
    parser.add_argument("--warmup", type=int, default=50, help="per endpoint, not measured")
    parser.add_argument("--callgrind", action="store_true", help="toggle callgrind around them")
    parser.add_argument("--seed", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.callgrind and options.endpoint == "both":
        raise SystemExit("With --callgrind, measure one --endpoint per run: callgrind adds up.")
    target = resolve_target(options.database_url)
    endpoints = {
        "both": (CEILING_PATH, CHECKIN_PATH),
        "checkin": (CHECKIN_PATH,),
        "ceiling": (CEILING_PATH,),
    }[options.endpoint]
    with tempfile.TemporaryDirectory(prefix="mbench-cpu-") as workdir:
        key_dir = Path(workdir) / "keys"
        KeyStore(key_dir).ensure()
        traffic, device_ids = asyncio.run(
            prepare_traffic(
                target,
                key_dir=key_dir,
                # Cards enough that nearly every scan is a first one or a quick repeat.
                pool=4 * (options.warmup + options.requests),
                repeat_share=0.1,
                seed=options.seed,
            )
        )
        asyncio.run(delete_bench_rows(target, device_ids))
        # The app reads its settings from the environment, as under uvicorn.
        os.environ |= {
            "MEMBERSHIP_DATABASE_URL": target.database_url,
            "MEMBERSHIP_KEY_DIR": str(key_dir),
            "MEMBERSHIP_PROGRAMME_CODE": PROGRAMME,
        }
        app = create_app()

        async def run() -> None:
            try:
                for endpoint in endpoints:
                    await measure(
                        app,
                        traffic,
                        endpoint=endpoint,
                        warmup=options.warmup,
                        requests=options.requests,
                        callgrind=options.callgrind,
                    )
            finally:
                await app.state.engine.dispose()

        asyncio.run(run())
        asyncio.run(delete_bench_rows(target, device_ids))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
