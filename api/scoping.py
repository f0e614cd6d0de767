"""What a user may see: a manager only the campaigns they own; compliance every campaign.

A campaign a manager does not own answers 404, the same as one that does not exist, so ids of
other managers' campaigns are not revealed. Routes of any module (campaigns, lists, reports,
conversations) use these helpers so the rule lives in one place.
"""
from __future__ import annotations

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlmodel import Session

from outbound.campaigns import CampaignNotFound, find_campaign
from outbound.models import Campaign, Contact
from outbound.users import CurrentUser, Role


def owner_scope(user: CurrentUser) -> int | None:
    """The owner id a query must be restricted to, or None when the user sees every campaign."""
    return user.id if user.role == Role.manager else None


def may_see(user: CurrentUser, campaign: Campaign) -> bool:
    scope = owner_scope(user)
    return scope is None or campaign.owner_id == scope


def visible_campaign(session: Session, user: CurrentUser, key: int | str) -> Campaign:
    """The campaign by id or name if this user may see it; 404 otherwise."""
    try:
        campaign = find_campaign(session, key)
    except CampaignNotFound:
        campaign = None
    if campaign is None or not may_see(user, campaign):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {key!r}")
    return campaign


def phone_visible(session: Session, user: CurrentUser, e164: str) -> bool:
    """Whether this user may see what is stored about a phone: compliance always; a manager
    only when it is a contact of one of their campaigns."""
    scope = owner_scope(user)
    if scope is None:
        return True
    statement = (select(Contact.id).join(Campaign, Campaign.id == Contact.campaign_id)
                 .where(Contact.e164 == e164, Campaign.owner_id == scope).limit(1))
    return session.execute(statement).first() is not None
