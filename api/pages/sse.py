"""Server-sent events for the pages: framing, and a polling stream that pushes only changes.

htmx's SSE extension swaps an event's data (an HTML fragment) into the element listening for that
event name, so every event here carries rendered, escaped HTML.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

HEARTBEAT_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}   # no proxy buffering


def sse_event(event: str, html: str) -> str:
    # A data field ends at a newline, so each line of the fragment is its own `data:` line; the
    # client joins them back with newlines.
    lines = html.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def poll_changes(request: Request, event: str, render_now: Callable[[], str], *,
                       interval: float, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    """Render every `interval` seconds (in a worker thread: it queries the database) and send
    the fragment when it changed; a comment line keeps idle connections open through proxies."""
    last, quiet = None, 0.0
    while not await request.is_disconnected():
        html = await run_in_threadpool(render_now)
        if html != last:
            last, quiet = html, 0.0
            yield sse_event(event, html)
        elif quiet >= heartbeat:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(interval)
        quiet += interval


def sse_response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
