"""Failed sign-ins slow a password guesser down: after too many, the name (or the address they
come from) must wait.

Counted per user name (case-folded, so `Mia` and `mia` share a budget) and, more loosely, per
client address, over a sliding window. A success clears the name's count. The counts live in
the process (one per app): a restart forgets them, and each uvicorn worker counts on its own,
which only multiplies a guesser's budget by the number of workers.

The client address is the connection's peer; `outbound serve` believes X-Forwarded-For only from
OUTBOUND_TRUSTED_PROXIES, so a client cannot pick its own address.

At most MAX_KEYS counts are kept. Past that, the least recently failing count that is still
under its limit is dropped first (a spray of made-up names is a crowd of such counts), and one
that has reached its limit only when every count has: a spray of 10,000 made-up names no longer
clears the count of the name being guessed, and the newest offenders are the last to go.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta

NAME_FAILURES = 5                 # per user name, within WINDOW
ADDRESS_FAILURES = 20             # per client address (several people may share one)
WINDOW = timedelta(minutes=15)
MAX_KEYS = 10_000                 # bounded memory under a spray of made-up names


class LoginThrottle:
    def __init__(self) -> None:
        # Least recently failing first: a failure moves its keys to the end.
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, name: str, address: str | None, now: datetime) -> timedelta | None:
        """How long this sign-in must wait, or None when it may be tried now."""
        with self._lock:
            waits = [self._wait(key, limit, now) for key, limit in _keys(name, address)]
        waits = [wait for wait in waits if wait is not None]
        return max(waits) if waits else None

    def failed(self, name: str, address: str | None, now: datetime) -> None:
        with self._lock:
            keys = [key for key, _limit in _keys(name, address)]
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:
                self._forget_one(now, keep=keys)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(_name_key(name), None)

    def _wait(self, key: str, limit: int, now: datetime) -> timedelta | None:
        failures = self._failures.get(key)
        if not failures:
            return None
        while failures and failures[0] <= now - WINDOW:
            failures.popleft()
        if len(failures) < limit:
            return None
        return failures[-limit] + WINDOW - now

    def _forget_one(self, now: datetime, keep: list[str]) -> None:
        """Drop the least recently failing count that is stale or under its limit; only when
        every count is at its limit, the least recent of them. Never one of `keep`, the counts
        just added to: the newest offender must be able to reach its limit."""
        oldest = None
        for key, failures in self._failures.items():
            if key in keep:
                continue
            oldest = oldest or key
            if sum(1 for at in failures if at > now - WINDOW) < _limit_of(key):
                del self._failures[key]
                return
        if oldest is not None:
            del self._failures[oldest]


def _name_key(name: str) -> str:
    return f"name:{name.casefold()}"


def _limit_of(key: str) -> int:
    return NAME_FAILURES if key.startswith("name:") else ADDRESS_FAILURES


def _keys(name: str, address: str | None) -> list[tuple[str, int]]:
    keys = [(_name_key(name), NAME_FAILURES)]
    if address:
        keys.append((f"address:{address}", ADDRESS_FAILURES))
    return keys
