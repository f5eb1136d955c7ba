"""In-process transport: an ``httpx.Client`` talks to a fake without a socket.

httpx's own ``MockTransport`` would do, but a fake must also be able to *not* answer (a
timeout, a response lost after the server committed). This transport turns the handler's
:class:`~.http.Drop` into the exceptions a real network gives, on httpx's own line between
"never processed" and "maybe applied".
"""

from __future__ import annotations

import httpx

from .http import Drop, Handler


class SandboxTransport(httpx.BaseTransport):
    """Calls ``handler`` for every request; thread-safe as long as the handler is."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        try:
            response = self.handler(request)
        except Drop as drop:
            if drop.kind == "lost":
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                ) from None
            raise httpx.ReadTimeout("The read operation timed out", request=request) from None
        # The body is already in memory; hand httpx a fresh stream so it reads it as it would
        # a network response.
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=response.content,
            request=request,
        )
