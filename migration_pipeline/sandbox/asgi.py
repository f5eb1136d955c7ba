"""Serve a fake's handler over real HTTP as a plain ASGI application (run by uvicorn).

A :class:`~.http.Drop` becomes what a real network does: ``lost`` sends the status line and
headers, then cuts the connection before the body (the client sees a dropped connection after
the server committed); ``timeout`` holds the request for ``timeout_seconds`` and then cuts it.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx

from .http import Drop, Handler

Scope = dict[str, Any]


class _Cut(Exception):  # noqa: N818
    """Raised after the response has started, so the server closes the connection."""


class _HideCuts(logging.Filter):
    """uvicorn logs every exception an app raises; a deliberate cut is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Cut))


_HIDE_CUTS = _HideCuts()


def asgi_app(handler: Handler, *, timeout_seconds: float = 30.0) -> Any:
    """An ASGI app serving ``handler``; ``timeout_seconds`` is how long a ``timeout`` fault
    holds the request before cutting it (longer than the client's timeout)."""
    logging.getLogger("uvicorn.error").addFilter(_HIDE_CUTS)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        host = dict(scope["headers"]).get(b"host", b"localhost").decode()
        url = f"{scope.get('scheme', 'http')}://{host}{scope['path']}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        request = httpx.Request(
            scope["method"],
            url,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            content=body,
        )
        try:
            response = await anyio.to_thread.run_sync(handler, request)
        except Drop as drop:
            if drop.kind == "timeout":
                await anyio.sleep(timeout_seconds)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            raise _Cut(drop.kind) from None
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-length", "transfer-encoding")
        ]
        headers.append((b"content-length", str(len(response.content)).encode()))
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.content})

    return app
