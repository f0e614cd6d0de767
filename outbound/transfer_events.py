"""An in-process feed of transfer events (offers, joins, results) for agent consoles.

`publish_after_commit` is called by `outbound.transfers` for each change: the event goes out when
the change's transaction commits, and never if it rolls back, so a console is never offered a
transfer the database does not hold. A console subscribes and reads
events as they come (the web layer streams them as server-sent events). Events carry a
sequence number so a reconnecting console can ask for what it missed (`since`); the last
`HISTORY` events are kept. Nothing here is a record of truth: the `transfers` table is.

Thread-safe (webhooks run on worker threads); subscribers get their own bounded queue, and a
subscriber that stops reading loses its oldest events rather than blocking the webhooks.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

HISTORY = 500
QUEUE_SIZE = 200


@dataclass(frozen=True)
class TransferEvent:
    seq: int
    kind: str                    # offer | accepted | declined | joined | ended
    transfer_id: int
    agent_id: int | None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "transfer_id": self.transfer_id,
                "agent_id": self.agent_id, "data": self.data}


class Subscription:
    def __init__(self, broadcaster: TransferBroadcaster, agent_id: int | None):
        self.agent_id = agent_id
        self._queue: queue.Queue[TransferEvent] = queue.Queue(QUEUE_SIZE)
        self._broadcaster = broadcaster

    def wants(self, event: TransferEvent) -> bool:
        return self.agent_id is None or event.agent_id in (None, self.agent_id)

    def put(self, event: TransferEvent) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()           # drop the oldest, never block a webhook
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> TransferEvent | None:
        """The next event, or None when `timeout` seconds pass without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._broadcaster.unsubscribe(self)


class TransferBroadcaster:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._history: deque[TransferEvent] = deque(maxlen=HISTORY)
        self._subscribers: list[Subscription] = []

    def publish(self, kind: str, transfer_id: int, agent_id: int | None = None,
                data: dict[str, Any] | None = None) -> TransferEvent:
        with self._lock:
            self._seq += 1
            event = TransferEvent(self._seq, kind, transfer_id, agent_id, dict(data or {}))
            self._history.append(event)
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            if subscription.wants(event):
                subscription.put(event)
        return event

    def subscribe(self, agent_id: int | None = None) -> Subscription:
        """Events for `agent_id` (and those for no agent in particular); None: every event."""
        subscription = Subscription(self, agent_id)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def since(self, seq: int, agent_id: int | None = None) -> list[TransferEvent]:
        with self._lock:
            events = [event for event in self._history if event.seq > seq]
        return [event for event in events
                if agent_id is None or event.agent_id in (None, agent_id)]


# The process's feed; tests may make their own TransferBroadcaster.
broadcaster = TransferBroadcaster()


def publish(kind: str, transfer_id: int, agent_id: int | None = None,
            data: dict[str, Any] | None = None) -> TransferEvent:
    return broadcaster.publish(kind, transfer_id, agent_id, data)


_PENDING = "outbound.transfer_events.pending"
_LISTENING = "outbound.transfer_events.listening"


def publish_after_commit(session: Session, kind: str, transfer_id: int, agent_id: int | None = None,
                         data: dict[str, Any] | None = None) -> None:
    """Publish once `session`'s transaction commits; forget it if the transaction rolls back."""
    if not session.info.get(_LISTENING):
        event.listen(session, "after_commit", _publish_pending)
        event.listen(session, "after_rollback", _drop_pending)
        session.info[_LISTENING] = True
    session.info.setdefault(_PENDING, []).append((kind, transfer_id, agent_id, dict(data or {})))


def _publish_pending(session: Session) -> None:
    for kind, transfer_id, agent_id, data in session.info.pop(_PENDING, []):
        publish(kind, transfer_id, agent_id, data)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
