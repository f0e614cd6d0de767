"""`gate check`: scenarios in, decisions out, storing nothing (shared by the CLI and the API)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from consent.gate import evaluate
from consent.rules import RulePack
from consent.scenario import ScenarioError, decision_json, decision_to_dict, parse_scenario, parse_scenario_text


def check_one(raw: Any, pack: RulePack) -> dict[str, Any]:
    """The decision for one decoded scenario; raises ScenarioError."""
    request, facts, at = parse_scenario(raw)
    return decision_to_dict(evaluate(request, facts, pack, at))


def check_line(text: str | bytes, pack: RulePack) -> tuple[str, bool]:
    """(output line, valid) for one JSON scenario: the decision, or {"error": ...}."""
    try:
        request, facts, at = parse_scenario_text(text)
    except ScenarioError as error:
        return json.dumps({"error": str(error)}, ensure_ascii=False), False
    return decision_json(evaluate(request, facts, pack, at)), True


def check_lines(lines: Iterable[str | bytes], pack: RulePack) -> Iterator[tuple[int, str, bool]]:
    """(line number, output, valid) for each non-blank line of a JSON Lines stream."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            output, valid = check_line(line, pack)
            yield number, output, valid
