"""Failed sign-ins slow a password guesser down: after too many, the name (or the address they
come from) must wait.

Counted per user name (case-folded, so `Mia` and `mia` share a budget) and, more loosely, per
client address, over a sliding window. A success clears the name's count. The counts live in
the process (one per app): a restart forgets them, and each uvicorn worker counts on its own,
which only multiplies a guesser's budget by the number of workers.
"""
from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta

NAME_FAILURES = 5                 # per user name, within WINDOW
ADDRESS_FAILURES = 20             # per client address (several people may share one)
WINDOW = timedelta(minutes=15)
MAX_KEYS = 10_000                 # bounded memory under a spray of made-up names


class LoginThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def wait(self, name: str, address: str | None, now: datetime) -> timedelta | None:
        """How long this sign-in must wait, or None when it may be tried now."""
        with self._lock:
            waits = [self._wait(key, limit, now) for key, limit in _keys(name, address)]
        waits = [wait for wait in waits if wait is not None]
        return max(waits) if waits else None

    def failed(self, name: str, address: str | None, now: datetime) -> None:
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._forget_old(now)
            for key, _limit in _keys(name, address):
                self._failures.setdefault(key, deque()).append(now)

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

    def _forget_old(self, now: datetime) -> None:
        stale = [key for key, failures in self._failures.items() if not failures or failures[-1] <= now - WINDOW]
        for key in stale:
            del self._failures[key]
        if len(self._failures) >= MAX_KEYS:      # all recent: a spray; start over rather than grow
            self._failures.clear()


def _name_key(name: str) -> str:
    return f"name:{name.casefold()}"


def _keys(name: str, address: str | None) -> list[tuple[str, int]]:
    keys = [(_name_key(name), NAME_FAILURES)]
    if address:
        keys.append((f"address:{address}", ADDRESS_FAILURES))
    return keys
