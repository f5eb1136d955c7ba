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
from .clients.pipedrive import PipedriveClient, make_http_client
from .db import Warehouse

__all__ = ["PipedriveResource", "Warehouse"]


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
