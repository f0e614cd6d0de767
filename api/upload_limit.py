"""Request bodies larger than the list limit are refused before they are read.

A contact-list upload is the largest body the API takes, so OUTBOUND_MAX_LIST_BYTES bounds every
request. A body that announces its length is answered 413 at once, naming the limit, without
spooling a byte to disk. One sent without a length (chunked) is counted as it arrives and cut
off at the limit with the same answer.
"""
from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbound.lists import max_list_bytes

# Multipart boundaries, part headers and form fields around the file itself.
MULTIPART_SLACK_BYTES = 64 * 1024


class UploadLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_list_bytes()
        announced = _content_length(scope)
        if announced is not None and announced > limit + MULTIPART_SLACK_BYTES:
            await _too_large(send, limit, announced)
            return
        await self.app(scope, _counting(receive, limit + MULTIPART_SLACK_BYTES, limit), send)


def _counting(receive: Receive, cutoff: int, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cutoff:
                raise HTTPException(413, detail=_message(limit, seen, exact=False))
        return message

    return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _message(limit: int, size: int, *, exact: bool = True) -> str:
    seen = f"the upload is {size:,} bytes" if exact else f"the upload is over {size:,} bytes"
    return (f"{seen}, over the limit of {limit:,} bytes for a contact list (OUTBOUND_MAX_LIST_BYTES): "
            "split the file (importing the parts one after another is safe, duplicates are skipped) "
            "or raise the limit")


async def _too_large(send: Send, limit: int, size: int) -> None:
    body = json.dumps({"detail": {"code": "file_too_large", "message": _message(limit, size)}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
