"""Reading the dashboard's Server-Sent Events stream (pgq.web.live) in a test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


async def next_snapshot(stream: AsyncIterator[str], timeout: float = 5.0) -> dict[str, Any]:
    """The next ``snapshot`` event's data, skipping keepalives and the retry line; each chunk
    must come within ``timeout`` seconds."""
    while True:
        chunk = await asyncio.wait_for(stream.__anext__(), timeout)
        if chunk.startswith("event: snapshot"):
            return dict(json.loads(chunk.split("data: ", 1)[1]))
