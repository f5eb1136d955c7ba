"""The pipeline's resources: the source account, the target account and the DuckDB file.

Each account resource holds configuration only and hands out a plain client (usable outside
Dagster). No ``base_url`` means the embedded sandbox (see :mod:`migration_pipeline.sandbox`):
the client then talks to the fake in-process, with the sandbox's token unless one is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from . import sandbox
from .clients import amocrm
from .clients.pipedrive import PipedriveClient, make_http_client
from .db import Warehouse
from .limiter import account_limiter

__all__ = ["AmoCrmResource", "PipedriveResource", "Warehouse"]

AMOCRM_REQUESTS_PER_SECOND = 7.0  # amoCRM's documented limit (reference §2)


class PipedriveResource(dg.ConfigurableResource):
    """The Pipedrive account we read from; no ``base_url`` means the sandbox.

    ``base_url`` is the company domain, e.g. ``https://acme.pipedrive.com`` (the client adds
    ``/api/v1`` and ``/api/v2``). The token travels only in the ``x-api-token`` header.
    """

    base_url: str | None = Field(default=None, description="https://<company>.pipedrive.com")
    api_token: str | None = Field(
        default=None, description="bind with EnvVar('PIPEDRIVE_API_TOKEN')"
    )
    page_size: int = Field(default=500, ge=1, le=500, description="records per list page (max 500)")
    timeout_seconds: float = 30.0
    max_retries: int = Field(
        default=6, ge=0, description="retries of a 5xx, timeout or garbled page"
    )
    retry_backoff_seconds: float = Field(default=0.5, gt=0, description="first back-off; doubles")
    sandbox_faults: str | None = Field(
        default=None,
        description="sandbox only: a fault spec for this run (overrides MIGRATION_SANDBOX_FAULTS)",
    )

    @contextmanager
    def client(self) -> Iterator[PipedriveClient]:
        if self.base_url:
            if not self.api_token:
                raise dg.Failure("PIPEDRIVE_BASE_URL is set but PIPEDRIVE_API_TOKEN is not")
            http = make_http_client(self.base_url, self.api_token, timeout=self.timeout_seconds)
        else:
            world = sandbox.SandboxSettings.from_env().with_faults(self.sandbox_faults)
            http = make_http_client(
                sandbox.PIPEDRIVE_URL,
                self.api_token or world.pipedrive_token,
                transport=sandbox.pipedrive_transport(world),
                timeout=self.timeout_seconds,
            )
        try:
            yield PipedriveClient(
                http,
                page_size=self.page_size,
                max_retries=self.max_retries,
                backoff=self.retry_backoff_seconds,
            )
        finally:
            http.close()


class AmoCrmResource(dg.ConfigurableResource):
    """The amoCRM account we write to; no ``base_url`` means the sandbox.

    ``base_url`` is the account host, e.g. ``https://acme.amocrm.ru`` (the client adds
    ``/api/v4``). The token travels only in the ``Authorization: Bearer`` header. Every client
    of every process shares the account's rate limit (:mod:`migration_pipeline.limiter`);
    ``batch_size`` and ``complex_batch_size`` are for the loader, which chooses its batches.
    """

    base_url: str | None = Field(default=None, description="https://<subdomain>.amocrm.ru")
    access_token: str | None = Field(
        default=None, description="bind with EnvVar('AMOCRM_ACCESS_TOKEN')"
    )
    requests_per_second: float | None = Field(
        default=None,
        gt=0,
        description="account-wide budget of all processes together; unset: 7 for a real "
        "account, the sandbox's own limit (MIGRATION_SANDBOX_AMOCRM_RPS) for the sandbox",
    )
    batch_size: int = Field(default=250, ge=1, le=250, description="items per write (max 250)")
    complex_batch_size: int = Field(
        default=50, ge=1, le=50, description="leads per /leads/complex call (max 50)"
    )
    timeout_seconds: float = 30.0
    max_retries: int = Field(
        default=6, ge=0, description="retries of a 429, a failed read or an unsent request"
    )
    retry_backoff_seconds: float = Field(default=0.5, gt=0, description="first back-off; doubles")
    sandbox_faults: str | None = Field(
        default=None,
        description="sandbox only: a fault spec for this run (overrides MIGRATION_SANDBOX_FAULTS)",
    )

    @contextmanager
    def client(self) -> Iterator[amocrm.AmoCrmClient]:
        """A client with its own connections and the account's limiter, shared process-wide."""
        if self.base_url:
            if not self.access_token:
                raise dg.Failure("AMOCRM_BASE_URL is set but AMOCRM_ACCESS_TOKEN is not")
            base_url = self.base_url
            rate = self.requests_per_second or AMOCRM_REQUESTS_PER_SECOND
            http = amocrm.make_http_client(
                base_url, self.access_token, timeout=self.timeout_seconds
            )
        else:
            world = sandbox.SandboxSettings.from_env().with_faults(self.sandbox_faults)
            base_url = sandbox.AMOCRM_URL
            rate = self.requests_per_second or world.amocrm_rps
            http = amocrm.make_http_client(
                base_url,
                self.access_token or world.amocrm_token,
                transport=sandbox.amocrm_transport(world),
                timeout=self.timeout_seconds,
            )
        try:
            yield amocrm.AmoCrmClient(
                http,
                limiter=account_limiter(base_url, rate),
                max_retries=self.max_retries,
                backoff=self.retry_backoff_seconds,
            )
        finally:
            http.close()
