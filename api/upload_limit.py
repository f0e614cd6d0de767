"""Request bodies larger than their limit are refused before they are read.

A contact-list upload is the largest body the API takes, so OUTBOUND_MAX_LIST_BYTES bounds every
request. Twilio's webhooks (everything under /v1/twilio/ and /v1/conference/) are held to
WEBHOOK_MAX_BYTES instead: Twilio's own bodies are a few kilobytes, and these routes are open to
anyone until the signature over the body has been checked, so an unsigned gigabyte must be
refused before it is read, not after. A body that announces its length is answered 413 at once,
naming the limit, without spooling a byte to disk. One sent without a length (chunked) is
counted as it arrives and cut off at the limit with the same answer.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbound.lists import max_list_bytes

# Multipart boundaries, part headers and form fields around the file itself.
MULTIPART_SLACK_BYTES = 64 * 1024
# Twilio's status callbacks and gathers are 1-3 KB; a long speech transcript stays well under this.
WEBHOOK_MAX_BYTES = 64 * 1024
WEBHOOK_PREFIXES = ("/v1/twilio/", "/v1/conference/")


class _Limit(NamedTuple):
    limit: int            # what the message names
    cutoff: int           # what is refused: the limit plus the room a multipart wrapper needs
    code: str
    describe: Callable[..., str]


class UploadLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _limit_for(scope["path"])
        announced = _content_length(scope)
        if announced is not None and announced > limit.cutoff:
            await _too_large(send, limit.code, limit.describe(limit.limit, announced))
            return
        await self.app(scope, _counting(receive, limit), send)


def _limit_for(path: str) -> _Limit:
    if path.startswith(WEBHOOK_PREFIXES):
        return _Limit(WEBHOOK_MAX_BYTES, WEBHOOK_MAX_BYTES, "body_too_large", _webhook_message)
    limit = max_list_bytes()
    return _Limit(limit, limit + MULTIPART_SLACK_BYTES, "file_too_large", _message)


def _counting(receive: Receive, limit: _Limit) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit.cutoff:
                raise HTTPException(413, detail=limit.describe(limit.limit, seen, exact=False))
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


def _webhook_message(limit: int, size: int, *, exact: bool = True) -> str:
    seen = f"the body is {size:,} bytes" if exact else f"the body is over {size:,} bytes"
    return f"{seen}, over the limit of {limit // 1024} KB ({limit:,} bytes) for a Twilio webhook"


async def _too_large(send: Send, code: str, message: str) -> None:
    body = json.dumps({"detail": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
