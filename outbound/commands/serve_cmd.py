"""`outbound serve`: the REST API and the carrier webhooks."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(host: str = typer.Option("127.0.0.1", help="address to listen on"),
          port: int = typer.Option(8000, help="port to listen on")) -> None:
    """Serve /v1 (API and Twilio webhooks) with uvicorn; the schema is upgraded first.

    X-Forwarded-For is believed only from OUTBOUND_TRUSTED_PROXIES (none by default). Uvicorn's
    own default believes it from 127.0.0.1, so anyone able to reach the port from the machine
    (or through a proxy that forwards the header as sent) could name any address and escape the
    per-address sign-in limit."""
    import uvicorn

    from outbound.db import ensure_schema, get_engine
    from outbound.settings import get_settings

    ensure_schema(get_engine())
    proxies = list(get_settings().trusted_proxies)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port,
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or "")
