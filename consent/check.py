"""`gate check`: scenarios in, decisions out, storing nothing (shared by the CLI and the API).

No input stops a run: a line that is not a valid scenario, or that the gate cannot decide,
gets an `{"error": ...}` line of its own and the others are still decided.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from consent.gate import evaluate
from consent.rules import RulePack
from consent.scenario import ScenarioError, decision_json, decision_to_dict, parse_scenario, parse_scenario_text
from consent.types import AttemptRequest, Decision, Facts


class UndecidableScenario(ScenarioError):
    """A valid scenario the gate failed on: no decision is made (fail closed), and the run goes on."""


_BOM_BYTES, _BOM_TEXT = b"\xef\xbb\xbf", "\ufeff"


def check_one(raw: Any, pack: RulePack) -> dict[str, Any]:
    """The decision for one decoded scenario; raises ScenarioError."""
    return decision_to_dict(_decided(*parse_scenario(raw), pack))


def check_line(text: str | bytes, pack: RulePack) -> tuple[str, bool]:
    """(output line, valid) for one JSON scenario: the decision, or {"error": ...}, as compact JSON.

    A UTF-8 byte order mark (what Windows editors write at the top of a file) is not part of the
    scenario: RFC 8259 lets a reader ignore it, and a file saved that way must not lose its first
    decision."""
    text = text.removeprefix(_BOM_BYTES) if isinstance(text, bytes) else text.removeprefix(_BOM_TEXT)
    try:
        return decision_json(_decided(*parse_scenario_text(text), pack)), True
    except ScenarioError as error:
        return error_json(str(error)), False


def error_json(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))


def _decided(request: AttemptRequest, facts: Facts, at: datetime, pack: RulePack) -> Decision:
    try:
        return evaluate(request, facts, pack, at)
    except Exception as error:      # noqa: BLE001 - one odd scenario must not stop a run
        raise UndecidableScenario(f"scenario: the gate could not decide it ({type(error).__name__}: {error}); "
                                  "no decision was made") from error


def check_lines(lines: Iterable[str | bytes], pack: RulePack) -> Iterator[tuple[int, str, bool]]:
    """(line number, output, valid) for each non-blank line of a JSON Lines stream."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            output, valid = check_line(line, pack)
            yield number, output, valid
