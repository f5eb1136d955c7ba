"""The sandbox core: fault specs, routing, and the two ways a handler is served."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import httpx
import pytest
import uvicorn

from migration_pipeline.sandbox.asgi import asgi_app
from migration_pipeline.sandbox.faults import FaultInjector, FaultSpec, FaultSpecError
from migration_pipeline.sandbox.http import Drop, Handler, Router, json_response
from migration_pipeline.sandbox.store import SlidingWindow, open_db
from migration_pipeline.sandbox.transport import SandboxTransport


def test_fault_spec_parses_rates_latency_seed_and_side_prefixes() -> None:
    spec = "429=0.05,5xx=0.02,timeout=0.01,lost=0.02,latency=50ms,seed=7,amocrm.ban=0.5"
    amocrm = FaultSpec.parse(spec, "amocrm")
    pipedrive = FaultSpec.parse(spec, "pipedrive")
    assert amocrm.rates == {"429": 0.05, "5xx": 0.02, "timeout": 0.01, "lost": 0.02, "ban": 0.5}
    assert "ban" not in pipedrive.rates
    assert amocrm.latency == pytest.approx(0.05)
    assert amocrm.seed == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("429", "not kind=value"),
        ("boom=0.1", "unknown fault kind"),
        ("429=2", "between 0 and 1"),
        ("latency=fast", "latency"),
        ("mars.429=0.1", "side"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        FaultSpec.parse(spec, "amocrm")


def test_faults_are_deterministic_for_a_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        injector = FaultInjector(FaultSpec.parse(f"429=0.3,lost=0.2,seed={seed}", "amocrm"))
        return [injector.draw() for _ in range(200)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    assert {"429", "lost", None} == set(draws(5))


def test_router_matches_typed_segments_and_tells_405_from_404() -> None:
    router = Router()
    router.add("GET", "/api/v4/leads/{id:int}", lambda request, id: json_response(200, {"id": id}))
    resolved = router.resolve("GET", "/api/v4/leads/42")
    assert resolved is not None and resolved[1] == {"id": 42}
    assert router.resolve("GET", "/api/v4/leads/abc") is None
    assert router.resolve("POST", "/api/v4/leads/42") is None
    assert router.allows("/api/v4/leads/42")


def _dropping_handler(committed: list[str]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/lost":
            committed.append("write")
            raise Drop("lost")
        if request.url.path == "/timeout":
            raise Drop("timeout")
        return json_response(200, {"ok": True})

    return handler


def test_in_process_transport_turns_drops_into_network_errors() -> None:
    committed: list[str] = []
    with httpx.Client(
        transport=SandboxTransport(_dropping_handler(committed)), base_url="http://x"
    ) as client:
        assert client.get("/ok").json() == {"ok": True}
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/lost")
        with pytest.raises(httpx.ReadTimeout):
            client.post("/timeout")
    assert committed == ["write"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(handler: Handler, *, timeout_seconds: float = 30.0) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        asgi_app(handler, timeout_seconds=timeout_seconds),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_over_http_a_lost_response_cuts_the_connection_after_the_commit() -> None:
    committed: list[str] = []
    with (
        serve(_dropping_handler(committed), timeout_seconds=1.0) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert client.get("/ok").json() == {"ok": True}
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/lost")
        with pytest.raises(httpx.ReadTimeout):
            client.post("/timeout", timeout=0.3)
        assert client.get("/ok").status_code == 200
    assert committed == ["write"]


def _hammer(path: str, start: float, seconds: float) -> list[float]:
    """Hit the window from ``start`` (the same moment in every process) for ``seconds``."""
    window = SlidingWindow(open_db(Path(path)), limit=7, window=1.0)
    accepted = []
    time.sleep(max(0.0, start - time.time()))
    deadline = start + seconds
    while time.time() < deadline:
        now = time.time()
        if window.hit("account", now)[0]:
            accepted.append(now)
        # A pause between tries, as any client has: without it the process that gets the
        # first slot of a fresh window takes all seven before the other is scheduled.
        time.sleep(0.005)
    return accepted


def test_sliding_window_holds_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.sqlite3")
    open_db(Path(path)).executescript(
        "create table if not exists limiter_hits (bucket text not null, at real not null);"
    )
    with get_context("spawn").Pool(2) as pool:
        start = time.time() + 3.0  # both spawned and importing done: they hammer together
        results = pool.starmap(_hammer, [(path, start, 2.0), (path, start, 2.0)], chunksize=1)
    times = sorted(t for result in results for t in result)
    assert all(result for result in results), "both processes got requests through"
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 7
    assert len(times) >= 12


def test_sliding_window_judges_a_late_checked_hit_by_the_spans_that_contain_it(
    tmp_path: Path,
) -> None:
    con = open_db(tmp_path / "limits.sqlite3")
    con.executescript(
        "create table if not exists limiter_hits (bucket text not null, at real not null);"
    )
    window = SlidingWindow(con, limit=3, window=1.0)
    assert window.hit("a", 100.0)[0] and window.hit("a", 100.2)[0]
    assert window.hit("a", 101.15)[0]  # a later arrival, checked first
    # Checked late, 100.9 shares no 1-second span with both 100.0 and 101.15 holding 3 already:
    # [100.0, 101.0) would hold 100.0, 100.2, 100.9 (3), [100.2, 101.2) 100.2, 100.9, 101.15 (3).
    assert window.hit("a", 100.9)[0]
    # Now every span around 101.1 is full: [100.2, 101.2) holds 100.2, 100.9, 101.15.
    assert not window.hit("a", 101.1)[0]
