"""Every /v1 route: 401 for an anonymous caller, 403 for each role it does not admit, and in for
each role it does. Twilio's callbacks are authenticated by signature instead; they must refuse an
unsigned request.

The roles a route admits are read from its `require_roles` dependency and must also equal the
table below, written by hand from issue 6: a route added without roles, or with other roles than
intended, fails here until the table says so. Every write made with a browser session must also
carry the session's CSRF token.
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from outbound.agents import add_agent
from outbound.user_tables import WebSession
from outbound.users import digest

ROLES = ("manager", "compliance", "agent", "admin")
M, C, A, ADMIN = {"manager"}, {"compliance"}, {"agent"}, {"admin"}
MC = M | C
SIGNED_PREFIXES = ("/v1/twilio/", "/v1/conference/")       # Twilio callbacks: signature, not tokens
STREAMS = {"GET /v1/transfers/stream"}                        # never ends: checked for refusals only

EXPECTED = {
    "POST /v1/gate/check": MC,
    "POST /v1/scrub": MC,
    # consent ledger: compliance
    "POST /v1/consent": C,
    "POST /v1/revocations": C,
    "POST /v1/business-relationships": C,
    "GET /v1/consent/{phone}": C,
    "POST /v1/consent/import": C,
    # lists and campaigns: managers (their own), compliance reads
    "POST /v1/campaigns/{campaign_id}/lists": M,
    "GET /v1/imports/{import_id}": MC,
    "GET /v1/imports/{import_id}/rejects.csv": MC,
    "POST /v1/campaigns": M,
    "GET /v1/campaigns": MC,
    "GET /v1/campaigns/{campaign_id}": MC,
    "POST /v1/campaigns/{campaign_id}/start": M,
    "POST /v1/campaigns/{campaign_id}/pause": M,
    "POST /v1/campaigns/{campaign_id}/resume": M,
    "POST /v1/campaigns/{campaign_id}/stop": M,
    "PATCH /v1/campaigns/{campaign_id}/settings": M,
    "POST /v1/campaigns/{campaign_id}/simulate": MC,
    "GET /v1/campaigns/{campaign_id}/contacts": MC,
    "GET /v1/contacts/{phone}/conversation": MC,
    "GET /v1/contacts/{contact_id}": MC,
    "GET /v1/attempts": MC,
    "GET /v1/attempts/{attempt_id}": MC,
    "GET /v1/campaigns/{campaign_id}/abandonment": MC,
    "GET /v1/campaigns/{campaign_id}/transfer-policy": MC,
    "PUT /v1/campaigns/{campaign_id}/transfer-policy": M,
    # agents and transfers: an agent their own; managers run the floor
    "GET /v1/agents": M | C | A,
    "POST /v1/agents": M,
    "GET /v1/agents/{agent_id}": M | C | A,
    "POST /v1/agents/{agent_id}/status": M | A,
    "DELETE /v1/agents/{agent_id}": M,
    "GET /v1/transfers": M | C | A,
    "GET /v1/transfers/events": M | C | A,
    "GET /v1/transfers/stream": M | C | A,
    "GET /v1/transfers/{transfer_id}": M | C | A,
    "GET /v1/transfers/{transfer_id}/card": M | C | A,
    "POST /v1/transfers/{transfer_id}/accept": M | A,
    "POST /v1/transfers/{transfer_id}/decline": M | A,
    "POST /v1/transfers/{transfer_id}/disposition": M | A,
    # compliance: reports (managers: their own campaigns'), decisions, audit, DNC
    "GET /v1/reports/decisions": MC,
    "GET /v1/reports/decisions.csv": MC,
    "GET /v1/reports/summary": MC,
    "GET /v1/reports/by-reason-over-time": MC,
    "GET /v1/decisions": C,
    "GET /v1/decisions/{decision_id}": C,
    "POST /v1/decisions/{decision_id}/replay": C,
    "GET /v1/audit/verify": C,
    "GET /v1/audit/events": C,
    "GET /v1/audit/anchor": C,
    "GET /v1/dnc/status": C,
    "GET /v1/dnc/numbers/{phone}": C,
    "POST /v1/dnc/internal": C,
    "POST /v1/dnc/internal/remove": C,
    "POST /v1/dnc/state/{state}": C,
    "POST /v1/dnc/litigator": C,
    "POST /v1/dnc/national": C,
    "POST /v1/dnc/national/changes": C,
    # admin: users and tokens
    "GET /v1/users": ADMIN,
    "POST /v1/users": ADMIN,
    "GET /v1/users/{user_id}": ADMIN,
    "POST /v1/users/{user_id}/activate": ADMIN,
    "POST /v1/users/{user_id}/deactivate": ADMIN,
    "GET /v1/tokens": ADMIN,
    "POST /v1/users/{user_id}/tokens": M | C | A | ADMIN,     # one's own (an admin: an admin's); the route checks
    "POST /v1/users/{user_id}/password": ADMIN,
    "DELETE /v1/tokens/{token_id}": ADMIN,
    "PUT /v1/campaigns/{campaign_id}/owner": ADMIN,
}

# Path parameters that name nothing on file (so an admitted request changes nothing) but are valid.
SAMPLE_PARAMS = {"phone": "2125550123", "decision_id": "0" * 32, "state": "FL"}


def api_routes() -> list[tuple[str, str, APIRoute]]:
    found = []
    for context in iter_route_contexts(create_app().routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.path.startswith("/v1/"):
            continue
        for method in sorted(context.methods):
            found.append((method, context.path, context))
    return found


def declared_roles(dependant) -> set[str] | None:
    """The roles every `require_roles` dependency of the route admits (their intersection)."""
    sets = []

    def walk(node):
        roles = getattr(node.call, "roles", None)
        if roles is not None:
            sets.append(set(roles))
        for child in node.dependencies:
            walk(child)

    walk(dependant)
    return set.intersection(*sets) if sets else None


ROUTES = api_routes()
TOKEN_ROUTES = [(m, p, r) for m, p, r in ROUTES if not p.startswith(SIGNED_PREFIXES)]
SIGNED_ROUTES = [(m, p, r) for m, p, r in ROUTES if p.startswith(SIGNED_PREFIXES)]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "999999"), path)


def test_the_table_names_every_token_route_and_no_other():
    assert {f"{m} {p}" for m, p, _ in TOKEN_ROUTES} == set(EXPECTED)


@pytest.mark.parametrize("method,path,context", TOKEN_ROUTES, ids=[f"{m} {p}" for m, p, _ in TOKEN_ROUTES])
def test_every_token_route_declares_the_roles_of_the_table(method, path, context):
    assert declared_roles(context.dependant) == EXPECTED[f"{method} {path}"]


@pytest.fixture
def client(env_api_users):
    # The agent user is also on the agents roster, as an agent who uses the console would be.
    with Session(env_api_users.engine) as session:
        add_agent(session, "agent", "client:agent", actor="test", at=datetime.now(timezone.utc))
        session.commit()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("method,path,context", TOKEN_ROUTES, ids=[f"{m} {p}" for m, p, _ in TOKEN_ROUTES])
def test_anonymous_401_wrong_role_403_right_role_admitted(client, env_api_users, method, path, context):
    key, url = f"{method} {path}", concrete(path)
    anonymous = client.request(method, url)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    for role in ROLES:
        if role in EXPECTED[key]:
            continue
        refused = client.request(method, url, headers=env_api_users.headers(role))
        assert refused.status_code == 403, (role, refused.text)
    if key in STREAMS:
        return
    for role in sorted(EXPECTED[key]):
        admitted = client.request(method, url, headers=env_api_users.headers(role))
        assert admitted.status_code not in (401, 403, 500), (role, admitted.status_code, admitted.text)


@pytest.mark.parametrize("method,path,context", SIGNED_ROUTES, ids=[f"{m} {p}" for m, p, _ in SIGNED_ROUTES])
def test_twilio_callbacks_refuse_an_unsigned_request(client, env_api_users, method, path, context):
    response = client.request(method, concrete(path), data={"CallSid": "CA" + "0" * 32},
                              headers=env_api_users.headers("admin"))      # a token is no signature
    assert response.status_code in (401, 403, 503), response.text


@pytest.fixture
def session_cookies(env_api_users) -> dict[str, str]:
    """A signed-in browser session per role (as POST /login makes one): role -> session id."""
    cookies, now = {}, datetime.now(timezone.utc)
    with Session(env_api_users.engine) as session:
        for role in ROLES:
            cookies[role] = secrets.token_urlsafe(32)
            session.add(WebSession(user_id=env_api_users.ids[role], session_hash=digest(cookies[role]),
                                   csrf_token=secrets.token_urlsafe(32), created_at=now,
                                   expires_at=now + timedelta(hours=1)))
        session.commit()
    return cookies


WRITE_ROUTES = [(m, p, r) for m, p, r in TOKEN_ROUTES if m not in ("GET", "HEAD", "OPTIONS")]


@pytest.mark.parametrize("method,path,context", WRITE_ROUTES, ids=[f"{m} {p}" for m, p, _ in WRITE_ROUTES])
def test_every_write_by_a_browser_session_needs_the_csrf_token(client, session_cookies, method, path, context):
    role = sorted(EXPECTED[f"{method} {path}"])[0]
    client.cookies.set("outbound_session", session_cookies[role])
    refused = client.request(method, concrete(path), headers={"X-CSRF-Token": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"], refused.text
