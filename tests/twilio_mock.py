"""A Twilio-shaped carrier for crash tests: Twilio's REST paths for calls and messages (create,
fetch, and the lists by To and StartTime/DateSent the reaper uses), answered with the JSON the
real `twilio` SDK parses, on a clock the test controls. Point `TwilioAdapter(api_base=...)` at it.

It sends no webhooks (as when every callback is lost): the engine learns outcomes only by asking.
A call is `queued` (no StartTime, as Twilio gives a queued call none) for `queue_seconds`, then
`completed`; a message is `queued` (no DateSent) as long, then `delivered`.
"""
from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class _Resource:
    sid: str
    kind: str                 # call | message
    to: str
    from_: str
    body: str | None
    created: datetime


@dataclass
class TwilioMock:
    clock: Callable[[], datetime]
    queue_seconds: float = 1.0
    resources: dict[str, _Resource] = field(default_factory=dict)
    creates: list[_Resource] = field(default_factory=list)      # every create, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def create(self, kind: str, form: dict[str, str]) -> dict:
        with self.lock:
            prefix = "CA" if kind == "call" else "SM"
            resource = _Resource(sid=f"{prefix}{next(self._numbers):032x}", kind=kind, to=form["To"],
                                 from_=form["From"], body=form.get("Body"), created=self.clock())
            self.resources[resource.sid] = resource
            self.creates.append(resource)
        return self.render(resource)

    def started(self, resource: _Resource) -> datetime | None:
        at = resource.created + timedelta(seconds=self.queue_seconds)
        return at if at <= self.clock() else None

    def render(self, resource: _Resource) -> dict:
        started = self.started(resource)
        stamp = format_datetime(started) if started else None
        common = {"sid": resource.sid, "to": resource.to, "from": resource.from_, "account_sid": "AC" + "1" * 32,
                  "date_created": format_datetime(resource.created), "api_version": "2010-04-01"}
        if resource.kind == "call":
            return {**common, "status": "completed" if started else "queued", "start_time": stamp,
                    "direction": "outbound-api", "duration": "12" if started else None, "answered_by": None}
        return {**common, "status": "delivered" if started else "queued", "date_sent": stamp,
                "body": resource.body, "num_segments": "1", "direction": "outbound-api"}

    def listing(self, kind: str, query: dict[str, str]) -> list[dict]:
        after = query.get("StartTime>") or query.get("DateSent>")
        after_at = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        found = []
        for resource in list(self.resources.values()):
            if resource.kind != kind or resource.to != query.get("To", resource.to):
                continue
            started = self.started(resource)
            if query.get("Status") == "queued":
                if started is None:
                    found.append(resource)
            elif after_at is None or (started is not None and started >= after_at):
                found.append(resource)
        return [self.render(resource) for resource in found]


@contextmanager
def serving(mock: TwilioMock) -> Iterator[str]:
    """Serve `mock` on a free local port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> tuple[str, str | None]:
            parts = urlsplit(self.path).path.split("/")      # /2010-04-01/Accounts/AC…/Calls[/SID].json
            resource = parts[4].removesuffix(".json")
            sid = parts[5].removesuffix(".json") if len(parts) > 5 else None
            return ("call" if resource == "Calls" else "message"), sid

        def do_POST(self) -> None:
            kind, _sid = self._route()
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self._reply(201, mock.create(kind, form))

        def do_GET(self) -> None:
            kind, sid = self._route()
            if sid is not None:
                resource = mock.resources.get(sid)
                if resource is None:
                    self._reply(404, {"code": 20404, "message": "The requested resource was not found",
                                      "status": 404})
                    return
                self._reply(200, mock.render(resource))
                return
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            key = "calls" if kind == "call" else "messages"
            self._reply(200, {key: mock.listing(kind, query), "next_page_uri": None, "page": 0,
                              "page_size": 50, "uri": self.path})

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
