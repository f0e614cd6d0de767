"""Inbound opt-outs made durable on disk before they are answered, whatever the database is doing.

A STOP that arrives while the database is locked, slow or gone must not be lost: Twilio does not
retry an inbound message that got an error, and a consumer who pressed 9 is not going to call
back to press it again. So the webhook first appends the opt-out to this journal (one JSON line,
the file fsync'd, and its directory too when the file is new), then tries the database for a
short while. Whatever the database does, the answer is 2xx.

Two append-only files in the data directory:

    opt-outs.jsonl          one line per inbound opt-out: everything needed to store it exactly
                            as the normal path would (phone, channels, via, carrier ids, the raw
                            form parameters, received at, the text heard or read)
    opt-outs.applied.jsonl  one line per record stored in the database, by key

A record is *pending* until its key is in the applied file. Until then:

- dispatch treats its number as revoked and on the internal list (`pending_opt_outs`, read by
  `scheduler.facts`), so the gate blocks it exactly as it will once the revocation is stored;
- the worker and the API process apply it (`apply_pending`, every few seconds and at start) as
  soon as the database answers, through the same code the webhook uses, so a text opt-out gets
  its one confirmation only then.

Applying is idempotent by key (the MessageSid; the CallSid and turn), and every application,
inline or by a job in another process, holds one `flock` on `opt-outs.lock` and looks at the
applied file again under it: two processes never store the same record at once. A crash after
the database commit and before the applied line re-applies the record, which the carrier-event
claim (SMS) and the revocation's own duplicate check (same phone, channels, via, received at)
turn into nothing.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from consent.registry_store import fsync_dir

log = logging.getLogger(__name__)

JOURNAL_NAME = "opt-outs.jsonl"
APPLIED_NAME = "opt-outs.applied.jsonl"
LOCK_NAME = "opt-outs.lock"


class JournalError(OSError):
    """The journal could not be written or read; the message names the file."""


@dataclass(frozen=True)
class JournaledOptOut:
    """One inbound opt-out as received, before the database has it."""

    key: str                         # sms:<MessageSid> | call:<CallSid>:turn:<n>
    kind: str                        # sms | call
    phone: str | None                # E.164; a call's may be None until its attempt is read
    channels: tuple[str, ...]        # what it revokes: voice and sms, as the normal path does
    via: str                         # consent.ledger_io.RevocationVia value
    received_at: datetime
    carrier_id: str                  # MessageSid or CallSid
    text: str                        # the body texted, the words heard, or the keys pressed
    params: dict[str, str] = field(default_factory=dict)   # the signed form parameters
    attempt_id: int | None = None    # a call's attempt
    turn: int | None = None          # a call's gather turn

    def as_json(self) -> str:
        data = asdict(self)
        data["received_at"] = self.received_at.astimezone(timezone.utc).isoformat()
        data["channels"] = list(self.channels)
        return json.dumps(data, ensure_ascii=True, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> JournaledOptOut:
        data = json.loads(line)
        data["received_at"] = datetime.fromisoformat(data["received_at"])
        data["channels"] = tuple(data["channels"])
        return cls(**data)


# --- writing ----------------------------------------------------------------------------------

def append(data_dir: Path, record: JournaledOptOut) -> None:
    """Add `record` and return only once it is on disk (file fsync'd; directory too if new)."""
    _append_line(Path(data_dir) / JOURNAL_NAME, record.as_json())


def mark_applied(data_dir: Path, key: str, detail: str, at: datetime) -> None:
    """Say `key` is stored in the database (what was stored, and when)."""
    line = json.dumps({"key": key, "detail": detail, "applied_at": at.astimezone(timezone.utc).isoformat()},
                      ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    _append_line(Path(data_dir) / APPLIED_NAME, line)


def _append_line(path: Path, line: str) -> None:
    try:
        created = _ensure_dir(path.parent) or not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # A crash mid-write leaves a line without its newline: start on a fresh line, or
            # the next record would be glued to the torn one and both lost.
            size = os.fstat(fd).st_size
            prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
            os.write(fd, prefix + line.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(path.parent)
    except OSError as error:
        raise JournalError(f"cannot write the opt-out journal {path}: {error}") from error


def _ensure_dir(directory: Path) -> bool:
    if directory.is_dir():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    fsync_dir(directory.parent)
    return True


# --- reading ----------------------------------------------------------------------------------

def read_records(data_dir: Path) -> list[JournaledOptOut]:
    """Every record, in the order received (an unreadable line is logged and skipped: it can
    only be one torn by a crash while being written, which was therefore never answered)."""
    records = []
    for number, line in _lines(Path(data_dir) / JOURNAL_NAME):
        try:
            records.append(JournaledOptOut.from_json(line))
        except (ValueError, TypeError, KeyError) as error:
            log.error("%s line %d is not an opt-out record (%s): skipped", JOURNAL_NAME, number, error)
    return records


def applied_keys(data_dir: Path) -> set[str]:
    keys = set()
    for number, line in _lines(Path(data_dir) / APPLIED_NAME):
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, TypeError, KeyError):
            log.error("%s line %d is unreadable: skipped (its record is applied again)", APPLIED_NAME, number)
    return keys


def pending(data_dir: Path) -> list[JournaledOptOut]:
    """Records not yet stored in the database, oldest first, one per key."""
    done = applied_keys(data_dir)
    seen: set[str] = set()
    waiting = []
    for record in read_records(data_dir):
        if record.key not in done and record.key not in seen:
            seen.add(record.key)
            waiting.append(record)
    return waiting


def pending_opt_outs(data_dir: Path) -> set[str]:
    """The numbers with an opt-out received but not yet in the database: nothing may be sent to
    them. Raises JournalError when the journal cannot be read (the caller then sends nothing)."""
    return {record.phone for record in pending(data_dir) if record.phone}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open("r", encoding="ascii", errors="replace") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    yield number, line
    except FileNotFoundError:
        return
    except OSError as error:
        raise JournalError(f"cannot read the opt-out journal {path}: {error}") from error


# --- applying ---------------------------------------------------------------------------------

Store = Callable[[JournaledOptOut], str]     # stores one record in the database; returns what it did


@contextmanager
def exclusive(data_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the journal's lock (across processes); yields False when `wait` is off and another
    holder has it."""
    path = Path(data_dir) / LOCK_NAME
    _ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def apply_one(data_dir: Path, record: JournaledOptOut, store: Store, now: Callable[[], datetime]) -> str | None:
    """Store `record` unless already applied (waiting for the lock); None when it was."""
    with exclusive(data_dir):
        if record.key in applied_keys(data_dir):
            return None
        detail = store(record)
        mark_applied(data_dir, record.key, detail, now())
        return detail


def apply_pending(data_dir: Path, store: Store, now: Callable[[], datetime]) -> int:
    """Store every pending record, oldest first; the number stored. Stops at the first database
    error (the rest wait for the next run) and skips the run while another process applies."""
    if not (Path(data_dir) / JOURNAL_NAME).exists():
        return 0
    with exclusive(data_dir, wait=False) as held:
        if not held:
            return 0
        stored = 0
        for record in pending(data_dir):
            try:
                detail = store(record)
            except Exception as error:         # the database is still unavailable: next run
                log.warning("opt-out %s not applied yet (%s pending): %s", record.key,
                            len(pending(data_dir)) - stored, error)
                break
            mark_applied(data_dir, record.key, detail, now())
            stored += 1
        return stored
