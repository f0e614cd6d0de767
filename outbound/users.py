"""Users, API tokens and browser sessions: create, check and revoke.

Passwords are hashed with scrypt (stdlib, memory-hard), because people choose guessable ones and
a stolen hash must be slow to attack. API tokens and session ids are 256 random bits made here,
so nobody can guess them: one sha256 is as good as a slow KDF against a stolen table, and it lets
every request find its row with one indexed lookup instead of a slow hash per request.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlmodel import Session

from outbound import audit
from outbound.models import Campaign
from outbound.user_tables import ApiToken, User, WebSession


class Role(StrEnum):
    manager = "manager"
    compliance = "compliance"
    agent = "agent"
    admin = "admin"


TOKEN_PREFIX = "obt_"
SESSION_LIFETIME = timedelta(hours=12)
# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms per check (OWASP's minimum is n=2**17 with
# r=8, p=1 at 128 MiB; 2**14 keeps login usable on the 2-core machines this runs on).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD_LENGTH = 10
MAX_NAME_LENGTH = 100


class UserError(ValueError):
    """A request about users that cannot be done as asked; the message says what to fix."""


class UserNotFound(LookupError):
    pass


@dataclass(frozen=True)
class CurrentUser:
    """Who is making a request, and through which credential."""

    id: int
    name: str
    role: str
    via: str = "token"                 # token | session
    csrf_token: str | None = None      # sessions only


@dataclass(frozen=True)
class NewToken:
    id: int
    token: str                         # shown once; only its digest is stored
    prefix: str
    user: str


# --- hashing ----------------------------------------------------------------------------------

def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def password_matches(password: str, stored: str | None) -> bool:
    if not stored:
        # Same work as a real check, so the answer's timing does not tell which names exist.
        hash_password(password)
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        candidate = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                                   p=int(p), dklen=len(key) // 2)
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(candidate.hex(), key)


# --- users ------------------------------------------------------------------------------------

def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise UserError(f"name: 1 to {MAX_NAME_LENGTH} printable characters, got {name!r}")
    if _is_id(name):
        raise UserError(f"name: {name!r} would read as a user id; use at least one letter")
    return name


def _is_id(key: str | int) -> bool:
    """A user id as written on a command line or in a URL (ASCII digits, within SQL's integer)."""
    text = str(key)
    return text.isascii() and text.isdigit() and int(text) < 2 ** 31


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"role: one of {', '.join(r.value for r in Role)}, got {role!r}") from None


def add_user(session: Session, name: str, role: str, *, password: str | None, actor: str,
             at: datetime) -> User:
    name, role = validate_name(name), parse_role(role)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if find_user(session, name) is not None:
        raise UserError(f"name: a user named {name!r} already exists")
    user = User(name=name, role=role.value, created_at=at,
                password_hash=hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    audit.append(session, actor=actor, action="user.created", subject=f"user:{user.id}", at=at,
                 payload={"name": name, "role": role.value, "password": password is not None})
    return user


def find_user(session: Session, key: str | int) -> User | None:
    """By id (an int, or ASCII digits) or by name."""
    if _is_id(key):
        return session.get(User, int(key))
    if isinstance(key, int) or not key.isprintable():
        return None                    # beyond any id, or text no stored name holds (NUL, surrogates)
    return session.execute(select(User).where(User.name == key)).scalar_one_or_none()


def require_user(session: Session, key: str | int) -> User:
    user = find_user(session, key)
    if user is None:
        raise UserNotFound(f"no user {key!r}")
    return user


def set_active(session: Session, user: User, active: bool, *, actor: str, at: datetime) -> User:
    """Deactivating also ends the user's sessions; their tokens stop working at once (checked
    per request)."""
    user.active = active
    session.add(user)
    if not active:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.flush()
    audit.append(session, actor=actor, action="user.activated" if active else "user.deactivated",
                 subject=f"user:{user.id}", at=at, payload={"name": user.name})
    return user


def reset_password(session: Session, user: User, password: str, *, actor: str, at: datetime) -> User:
    """A new password (an admin's reset); the user's browser sessions end, since whoever held
    the old password may hold one of them. Audited, without the password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(password)
    session.add(user)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.flush()
    audit.append(session, actor=actor, action="user.password_reset", subject=f"user:{user.id}", at=at,
                 payload={"name": user.name})
    return user


def user_dict(user: User) -> dict:
    return {"id": user.id, "name": user.name, "role": user.role, "active": user.active,
            "has_password": user.password_hash is not None,
            "created_at": audit.iso_utc(user.created_at) if user.created_at else None}


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def assign_campaign(session: Session, campaign: Campaign, user: User, *, actor: str, at: datetime) -> Campaign:
    """Make `user` (a manager) the owner of `campaign`: e.g. one made with the CLI, which has no
    owner, or one whose manager left."""
    if user.role != Role.manager:
        raise UserError(f"user: {user.name!r} is {user.role}; only a manager can own a campaign")
    previous = campaign.owner_id
    campaign.owner_id = user.id
    session.add(campaign)
    session.flush()
    audit.append(session, actor=actor, action="campaign.owner_changed", subject=f"campaign:{campaign.id}", at=at,
                 payload={"from_user_id": previous, "to_user_id": user.id, "to_user": user.name})
    return campaign


# --- API tokens -------------------------------------------------------------------------------

def create_token(session: Session, user: User, *, label: str = "", actor: str, at: datetime) -> NewToken:
    if len(label) > 200 or not label.isprintable():
        raise UserError("label: up to 200 printable characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, label=label, token_hash=digest(token), prefix=token[:10],
                   created_at=at)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor, action="token.created", subject=f"user:{user.id}", at=at,
                 payload={"token_id": row.id, "prefix": row.prefix, "label": row.label, "user": user.name})
    return NewToken(id=row.id, token=token, prefix=row.prefix, user=user.name)


def revoke_token(session: Session, token_id: int, *, actor: str, at: datetime) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise UserNotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = at
        session.add(row)
        session.flush()
        audit.append(session, actor=actor, action="token.revoked", subject=f"user:{row.user_id}", at=at,
                     payload={"token_id": row.id, "prefix": row.prefix})
    return row


def token_dict(row: ApiToken) -> dict:
    return {"id": row.id, "user_id": row.user_id, "label": row.label, "prefix": row.prefix,
            "created_at": audit.iso_utc(row.created_at) if row.created_at else None,
            "revoked_at": audit.iso_utc(row.revoked_at) if row.revoked_at else None}


def list_tokens(session: Session, user_id: int | None = None) -> list[ApiToken]:
    statement = select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        statement = statement.where(ApiToken.user_id == user_id)
    return list(session.scalars(statement))


def user_for_token(session: Session, token: str) -> CurrentUser | None:
    """The active user holding this unrevoked token, or None."""
    row = session.execute(select(User, ApiToken).join(ApiToken, ApiToken.user_id == User.id)
                          .where(ApiToken.token_hash == digest(token))).first()
    if row is None:
        return None
    user, token_row = row
    if token_row.revoked_at is not None or not user.active:
        return None
    return CurrentUser(id=user.id, name=user.name, role=user.role, via="token")


# --- browser sessions -------------------------------------------------------------------------

def login(session: Session, name: str, password: str, *, at: datetime) -> tuple[str, CurrentUser] | None:
    """A new session id (for the cookie) and its user, or None when name or password is wrong."""
    user = find_user(session, name) if name and not _is_id(name) else None
    if not password_matches(password, user.password_hash if user else None) or not user.active:
        return None
    # Expired sessions are pruned here (one indexed delete), so the table holds live ones only.
    session.execute(delete(WebSession).where(WebSession.expires_at <= at))
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(WebSession(user_id=user.id, session_hash=digest(session_id), csrf_token=csrf,
                           created_at=at, expires_at=at + SESSION_LIFETIME))
    audit.append(session, actor=user.name, action="user.login", subject=f"user:{user.id}", at=at, payload={})
    return session_id, CurrentUser(id=user.id, name=user.name, role=user.role, via="session", csrf_token=csrf)


def user_for_session(session: Session, session_id: str, *, at: datetime) -> CurrentUser | None:
    row = session.execute(select(User, WebSession).join(WebSession, WebSession.user_id == User.id)
                          .where(WebSession.session_hash == digest(session_id))).first()
    if row is None:
        return None
    user, web_session = row
    if web_session.expires_at <= at or not user.active:
        return None
    return CurrentUser(id=user.id, name=user.name, role=user.role, via="session",
                       csrf_token=web_session.csrf_token)


def logout(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.session_hash == digest(session_id)))
