"""Tables of people and their credentials: users, API tokens and browser sessions.

No secret is stored as given: passwords as scrypt hashes, API tokens and session ids as sha256
digests (see `outbound.users` for why sha256 is enough for those), so a copy of the database
lets nobody sign in.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from consent.sqltypes import instant_field



class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    role: str = Field(description="manager | compliance | agent | admin")
    password_hash: str | None = Field(default=None, description="scrypt$n$r$p$salt$hash; None: token only")
    active: bool = True
    created_at: datetime = instant_field()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    label: str = ""
    token_hash: str = Field(unique=True, description="sha256 hex of the token")
    prefix: str = Field(description="the token's first characters, to recognise it in listings")
    created_at: datetime = instant_field()
    revoked_at: datetime | None = instant_field(nullable=True)


class WebSession(SQLModel, table=True):
    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    session_hash: str = Field(unique=True, description="sha256 hex of the cookie's session id")
    csrf_token: str = Field(description="per-session token every cookie-authenticated write must echo")
    created_at: datetime = instant_field()
    expires_at: datetime = instant_field(index=True)
