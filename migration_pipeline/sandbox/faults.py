"""Fault injection for the fake servers: what can go wrong, and how often.

A fault spec is comma-separated ``kind=value`` pairs, for example
``429=0.05,5xx=0.02,timeout=0.01,lost=0.02,latency=50ms,seed=7``. Rates are probabilities per
request, drawn from a generator seeded by ``seed`` so the same spec fails the same requests.
A kind may be prefixed with the side it applies to (``amocrm.lost=0.1``, ``pipedrive.5xx=0.2``);
without a prefix it applies to both fakes.

Kinds (rates unless noted):

======== ==================================================================================
429      answer 429 as if the rate limit were exceeded (nothing is processed)
5xx      answer 500, 502 or 503 (nothing is processed)
timeout  the request is not processed and no answer comes: the client times out
lost     the request **is processed and committed**, then the answer is lost (the client
         sees a timeout or a dropped connection; the entities exist). Reads are not affected
ban      answer 403 with the HTML page the real hosts send after abuse
html     (Pipedrive) answer 200 with an HTML page instead of JSON
truncate (Pipedrive) answer 200 with the JSON body cut in half
latency  added to every request, e.g. ``50ms`` or ``0.2s`` (a duration, not a rate)
seed     seed of the fault generator (an integer, default 0)
======== ==================================================================================
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

RATE_KINDS = ("429", "5xx", "timeout", "lost", "ban", "html", "truncate")
SIDES = ("pipedrive", "amocrm")


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the offending pair."""


def _duration(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", value)
    if not match:
        raise FaultSpecError(f"latency must look like 50ms or 0.2s, got {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "ms" else number


@dataclass(frozen=True)
class FaultSpec:
    """Parsed fault rates for one side. ``FaultSpec.parse(spec, side)`` keeps only what applies."""

    rates: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str | None, side: str) -> FaultSpec:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}")
        rates: dict[str, float] = {}
        latency = 0.0
        seed = 0
        for pair in (spec or "").split(","):
            pair = pair.strip()
            if not pair:
                continue
            if "=" not in pair:
                raise FaultSpecError(f"fault {pair!r} is not kind=value")
            key, value = (part.strip() for part in pair.split("=", 1))
            prefix, _, kind = key.rpartition(".")
            if prefix and prefix not in SIDES:
                raise FaultSpecError(f"fault {pair!r}: side must be one of {SIDES}")
            if prefix and prefix != side:
                continue
            if kind == "latency":
                latency = _duration(value)
            elif kind == "seed":
                try:
                    seed = int(value)
                except ValueError as exc:
                    raise FaultSpecError(f"seed must be an integer, got {value!r}") from exc
            elif kind in RATE_KINDS:
                try:
                    rate = float(value)
                except ValueError as exc:
                    raise FaultSpecError(f"fault {pair!r}: rate must be a number") from exc
                if not 0.0 <= rate <= 1.0:
                    raise FaultSpecError(f"fault {pair!r}: rate must be between 0 and 1")
                rates[kind] = rate
            else:
                raise FaultSpecError(
                    f"unknown fault kind {kind!r} in {pair!r}; "
                    f"known: {', '.join(RATE_KINDS)}, latency, seed"
                )
        return cls(rates=rates, latency=latency, seed=seed)

    @property
    def active(self) -> bool:
        return bool(self.latency) or any(rate > 0 for rate in self.rates.values())


class FaultInjector:
    """Draws at most one fault per request, deterministically from the spec's seed.

    Thread-safe; counts what it injected so tests can assert on it.
    """

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._random = random.Random(spec.seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def draw(self, *, applicable: tuple[str, ...] = RATE_KINDS) -> str | None:
        """Return the fault to inject for this request (or None). One random draw per request,
        so the sequence of faults depends only on the seed and the order of requests."""
        if not self.spec.rates:
            return None
        with self._lock:
            roll = self._random.random()
            threshold = 0.0
            for kind in RATE_KINDS:
                threshold += self.spec.rates.get(kind, 0.0)
                if roll < threshold:
                    if kind not in applicable:
                        return None
                    self.injected[kind] += 1
                    return kind
        return None
