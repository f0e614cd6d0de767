"""One thread per process writes carrier events, committing them in groups.

A single event's cost is dominated by its commit (a disk flush), and SQLite has one writer
anyway. So the webhook routes hand their events to this thread, which takes whatever has queued
up meanwhile (up to MAX_BATCH), applies the database-only kinds in one transaction and commits
once, then answers each request. Every request is still answered only after its event is stored,
and events keep their arrival order.

A batch that fails (an unknown call, an invalid parameter, a database error) is rolled back as a
whole and its events are handled again one by one, so each gets its own result or error and one
bad event never costs the others theirs. Inbound texts and gathers are always handled alone: a
reply may be sent between their commits.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine

from outbound.carrier_events import (
    BATCHABLE_KINDS, PendingEvent, handle_webhook, handle_webhook_batch,
)
from outbound.db import session_scope

log = logging.getLogger(__name__)

MAX_BATCH = 200


@dataclass(frozen=True)
class _Queued:
    event: PendingEvent
    adapter: object
    future: Future


class EventWriter:
    def __init__(self, engine: Callable[[], Engine]):
        self._engine = engine               # asked per batch: tests switch databases
        self._queue: queue.SimpleQueue[_Queued] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)
        self._thread.start()

    def submit(self, event: PendingEvent, adapter=None) -> Future:
        future: Future = Future()
        self._queue.put(_Queued(event, adapter, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for run in _runs(batch):
                self._write(run)

    def _write(self, run: list[_Queued]) -> None:
        if len(run) > 1:
            try:
                with session_scope(self._engine(), expire_on_commit=False) as session:
                    results = handle_webhook_batch(session, [item.event for item in run])
            except Exception:
                log.debug("webhook batch of %d rolled back; handling its events one by one", len(run),
                          exc_info=True)
            else:
                for item, result in zip(run, results):
                    item.future.set_result(result)
                return
        for item in run:
            self._write_one(item)

    def _write_one(self, item: _Queued) -> None:
        try:
            with session_scope(self._engine(), expire_on_commit=False) as session:
                result = handle_webhook(session, item.event.kind, item.event.params, item.event.at,
                                        adapter=item.adapter)
        except Exception as error:          # handed to the request, which answers 404/422/500
            item.future.set_exception(error)
        else:
            item.future.set_result(result)


def _runs(batch: list[_Queued]) -> list[list[_Queued]]:
    """Consecutive batchable events together; every other event alone, in arrival order."""
    runs: list[list[_Queued]] = []
    for item in batch:
        if item.event.kind in BATCHABLE_KINDS and runs and runs[-1][-1].event.kind in BATCHABLE_KINDS:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
