"""The adapter a process uses, chosen by OUTBOUND_TELEPHONY (simulator, the default, or twilio)."""
from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from outbound.settings import Settings, SettingsError
from telephony.adapter import Adapter
from telephony.simulator import Clock, Deliver, SimulationProfile, SimulatorAdapter
from telephony.twilio_adapter import TwilioAdapter

ACCOUNT_SID_PATTERN = re.compile(r"AC[0-9a-fA-F]{32}")
ADAPTERS = ("simulator", "twilio")


class ConfigError(SettingsError):
    """A setting the chosen adapter needs is missing or unusable; the message names the variable."""


def adapter_from_settings(settings: Settings, deliver: Deliver | None = None, clock: Clock | None = None,
                          *, seed: int | str | None = None,
                          profile: SimulationProfile | None = None) -> Adapter:
    """The adapter `settings` ask for. The simulator needs `deliver` (where its carrier events
    go) and takes `clock` (default: the system clock in UTC) and `seed` (default: a fresh random
    one, readable as `adapter.seed`, so a restarted process never reuses a call sid)."""
    if settings.telephony == "simulator":
        return _simulator(deliver, clock, seed, profile)
    if settings.telephony == "twilio":
        return _twilio(settings)
    raise ConfigError(f"OUTBOUND_TELEPHONY must be one of {', '.join(ADAPTERS)}, "
                      f"got {settings.telephony!r}")


def _simulator(deliver: Deliver | None, clock: Clock | None, seed: int | str | None,
               profile: SimulationProfile | None) -> SimulatorAdapter:
    if deliver is None:
        # Without a sink the simulator would swallow every status, answer and STOP.
        raise ValueError("deliver is required for the simulator adapter: it receives the carrier "
                         "events the webhooks would")
    return SimulatorAdapter(seed=secrets.randbits(64) if seed is None else seed, deliver=deliver,
                            clock=clock or _utc_now, profile=profile)


def _twilio(settings: Settings) -> TwilioAdapter:
    required = {"OUTBOUND_TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
                "OUTBOUND_TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
                # Twilio must reach the webhooks there, and their signatures are checked against it.
                "OUTBOUND_PUBLIC_URL": settings.public_url}
    for variable, value in required.items():
        if not value:
            raise ConfigError(f"{variable} is required when OUTBOUND_TELEPHONY=twilio")
    if not ACCOUNT_SID_PATTERN.fullmatch(settings.twilio_account_sid):
        raise ConfigError("OUTBOUND_TWILIO_ACCOUNT_SID must be AC followed by 32 hex digits "
                          "(the Account SID on the Twilio console), "
                          f"got {settings.twilio_account_sid[:6]!r}…")
    if not settings.public_url.startswith(("https://", "http://")):
        raise ConfigError(f"OUTBOUND_PUBLIC_URL must be an absolute http(s) URL, got {settings.public_url!r}")
    try:
        return TwilioAdapter(settings.twilio_account_sid, settings.twilio_auth_token,
                             api_base=settings.twilio_api_base)
    except ValueError as exc:
        raise ConfigError(f"OUTBOUND_TWILIO_API_BASE: {exc}") from exc


def _utc_now() -> datetime:
    return datetime.now(UTC)
