"""The OpenAPI document against the app: schemathesis generates requests for every /v1 operation
(valid and invalid input), sent with a token of a role the operation admits; none may answer 500.

Twilio's signed callbacks and the endless transfer stream are left out (the stream never ends;
the callbacks are checked by their own tests with signed requests).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import update
from sqlmodel import Session

from api.app import create_app
from outbound.db import dispose_engines, ensure_schema, get_engine
from outbound.models import ApiToken, User
from outbound.users import add_user, create_token
from tests.test_route_roles import EXPECTED

schema = (schemathesis.openapi.from_asgi("/openapi.json", create_app())
          .include(path_regex=r"^/v1/")
          .exclude(path_regex=r"^/v1/(twilio|conference)/")
          .exclude(path="/v1/transfers/stream"))
# Methods a route does not declare answer 405 from the router itself: one check per route would
# only test Starlette, and costs seven requests per operation.
schema.config.phases.coverage.unexpected_methods = set()
ROLES = ("manager", "compliance", "agent", "admin")


@pytest.fixture(scope="module")
def role_headers(tmp_path_factory) -> Iterator[dict[str, dict[str, str]]]:
    """A fresh database with one user and token per role (module-wide: hypothesis runs many
    examples per test, and function-scoped fixtures would not be reset between them)."""
    folder = tmp_path_factory.mktemp("schemathesis")
    with pytest.MonkeyPatch.context() as env:      # module-wide, so not the `monkeypatch` fixture
        env.setenv("OUTBOUND_DATA_DIR", str(folder / "data"))
        env.setenv("OUTBOUND_DATABASE_URL", f"sqlite:///{folder / 'data' / 'outbound.db'}")
        try:
            engine = get_engine()
            ensure_schema(engine)
            headers = {}
            with Session(engine) as session:
                for role in ROLES:
                    user = add_user(session, role, role, password=None, actor="test", at=_now())
                    token = create_token(session, user, actor="test", at=_now()).token
                    headers[role] = {"Authorization": f"Bearer {token}"}
                session.commit()
            yield headers
        finally:
            dispose_engines()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def restore_credentials() -> None:
    # A generated request may deactivate a user or revoke a token (admins may); undo it so every
    # example is still sent as an authenticated user.
    with Session(get_engine()) as session:
        session.execute(update(User).values(active=True))
        session.execute(update(ApiToken).values(revoked_at=None))
        session.commit()


def role_for(method: str, path: str) -> str:
    key = f"{method.upper()} {path}"
    assert key in EXPECTED, f"{key}: add the roles it admits to EXPECTED in tests/test_route_roles.py"
    admitted = EXPECTED[key]
    return "compliance" if "compliance" in admitted else sorted(admitted)[0]


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_input_gets_a_500(case, role_headers):
    restore_credentials()
    role = role_for(case.operation.method, case.operation.path)
    response = case.call(headers=role_headers[role])
    assert response.status_code < 500, f"{case.method} {case.formatted_path} as {role}: {response.status_code} {response.text[:500]}"
    assert response.status_code != 401, "the role's token must be accepted"
