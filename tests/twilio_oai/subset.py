"""Cut Twilio's REST API spec down to the operations the adapter calls, for the contract tests.

    python tests/twilio_oai/subset.py FULL_SPEC.json > tests/twilio_oai/twilio_api_v2010.json

FULL_SPEC.json is Twilio's `spec/json/twilio_api_v2010.json` (twilio/twilio-oai, see README.md
here). Paths are kept whole (every operation and parameter as published) when they match
KEPT_PATHS; components are kept when a kept path reaches them through `$ref`, so the output is
the same spec, only smaller: Prism starts in a fraction of the time and the repository does not
carry 1.9 MB of endpoints it never calls.
"""
from __future__ import annotations

import json
import re
import sys
from typing import Any

ACCOUNT = "/2010-04-01/Accounts/{AccountSid}"
KEPT_PATHS = re.compile(
    "^" + re.escape(ACCOUNT) + r"/(Calls|Messages|Conferences)(\.json|/\{[A-Za-z]+\}\.json"
    r"|/\{[A-Za-z]+\}/(Participants|Recordings|Transcriptions)(\.json|/\{[A-Za-z]+\}\.json))$")


def referenced(node: Any) -> set[str]:
    """Names of the components a node's `$ref`s point at (`#/components/<kind>/<name>`)."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(referenced(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(referenced(value) for value in node))
    return set()


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    paths = {path: item for path, item in spec["paths"].items() if KEPT_PATHS.match(path)}
    components: dict[str, dict[str, Any]] = {}
    pending = referenced(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        value = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = value
        pending |= referenced(value) - seen
    components["securitySchemes"] = spec["components"]["securitySchemes"]
    kept = {key: spec[key] for key in ("openapi", "info", "servers", "security") if key in spec}
    return {**kept, "paths": paths, "components": components}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as source:
        full = json.load(source)
    json.dump(subset(full), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")
