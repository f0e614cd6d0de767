"""Which adapter a process gets, and what it says when a setting is missing."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outbound.settings import load_settings
from telephony.factory import ConfigError, adapter_from_settings
from telephony.simulator import SimulatorAdapter
from telephony.twilio_adapter import TwilioAdapter

TWILIO = {"OUTBOUND_TELEPHONY": "twilio", "OUTBOUND_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
          "OUTBOUND_TWILIO_AUTH_TOKEN": "token", "OUTBOUND_PUBLIC_URL": "https://calls.example.com"}


def settings(environ: dict[str, str], tmp_path):
    return load_settings(environ=environ, env_file=tmp_path / "absent.env")


def test_the_simulator_is_the_default(tmp_path):
    at = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
    adapter = adapter_from_settings(settings({}, tmp_path), deliver=lambda *event: None, clock=lambda: at)
    assert isinstance(adapter, SimulatorAdapter) and adapter.now() == at


def test_each_simulator_gets_its_own_seed_so_a_restart_never_reuses_a_sid(tmp_path):
    first, second = (adapter_from_settings(settings({}, tmp_path), deliver=lambda *event: None)
                     for _ in range(2))
    assert first.seed != second.seed
    assert adapter_from_settings(settings({}, tmp_path), deliver=print, seed=7).seed == 7


def test_the_simulator_needs_somewhere_to_deliver_events(tmp_path):
    with pytest.raises(ValueError, match="deliver is required"):
        adapter_from_settings(settings({}, tmp_path))


def test_twilio_with_every_setting(tmp_path):
    adapter = adapter_from_settings(settings({**TWILIO, "OUTBOUND_TWILIO_API_BASE": "http://127.0.0.1:4010"},
                                             tmp_path))
    assert isinstance(adapter, TwilioAdapter)
    assert adapter.client.http_client.rewrite("https://api.twilio.com/2010-04-01/Accounts.json") == \
        "http://127.0.0.1:4010/2010-04-01/Accounts.json"


@pytest.mark.parametrize("missing", ["OUTBOUND_TWILIO_ACCOUNT_SID", "OUTBOUND_TWILIO_AUTH_TOKEN",
                                     "OUTBOUND_PUBLIC_URL"])
def test_a_missing_twilio_setting_is_named(tmp_path, missing):
    environ = {k: v for k, v in TWILIO.items() if k != missing}
    with pytest.raises(ConfigError, match=f"^{missing} is required when OUTBOUND_TELEPHONY=twilio$"):
        adapter_from_settings(settings(environ, tmp_path))


@pytest.mark.parametrize("changes,message", [
    ({"OUTBOUND_TELEPHONY": "vonage"}, "OUTBOUND_TELEPHONY must be one of simulator, twilio"),
    ({"OUTBOUND_TWILIO_ACCOUNT_SID": "SK" + "1" * 32}, "OUTBOUND_TWILIO_ACCOUNT_SID must be AC"),
    ({"OUTBOUND_PUBLIC_URL": "calls.example.com"}, "OUTBOUND_PUBLIC_URL must be an absolute"),
    ({"OUTBOUND_TWILIO_API_BASE": "127.0.0.1:4010"}, "OUTBOUND_TWILIO_API_BASE: api_base must be"),
])
def test_an_unusable_setting_is_named(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        adapter_from_settings(settings({**TWILIO, **changes}, tmp_path))
