"""``python -m migration_pipeline.sandbox serve``: both fakes over real HTTP, as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from migration_pipeline.sandbox import AMOCRM_SANDBOX_TOKEN, PIPEDRIVE_SANDBOX_TOKEN

SECRET = "tok-SECRET-4242"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_like_the_real_hosts_and_never_prints_a_real_token(tmp_path: Path) -> None:
    """The documented sandbox token is printed; a token from the environment is a secret."""
    pipedrive_port, amocrm_port = _port(), _port()
    command = [
        *(sys.executable, "-m", "migration_pipeline.sandbox", "serve", "--host", "127.0.0.1"),
        *("--pipedrive-port", str(pipedrive_port), "--amocrm-port", str(amocrm_port)),
        *("--scale", "tiny", "--seed", "5", "--data-dir", str(tmp_path / "data")),
    ]
    environment = {**os.environ, "AMOCRM_ACCESS_TOKEN": SECRET}
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    pipedrive = httpx.Client(
        base_url=f"http://127.0.0.1:{pipedrive_port}",
        headers={"x-api-token": PIPEDRIVE_SANDBOX_TOKEN},
    )
    amocrm = httpx.Client(
        base_url=f"http://127.0.0.1:{amocrm_port}", headers={"authorization": f"Bearer {SECRET}"}
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                deals = pipedrive.get("/api/v2/deals", params={"limit": 500})
                amocrm.get("/api/v4/account")
                break
            except httpx.ConnectError:
                assert server.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        assert deals.status_code == 200 and deals.json()["success"] is True
        assert pipedrive.get("/v1/users").json()["data"]
        assert amocrm.get("/api/v4/account").json()["currency"] == "RUB"
        assert httpx.get(f"http://127.0.0.1:{amocrm_port}/api/v4/account").status_code == 401
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{pipedrive_port}" in output
    assert f"http://127.0.0.1:{amocrm_port}" in output
    assert PIPEDRIVE_SANDBOX_TOKEN in output and "(the value of AMOCRM_ACCESS_TOKEN)" in output
    assert SECRET not in output and AMOCRM_SANDBOX_TOKEN not in output


def test_serve_help_documents_the_fault_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migration_pipeline.sandbox", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for kind in ("429", "5xx", "timeout", "lost", "latency", "seed"):
        assert kind in result.stdout
