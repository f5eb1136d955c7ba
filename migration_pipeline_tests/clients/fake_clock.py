"""A clock the client tests drive by hand, so retries and rate-limit waits take no real time."""

from __future__ import annotations


class FakeClock:
    """``time.monotonic`` and ``time.sleep`` in one: sleeping records and advances time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
