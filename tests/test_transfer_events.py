"""The console feed: offers pushed to the agent they are for, missed events replayed by sequence."""
from __future__ import annotations

from sqlalchemy import create_engine
from sqlmodel import Session

from outbound import transfer_events
from outbound.transfer_events import QUEUE_SIZE, TransferBroadcaster


def test_subscriber_gets_its_own_and_general_events_only():
    feed = TransferBroadcaster()
    ana, everyone = feed.subscribe(agent_id=1), feed.subscribe()
    feed.publish("offer", transfer_id=10, agent_id=1)
    feed.publish("offer", transfer_id=11, agent_id=2)
    feed.publish("ended", transfer_id=12)
    assert [(e.kind, e.transfer_id) for e in iter(lambda: ana.get(timeout=0), None)] == [("offer", 10), ("ended", 12)]
    assert [e.transfer_id for e in iter(lambda: everyone.get(timeout=0), None)] == [10, 11, 12]
    ana.close()
    feed.publish("offer", transfer_id=13, agent_id=1)
    assert ana.get(timeout=0) is None


def test_a_reconnecting_console_asks_for_what_it_missed():
    feed = TransferBroadcaster()
    first = feed.publish("offer", transfer_id=1, agent_id=1)
    feed.publish("offer", transfer_id=2, agent_id=2)
    feed.publish("joined", transfer_id=1, agent_id=1)
    assert [e.kind for e in feed.since(first.seq, agent_id=1)] == ["joined"]
    assert [e.seq for e in feed.since(0)] == [1, 2, 3]


def test_a_subscriber_that_stops_reading_loses_old_events_and_never_blocks():
    feed = TransferBroadcaster()
    slow = feed.subscribe()
    for number in range(QUEUE_SIZE + 5):
        feed.publish("offer", transfer_id=number)
    assert slow.get(timeout=0).transfer_id == 5                   # the 5 oldest were dropped


def test_an_event_goes_out_when_its_transaction_commits_and_never_after_a_rollback(monkeypatch):
    feed = TransferBroadcaster()
    monkeypatch.setattr(transfer_events, "broadcaster", feed)
    console = feed.subscribe()
    with Session(create_engine("sqlite://")) as session:
        session.connection()                                    # a transaction is open
        transfer_events.publish_after_commit(session, "offer", 1, agent_id=7, data={"agent": "ana"})
        assert console.get(timeout=0) is None                   # not committed: nobody is offered it
        session.commit()
        offered = console.get(timeout=0)
        assert (offered.kind, offered.transfer_id, offered.agent_id, offered.data) == ("offer", 1, 7, {"agent": "ana"})

        session.connection()
        transfer_events.publish_after_commit(session, "offer", 2, agent_id=7)
        session.rollback()
        session.commit()                                        # a later commit does not revive it
        assert console.get(timeout=0) is None

        session.connection()
        transfer_events.publish_after_commit(session, "ended", 1)
        session.commit()
        assert [e.kind for e in iter(lambda: console.get(timeout=0), None)] == ["ended"]   # once, not twice
