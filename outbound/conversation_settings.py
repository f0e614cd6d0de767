"""A voice campaign's conversation settings (`Campaign.settings["conversation"]`).

- `script`: a bundled script's name (`solar_qualify`) or a path to a YAML/JSON script; it is
  loaded and validated when the campaign is created (a file broken later ends its calls
  politely, see `outbound.conversation`);
- `record_calls`: the call is recorded (the preamble then announces it where the law needs it);
- `machine_policy`: on an answering machine, `leave_voicemail` (a compliant message after the
  beep) or `hang_up`;
- `seller_name`: who the call is from (default: the campaign's name); it is also the seller whose
  consents count for the campaign (`outbound.campaigns.campaign_seller`);
- `callback_number`: the number the preamble and voicemails give (default: the caller ID).
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from consent.ledger_io import seller_key
from outbound.scripts.loader import ScriptError, load_script

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MACHINE_POLICIES = ("leave_voicemail", "hang_up")


class ConversationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    script: str | None = Field(default=None, description="bundled script name or path to a YAML/JSON script")
    record_calls: bool = False
    machine_policy: Literal["leave_voicemail", "hang_up"] = "hang_up"
    seller_name: str | None = Field(default=None, min_length=1, max_length=120)
    callback_number: str | None = None

    @field_validator("script")
    @classmethod
    def _script_loads(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Only on input (outbound.campaigns.validate_campaign passes load_scripts): reading the
        # stored settings must never fail because a file changed; the call then fails politely.
        if value is None or not (info.context or {}).get("load_scripts"):
            return value
        try:
            load_script(value)
        except ScriptError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("seller_name")
    @classmethod
    def _seller_can_hold_consent(cls, value: str | None, info: ValidationInfo) -> str | None:
        # On input only, like the script: a stored row is read as it is.
        if value is not None and (info.context or {}).get("load_scripts") and seller_key(value) is None:
            raise ValueError(f"{value!r} cannot name a seller (blank, or the placeholder of consents "
                             f"migrated without one): no consent would ever count for this campaign")
        return value

    @field_validator("callback_number")
    @classmethod
    def _callback_number_is_e164(cls, value: str | None) -> str | None:
        if value is not None and not E164.match(value):
            raise ValueError(f"{value!r} is not an E.164 number (e.g. +18005550100)")
        return value
