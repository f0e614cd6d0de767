"""Which contacts must hear a recording notice first: the all-party-consent states, as data.

The list lives in `recording_consent.toml` with the citation of each entry. A contact whose
candidate states are unknown might be in any of them, so an unknown location counts as
all-party too (fail closed: a notice too many costs nothing, one too few is a wiretap claim).
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("recording_consent.toml")


@lru_cache(maxsize=1)
def all_party_states() -> dict[str, dict[str, str]]:
    with DATA.open("rb") as stream:
        return tomllib.load(stream)["states"]


def needs_recording_notice(candidate_states: list[str] | tuple[str, ...] | set[str]) -> bool:
    """True when any candidate state requires all-party consent, or none is known."""
    states = {state.strip().upper() for state in candidate_states if state and state.strip()}
    if not states:
        return True
    return bool(states & set(all_party_states()))
