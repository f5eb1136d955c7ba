"""The account limiter: where its file lives, what it is keyed by, and that three processes
sharing it never put more than the limit into any 1-second window (design §2, invariant 2)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from migration_pipeline import limiter as limiter_module
from migration_pipeline.limiter import (
    SQLiteRequestLimiter,
    account_key,
    account_limiter,
    limiter_path,
    window_rate,
)

RATE = 7
PROCESSES = 3
SECONDS = 3.0


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most acquisitions in any half-open ``window``-second span."""
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def sustained_rate(times: list[float], limit: int) -> float:
    """Acquisitions per second over whole windows: a sliding-window log admits ``limit`` at
    once, then the next ``limit`` one window later, so counting from the first acquisition to
    the first of the last full group measures the rate without the start's free burst."""
    whole = (len(times) - 1) // limit * limit
    return whole / (times[whole] - times[0])


def _hammer(path: str, rate: float, seconds: float, barrier, results) -> None:
    """One process: acquire as fast as possible for ``seconds``, report when each was granted."""
    limiter = SQLiteRequestLimiter(Path(path), rate)
    barrier.wait()
    stop = time.time() + seconds
    granted = []
    while time.time() < stop:
        limiter.acquire()
        granted.append(time.time())
    limiter.close()
    results.put(granted)


def test_three_processes_never_exceed_the_limit_and_use_most_of_it(tmp_path: Path) -> None:
    path = tmp_path / "limits" / "amocrm-test.sqlite3"
    SQLiteRequestLimiter(path, RATE).close()  # create the file before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(str(path), RATE, SECONDS, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    per_process = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    times = sorted(at for granted in per_process for at in granted)
    assert all(granted for granted in per_process), "every process got requests through"
    assert max_in_window(times) <= RATE
    assert sustained_rate(times, RATE) >= 0.85 * RATE


def test_threads_of_one_process_share_the_limit(tmp_path: Path) -> None:
    limiter = SQLiteRequestLimiter(tmp_path / "limit.sqlite3", 20)
    granted: list[float] = []
    lock = threading.Lock()

    def take(count: int) -> None:
        for _ in range(count):
            limiter.acquire()
            with lock:
                granted.append(time.time())

    threads = [threading.Thread(target=take, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limiter.close()
    assert len(granted) == 40
    assert max_in_window(sorted(granted)) <= 20


def test_window_is_widened_by_the_margin() -> None:
    assert (window_rate(7).limit, window_rate(7).interval) == (7, 1050)
    assert (window_rate(7.5).limit, window_rate(7.5).interval) == (7, 984)
    assert (window_rate(0.5).limit, window_rate(0.5).interval) == (1, 2050)
    assert window_rate(7, margin_ms=0).interval == 1000
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            window_rate(bad)


def test_account_key_is_a_hash_of_the_origin_only() -> None:
    key = account_key("https://acme.amocrm.ru")
    assert len(key) == 16 and "acme" not in key
    assert account_key("https://ACME.amocrm.ru/") == key
    assert account_key("https://acme.amocrm.ru/api/v4?token=secret") == key
    assert account_key("https://other.amocrm.ru") != key
    assert account_key("http://127.0.0.1:8001") != account_key("http://127.0.0.1:8002")
    with pytest.raises(ValueError):
        account_key("acme.amocrm.ru")


def test_limiter_file_lives_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATION_DATA_DIR", str(tmp_path))
    expected = tmp_path / "limits" / f"amocrm-{account_key('https://acme.amocrm.ru')}.sqlite3"
    assert limiter_path("https://acme.amocrm.ru") == expected
    assert limiter_path("https://acme.amocrm.ru", tmp_path / "elsewhere") == (
        tmp_path / "elsewhere" / expected.relative_to(tmp_path)
    )


def test_account_limiter_is_cached_per_process_account_and_rate(tmp_path: Path) -> None:
    first = account_limiter("https://acme.amocrm.ru", 7, data_dir=tmp_path)
    try:
        assert account_limiter("https://ACME.amocrm.ru/", 7.0, data_dir=tmp_path) is first
        assert account_limiter("https://acme.amocrm.ru", 5, data_dir=tmp_path) is not first
        assert account_limiter("https://other.amocrm.ru", 7, data_dir=tmp_path) is not first
        assert len(list((tmp_path / "limits").glob("amocrm-*.sqlite3"))) == 2
    finally:
        for key in [key for key in limiter_module._limiters if key[1].is_relative_to(tmp_path)]:
            limiter_module._limiters.pop(key).close()
