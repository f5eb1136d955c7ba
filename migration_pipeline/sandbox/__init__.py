"""The embedded sandbox: a fake Pipedrive and a fake amoCRM that behave like the real APIs.

By default the pipeline talks to these fakes in-process (no port, nothing to start by hand).
Every process that uses the same data directory sees one amoCRM account and one set of rate
limits, because their state lives in SQLite files under ``<data dir>/sandbox/``. The same fakes
can be served over real HTTP with ``python -m migration_pipeline.sandbox serve``.

Configuration (environment, read when a sandbox is built, never at import):

=================================== ======================================================
``MIGRATION_SANDBOX_SCALE``          generated dataset size: tiny, small, seed, large
                                     (default small)
``MIGRATION_SANDBOX_SEED``           generator seed (default 1)
``MIGRATION_SANDBOX_FROM_DIR``       serve this folder of ``<entity>.jsonl`` files instead
``MIGRATION_SANDBOX_FAULTS``         fault spec, see :mod:`.faults`
``MIGRATION_SANDBOX_AMOCRM_RPS``     amoCRM account-wide requests per second (default 7)
``MIGRATION_SANDBOX_PIPEDRIVE_BURST`` Pipedrive requests per token per 2 s (default 80)
``MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS`` Pipedrive daily token budget (default 450000)
``MIGRATION_SANDBOX_BAN_AFTER``      429s within 10 s that earn a 403 ban (default 30; 0 = never)
``MIGRATION_SANDBOX_BAN_SECONDS``    how long a ban lasts (default 60)
``MIGRATION_SANDBOX_CURRENCY``       the amoCRM account currency (default RUB)
=================================== ======================================================

Tokens: the fakes accept ``PIPEDRIVE_API_TOKEN`` / ``AMOCRM_ACCESS_TOKEN`` when those are set,
else the fixed sandbox tokens below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import httpx

from .. import settings as project_settings

PIPEDRIVE_SANDBOX_TOKEN = "sandbox-pipedrive-api-token"
AMOCRM_SANDBOX_TOKEN = "sandbox-amocrm-access-token"
PIPEDRIVE_URL = "http://sandbox.pipedrive.local"
AMOCRM_URL = "http://sandbox.amocrm.local"
SCALES = ("tiny", "small", "seed", "large")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class SandboxSettings:
    """Everything that shapes one sandbox world. Frozen and hashable: one fake per settings."""

    data_dir: Path
    scale: str = "small"
    seed: int = 1
    from_dir: Path | None = None
    faults: str = ""
    amocrm_rps: float = 7.0
    pipedrive_burst: int = 80
    pipedrive_daily_tokens: int = 450_000
    ban_after: int = 30
    ban_seconds: float = 60.0
    currency: str = "RUB"
    pipedrive_token: str = PIPEDRIVE_SANDBOX_TOKEN
    amocrm_token: str = AMOCRM_SANDBOX_TOKEN

    @classmethod
    def from_env(cls) -> SandboxSettings:
        scale = os.environ.get("MIGRATION_SANDBOX_SCALE") or "small"
        if scale not in SCALES:
            raise ValueError(
                f"MIGRATION_SANDBOX_SCALE must be one of {', '.join(SCALES)}, got {scale!r}"
            )
        from_dir = os.environ.get("MIGRATION_SANDBOX_FROM_DIR")
        return cls(
            data_dir=project_settings.data_dir(),
            scale=scale,
            seed=_env_int("MIGRATION_SANDBOX_SEED", 1),
            from_dir=Path(from_dir).expanduser().resolve() if from_dir else None,
            faults=os.environ.get("MIGRATION_SANDBOX_FAULTS", ""),
            amocrm_rps=_env_float("MIGRATION_SANDBOX_AMOCRM_RPS", 7.0),
            pipedrive_burst=_env_int("MIGRATION_SANDBOX_PIPEDRIVE_BURST", 80),
            pipedrive_daily_tokens=_env_int("MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS", 450_000),
            ban_after=_env_int("MIGRATION_SANDBOX_BAN_AFTER", 30),
            ban_seconds=_env_float("MIGRATION_SANDBOX_BAN_SECONDS", 60.0),
            currency=os.environ.get("MIGRATION_SANDBOX_CURRENCY") or "RUB",
            pipedrive_token=os.environ.get("PIPEDRIVE_API_TOKEN") or PIPEDRIVE_SANDBOX_TOKEN,
            amocrm_token=os.environ.get("AMOCRM_ACCESS_TOKEN") or AMOCRM_SANDBOX_TOKEN,
        )

    def with_faults(self, faults: str | None) -> SandboxSettings:
        """The same world with another fault spec (a run may set its own)."""
        return self if faults is None else replace(self, faults=faults)

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "sandbox"

    @property
    def pipedrive_state(self) -> Path:
        return self.state_dir / "pipedrive.sqlite3"

    @property
    def amocrm_state(self) -> Path:
        return self.state_dir / "amocrm.sqlite3"

    def dataset_dir(self) -> Path:
        """The folder the fake Pipedrive serves: ``from_dir`` or the generated dataset for
        (scale, seed), generated on first use (safe when several processes race)."""
        if self.from_dir is not None:
            return self.from_dir
        from .generator import ensure_dataset

        return ensure_dataset(self.state_dir / "datasets", self.scale, self.seed)


@cache
def pipedrive_fake(settings: SandboxSettings):  # noqa: ANN201 - avoids importing at module load
    from .pipedrive import PipedriveFake

    return PipedriveFake(settings.dataset_dir(), settings)


@cache
def amocrm_fake(settings: SandboxSettings):  # noqa: ANN201
    from .amocrm import AmoCrmFake

    return AmoCrmFake(settings)


def pipedrive_transport(settings: SandboxSettings | None = None) -> httpx.BaseTransport:
    """An in-process transport to the fake Pipedrive of ``settings`` (default: from the env)."""
    from .transport import SandboxTransport

    return SandboxTransport(pipedrive_fake(settings or SandboxSettings.from_env()).handle)


def amocrm_transport(settings: SandboxSettings | None = None) -> httpx.BaseTransport:
    """An in-process transport to the fake amoCRM of ``settings`` (default: from the env)."""
    from .transport import SandboxTransport

    return SandboxTransport(amocrm_fake(settings or SandboxSettings.from_env()).handle)
