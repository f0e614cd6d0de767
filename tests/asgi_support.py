"""An ASGI wrapper for the tests that check how much of a request body the app reads."""
from __future__ import annotations


class ReadCounter:
    """Wraps the app and counts the body bytes it pulled from the client."""

    def __init__(self, app) -> None:
        self.app, self.bytes_read = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.bytes_read += len(message.get("body", b""))
            return message
        await self.app(scope, counted, send)
