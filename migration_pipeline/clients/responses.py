"""What both clients do the same way with an HTTP answer: read its body and space retries."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

MAX_BACKOFF = 30.0
NOT_JSON = object()
"""What :func:`json_body` returns for a body that is not JSON (``None`` is valid JSON)."""


def json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both
        return NOT_JSON


def looks_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return "html" in content_type or response.content.lstrip()[:1] == b"<"


def backoff_delay(base: float, attempt: int) -> float:
    """Exponential back-off with "equal jitter": parallel workers spread out, yet no retry
    comes back at once."""
    ceiling = min(base * 2**attempt, MAX_BACKOFF)
    return ceiling / 2 + random.uniform(0, ceiling / 2)
