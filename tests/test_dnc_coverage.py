"""National registry coverage per area code, through the engine: the facts the dispatcher builds
for the gate carry each number's own area code's sync date, and none for an area code never loaded."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from consent.registry_store import RegistryStore
from consent.rules import load_pack
from outbound.db import session_scope
from outbound.models import Attempt, Contact
from scheduler.dispatch import DispatchConfig, dispatch_once
from scheduler.facts import load_batch_facts
from dispatch_support import NOON_NEW_YORK, FakeAdapter, running_campaign

PACK = load_pack()


def registry_with(tmp_path, files: dict[str, str], synced_days_ago: dict[str, int]) -> RegistryStore:
    store = RegistryStore(tmp_path / "registry")
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        store.ingest_full([path], synced_at=NOON_NEW_YORK - timedelta(days=synced_days_ago[name]), now=NOON_NEW_YORK)
    return store


def test_the_engine_passes_each_area_codes_own_sync_date_and_null_without_data(sqlite_engine, tmp_path):
    store = registry_with(tmp_path, {"212.txt": "2125550100\n", "201.txt": "2015550100\n"},
                          {"212.txt": 40, "201.txt": 3})
    phones = ["+12125550123", "+12015550123", "+16465550123"]
    with session_scope(sqlite_engine) as session:
        facts = load_batch_facts(session, phones, NOON_NEW_YORK, store)
    assert facts["+12015550123"].national_dnc.synced_at == NOON_NEW_YORK - timedelta(days=3)
    assert facts["+12125550123"].national_dnc.synced_at == NOON_NEW_YORK - timedelta(days=40)
    assert facts["+16465550123"].national_dnc is None          # the gate's synced_at: null


def test_telemarketing_to_an_area_code_without_registry_data_is_blocked_stale(sqlite_engine, tmp_path):
    """212 was loaded, 646 (a Manhattan overlay) never was: its numbers are not "unlisted"."""
    store = registry_with(tmp_path, {"212.txt": "2125550100\n"}, {"212.txt": 2})
    running_campaign(sqlite_engine, ["(212) 555-0123", "(646) 555-0123"], purpose="telemarketing",
                     voice="prerecorded")
    dispatch_once(sqlite_engine, FakeAdapter(), worker_id="w1", now=NOON_NEW_YORK, pack=PACK, registry=store,
                  config=DispatchConfig(), sleep=lambda _seconds: None)
    with Session(sqlite_engine) as session:
        errors = dict(session.execute(select(Contact.e164, Attempt.error)
                                      .join(Contact, Contact.id == Attempt.contact_id)).all())
    assert "dnc_data_stale" in errors["+16465550123"]
    assert "dnc_data_stale" not in errors["+12125550123"]        # blocked for consent only
