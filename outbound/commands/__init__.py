"""Command groups of the `outbound` CLI; each module exposes `register(app)`."""
from __future__ import annotations

import importlib

import typer

# One line per command module; a module registers its own group or commands.
COMMAND_MODULES = (
    "outbound.commands.gate_cmd",
    "outbound.commands.demo_cmd",
    "outbound.commands.db_cmd",
    "outbound.commands.audit_cmd",
    "outbound.commands.consent_cmd",
    "outbound.commands.import_cmd",
    "outbound.commands.dnc_cmd",
    "outbound.commands.campaign_cmd",
    "outbound.commands.worker_cmd",
    "outbound.commands.serve_cmd",
    "outbound.commands.simulate_cmd",
    "outbound.commands.conversation_cmd",
    "outbound.commands.agent_cmd",
    "outbound.commands.user_cmd",
)


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
