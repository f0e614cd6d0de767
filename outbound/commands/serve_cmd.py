"""`outbound serve`: the REST API and the carrier webhooks."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(host: str = typer.Option("127.0.0.1", help="address to listen on"),
          port: int = typer.Option(8000, help="port to listen on")) -> None:
    """Serve /v1 (API and Twilio webhooks) with uvicorn; the schema is upgraded first."""
    import uvicorn

    from outbound.db import ensure_schema, get_engine

    ensure_schema(get_engine())
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port)
