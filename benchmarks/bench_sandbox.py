"""Throughput of the fakes with limits off: requests per second they serve, in-process and over
real HTTP (uvicorn, one client, keep-alive).

    uv run python benchmarks/bench_sandbox.py [--seconds 5]

Pipedrive: ``GET /api/v2/persons?limit=500`` pages (seed scale) and ``GET /api/v1/users``.
amoCRM: ``GET /api/v4/account`` and ``POST /api/v4/contacts`` with 250 contacts a batch.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(handler: Callable) -> tuple[str, uvicorn.Server]:
    from migration_pipeline.sandbox.asgi import asgi_app

    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(
            asgi_app(handler), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server


def rate(seconds: float, call: Callable[[], httpx.Response]) -> float:
    count, deadline = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        response = call()
        assert response.status_code < 400, response.status_code
        count += 1
    return count / (time.monotonic() - started)


def measure(
    mode: str, pipedrive: httpx.Client, amocrm: httpx.Client, seconds: float
) -> list[tuple[str, str, float]]:
    contacts = [{"name": f"Contact {i}"} for i in range(250)]
    cursor: dict[str, str | None] = {"next": None}

    def persons_page() -> httpx.Response:
        params = {"limit": 500, **({"cursor": cursor["next"]} if cursor["next"] else {})}
        response = pipedrive.get("/api/v2/persons", params=params)
        cursor["next"] = response.json()["additional_data"]["next_cursor"]
        return response

    return [
        (mode, "Pipedrive GET /api/v2/persons?limit=500", rate(seconds, persons_page)),
        (
            mode,
            "Pipedrive GET /api/v1/users",
            rate(seconds, lambda: pipedrive.get("/api/v1/users")),
        ),
        (mode, "amoCRM GET /api/v4/account", rate(seconds, lambda: amocrm.get("/api/v4/account"))),
        (
            mode,
            "amoCRM POST /api/v4/contacts (250 a batch)",
            rate(seconds, lambda: amocrm.post("/api/v4/contacts", json=contacts)),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    os.environ.update(
        MIGRATION_DATA_DIR=tempfile.mkdtemp(prefix="bench-sandbox-"),
        MIGRATION_SANDBOX_SCALE="seed",
        MIGRATION_SANDBOX_PIPEDRIVE_BURST="100000000",
        MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS="1000000000",
        MIGRATION_SANDBOX_AMOCRM_RPS="100000",
        MIGRATION_SANDBOX_BAN_AFTER="0",
    )
    from migration_pipeline.sandbox import (
        AMOCRM_SANDBOX_TOKEN,
        PIPEDRIVE_SANDBOX_TOKEN,
        SandboxSettings,
        amocrm_fake,
        pipedrive_fake,
    )
    from migration_pipeline.sandbox.transport import SandboxTransport

    settings = SandboxSettings.from_env()
    pipedrive, amocrm = pipedrive_fake(settings), amocrm_fake(settings)
    pipedrive.validate()
    rows = []
    for mode in ("in-process", "HTTP"):
        if mode == "HTTP":
            p_url, p_server = serve(pipedrive.handle)
            a_url, a_server = serve(amocrm.handle)
            p_client = httpx.Client(
                base_url=p_url, headers={"x-api-token": PIPEDRIVE_SANDBOX_TOKEN}
            )
            a_client = httpx.Client(
                base_url=a_url, headers={"authorization": f"Bearer {AMOCRM_SANDBOX_TOKEN}"}
            )
        else:
            p_client = httpx.Client(
                base_url="http://p",
                transport=SandboxTransport(pipedrive.handle),
                headers={"x-api-token": PIPEDRIVE_SANDBOX_TOKEN},
            )
            a_client = httpx.Client(
                base_url="http://a",
                transport=SandboxTransport(amocrm.handle),
                headers={"authorization": f"Bearer {AMOCRM_SANDBOX_TOKEN}"},
            )
        rows += measure(mode, p_client, a_client, args.seconds)
        if mode == "HTTP":
            p_server.should_exit = a_server.should_exit = True
    print("| mode | request | requests/s |\n| --- | --- | --- |")
    for mode, what, value in rows:
        print(f"| {mode} | {what} | {value:.0f} |")


if __name__ == "__main__":
    main()
