"""How a carrier event's handler reads and writes its bookkeeping: one event at a time, or a batch.

The handlers in `outbound.carrier_events` decide what an event does to its attempt; the recorder
they are given does the claim (once per carrier id and event key), the attempt lookup and lock,
the stored result and the audit event:

- `SingleRecorder` writes each step at once: the path for one webhook, and for anything unusual.
- `BatchRecorder` serves a whole batch of status events from two reads made up front (the
  batch's attempts, locked, and their events on file) and writes everything in one go at the
  end: the claims as one multi-row INSERT, the audit events as one chain append, the attempts
  in one flush. What it cannot answer from those reads (an unknown carrier id, a sequence-number
  tie) raises `NotBatchable`; the caller then rolls back and handles the events one by one.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlmodel import Session

from outbound import audit
from outbound.carrier_event_log import (
    WebhookResult, attempt_change_event, attempt_id_for, claim_event, lock_attempt, result_from_payload,
    save_result, stored_result,
)
from outbound.models import Attempt, CarrierEvent


class NotBatchable(RuntimeError):
    """This event needs the one-at-a-time path."""


class SingleRecorder:
    def __init__(self, session: Session):
        self.session = session

    def attempt_id_for(self, carrier_id: str) -> int | None:
        return attempt_id_for(self.session, carrier_id)

    def claim(self, carrier_id: str, event_key: str, *, attempt_id: int | None, params: dict[str, str],
              at: datetime) -> bool:
        return claim_event(self.session, carrier_id, event_key, attempt_id=attempt_id, params=params, at=at)

    def stored_result(self, carrier_id: str, event_key: str) -> WebhookResult | None:
        return stored_result(self.session, carrier_id, event_key)

    def lock_attempt(self, attempt_id: int) -> Attempt:
        return lock_attempt(self.session, attempt_id)

    def save_result(self, result: WebhookResult, params: dict[str, str]) -> None:
        save_result(self.session, result, params)

    def audit_change(self, attempt: Attempt, before: dict, *, event_key: str, at: datetime) -> None:
        self.session.flush()
        audit.append(self.session, **asdict(attempt_change_event(attempt, before, event_key=event_key, at=at)))

    def applied_sequence(self, attempt: Attempt) -> int | None:
        """The SequenceNumber of the status event that set the attempt's current carrier status."""
        if attempt.carrier_id is None or attempt.carrier_status is None:
            return None
        payload = self.session.execute(select(CarrierEvent.payload).where(
            CarrierEvent.carrier_id == attempt.carrier_id,
            CarrierEvent.event_key == f"status:{attempt.carrier_status}")).scalar_one_or_none()
        try:
            return int(payload["params"]["SequenceNumber"])
        except (TypeError, KeyError, ValueError):
            return None

    def write_pending(self) -> None:
        """Nothing is pending: every step was written when it happened."""


# Built once: building a statement costs about as much as running it on a batch of a few events.
_BATCH_ATTEMPTS = (select(Attempt).where(Attempt.carrier_id.in_(bindparam("carrier_ids", expanding=True)))
                   .order_by(Attempt.id).with_for_update().execution_options(populate_existing=True))
_BATCH_EVENTS = select(CarrierEvent.carrier_id, CarrierEvent.event_key, CarrierEvent.payload).where(
    CarrierEvent.carrier_id.in_(bindparam("carrier_ids", expanding=True)))


class BatchRecorder:
    def __init__(self, session: Session, carrier_ids: list[str]):
        self.session = session
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            # The write lock first, so what is read below cannot change before the batch commits.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        wanted = {"carrier_ids": sorted(set(carrier_ids))}
        self.attempts = {attempt.carrier_id: attempt
                         for attempt in session.execute(_BATCH_ATTEMPTS, wanted).scalars()}
        self.by_id = {attempt.id: attempt for attempt in self.attempts.values()}
        self.on_file = {(cid, key): payload for cid, key, payload in session.execute(_BATCH_EVENTS, wanted)}
        self.new_events: dict[tuple[str, str], dict] = {}
        self.audit_events: list[audit.NewEvent] = []

    def attempt_id_for(self, carrier_id: str) -> int:
        attempt = self.attempts.get(carrier_id)
        if attempt is None:
            raise NotBatchable(f"no attempt carries {carrier_id}")
        return attempt.id

    def claim(self, carrier_id: str, event_key: str, *, attempt_id: int | None, params: dict[str, str],
              at: datetime) -> bool:
        key = (carrier_id, event_key)
        if key in self.on_file or key in self.new_events:
            return False
        self.new_events[key] = {"carrier_id": carrier_id, "event_key": event_key, "attempt_id": attempt_id,
                                "received_at": at, "payload": {"params": params, "result": None}}
        return True

    def stored_result(self, carrier_id: str, event_key: str) -> WebhookResult | None:
        key = (carrier_id, event_key)
        payload = self.new_events[key]["payload"] if key in self.new_events else self.on_file.get(key)
        return result_from_payload(carrier_id, event_key, payload)

    def lock_attempt(self, attempt_id: int) -> Attempt:
        return self.by_id[attempt_id]

    def save_result(self, result: WebhookResult, params: dict[str, str]) -> None:
        key = (result.carrier_id, result.event_key)
        payload = {"params": params, "result": result.as_dict()}
        if key in self.new_events:
            self.new_events[key]["payload"] = payload
        else:                               # written already, before a retry was scheduled
            save_result(self.session, result, params)
            self.on_file[key] = payload

    def audit_change(self, attempt: Attempt, before: dict, *, event_key: str, at: datetime) -> None:
        self.audit_events.append(attempt_change_event(attempt, before, event_key=event_key, at=at))

    def applied_sequence(self, attempt: Attempt) -> int | None:
        raise NotBatchable("a sequence-number tie reads events this batch may not have written yet")

    def write_pending(self) -> None:
        """Write what the batch has done so far: attempts, event claims and results, audit events."""
        self.session.flush()
        if self.new_events:
            self.session.execute(insert(CarrierEvent.__table__), list(self.new_events.values()))
            self.on_file.update({key: row["payload"] for key, row in self.new_events.items()})
            self.new_events = {}
        audit.append_many(self.session, self.audit_events)
        self.audit_events = []
