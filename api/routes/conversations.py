"""GET /v1/contacts/{phone}/conversation: a contact's transcripts and memory (audited read).

Compliance reads every campaign's; a manager only the turns and facts of their own campaigns'
calls, whoever else has called the same phone."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from api.auth import CampaignReader
from api.database import NowDep, SessionDep
from api.scoping import owner_scope, phone_visible
from consent import records
from outbound.memory import read_conversation

router = APIRouter(prefix="/v1", tags=["conversations"])


@router.get("/contacts/{phone}/conversation", summary="Every turn and fact stored for a phone, oldest first",
            responses={422: {"description": "not a NANP phone number"}})
def get_conversation(phone: str, session: SessionDep, now: NowDep, user: CampaignReader) -> dict[str, Any]:
    try:
        e164 = records.normalize_phone(phone)
    except records.InvalidPhone as error:
        raise HTTPException(422, detail=str(error)) from None
    if not phone_visible(session, user, e164):
        # A manager sees the phones of their own campaigns only; others answer as unknown.
        raise HTTPException(404, detail=f"no contact {e164} in your campaigns")
    # Transcripts are personal data: the read itself is audited, with who read it.
    return read_conversation(session, e164, actor=user.name, at=now, owner_id=owner_scope(user))
