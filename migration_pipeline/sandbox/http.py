"""The fakes' common HTTP core: a fake is a plain function from ``httpx.Request`` to
``httpx.Response``, routed by method and path.

The same handler serves two ways: in-process through :mod:`.transport` (the embedded default,
no port) and over real HTTP through :mod:`.asgi` under uvicorn (``sandbox serve``). A handler
that must not answer (a timeout, a response lost after commit) raises :class:`Drop`; each
adapter turns that into what a client of the real API would see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class Drop(Exception):  # noqa: N818 - it is a signal to the adapters, not an error of ours
    """No answer for this request.

    ``kind`` is ``"timeout"`` (nothing was processed) or ``"lost"`` (the server committed the
    request, then the answer was lost). In-process this becomes ``httpx.ReadTimeout`` or
    ``httpx.RemoteProtocolError``; over HTTP the connection is held or cut.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def json_response(
    status: int,
    payload: Any,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return httpx.Response(
        status,
        content=body,
        headers={"content-type": f"{content_type}; charset=utf-8", **(headers or {})},
    )


def html_response(status: int, html: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=html.encode(),
        headers={"content-type": "text/html; charset=utf-8", **(headers or {})},
    )


def read_json(request: httpx.Request) -> Any:
    """The request body as JSON; raises ``ValueError`` on a body that is not JSON."""
    body = request.read()
    return json.loads(body) if body else None


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: Callable[..., httpx.Response]


class Router:
    """Routes ``(method, path)`` to an endpoint called as ``endpoint(request, **path_params)``.

    Patterns use ``{name}`` for a path segment and ``{name:int}`` for an integer segment.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, endpoint: Callable[..., httpx.Response]) -> None:
        regex = re.sub(
            r"\{(\w+)(?::int)?\}",
            lambda m: (
                f"(?P<{m.group(1)}>[0-9]+)" if ":int" in m.group(0) else f"(?P<{m.group(1)}>[^/]+)"
            ),
            path,
        )
        self.routes.append(Route(method.upper(), re.compile(f"^{regex}/?$"), endpoint))

    def route(
        self, method: str, *paths: str
    ) -> Callable[[Callable[..., httpx.Response]], Callable[..., httpx.Response]]:
        def decorate(endpoint: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
            for path in paths:
                self.add(method, path, endpoint)
            return endpoint

        return decorate

    def resolve(
        self, method: str, path: str
    ) -> tuple[Callable[..., httpx.Response], dict[str, Any]] | None:
        """The endpoint and its path parameters (ints converted), or None. A path that matches
        with another method resolves to None as well; callers answer 404/405 in their API's shape."""
        for route in self.routes:
            match = route.pattern.match(path)
            if match and route.method == method.upper():
                params = {
                    name: int(value)
                    if value.isdigit() and f"(?P<{name}>[0-9]+)" in route.pattern.pattern
                    else value
                    for name, value in match.groupdict().items()
                }
                return route.endpoint, params
        return None

    def allows(self, path: str) -> bool:
        """Whether any method serves this path (to tell 405 from 404)."""
        return any(route.pattern.match(path) for route in self.routes)
