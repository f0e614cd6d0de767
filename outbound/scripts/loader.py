"""Load a script file (YAML or JSON) and validate it; every error names the node and the field.

Errors are collected, not stopped at the first, so a reviewer fixes a script in one pass:
unknown or missing fields, bad types, undefined node targets, undefined actions, branches that
are missing, unreachable nodes, loops that never listen (they would talk for ever), the reserved
opt-out key used by an intent, and placeholders the engine cannot fill.
"""
from __future__ import annotations

import json
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from outbound.scripts.model import (
    INPUT_KINDS, OPT_OUT_KEY, ActionKind, BranchRule, FactKind, Intent, Node, NodeType, Script,
)

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "samples" / "scripts"
SCRIPT_SUFFIXES = (".yaml", ".yml", ".json")
# What `{name}` in a text may be; the conversation fills them from the campaign and memory.
PLACEHOLDERS = frozenset({"seller", "callback_number", "first_name", "callback_time"})
DIGIT = re.compile(r"^[0-9*#]$")

FIELDS = {
    NodeType.SAY: {"type", "text", "next"},
    NodeType.ASK: {"type", "prompt", "input", "intents", "no_match", "no_input", "reprompt", "timeout_seconds"},
    NodeType.BRANCH: {"type", "on", "default"},
    NodeType.ACTION: {"type", "action", "say"},
}
REQUIRED = {
    NodeType.SAY: ("text", "next"),
    NodeType.ASK: ("prompt", "intents", "no_match", "no_input"),
    NodeType.BRANCH: ("on", "default"),
    NodeType.ACTION: ("action",),
}
INTENT_FIELDS = {"keywords", "digits", "goto", "learn"}
TOP_FIELDS = {"name", "description", "start", "nodes"}


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.1 reads `on`, `yes` and `no` as booleans; scripts use them as words (a branch's
    `on`, a keyword "yes"), so only true/false are booleans here, as in YAML 1.2."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


class ScriptError(ValueError):
    """A script that cannot be used; `errors` lists every problem, each naming its node."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"script {source}: " + "; ".join(errors))


def resolve_script_path(reference: str) -> Path:
    """A bundled script's name (`solar_qualify`) or a file path."""
    candidate = Path(reference).expanduser()
    if candidate.suffix in SCRIPT_SUFFIXES and candidate.is_file():
        return candidate.resolve()
    for suffix in SCRIPT_SUFFIXES:
        bundled = BUNDLED_DIR / f"{reference}{suffix}"
        if bundled.is_file():
            return bundled
    bundled_names = sorted(p.stem for p in BUNDLED_DIR.glob("*") if p.suffix in SCRIPT_SUFFIXES)
    raise ScriptError(reference, [f"no such script file, and no bundled script of that name "
                                  f"(bundled: {', '.join(bundled_names) or 'none'})"])


def load_script(reference: str) -> Script:
    """Load and validate the script `reference` names; cached per file version."""
    path = resolve_script_path(reference)
    return _load_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _load_cached(path: str, _mtime_ns: int) -> Script:
    return parse_script(Path(path).read_text(encoding="utf-8"), source=path)


def parse_script(text: str, *, source: str = "<text>") -> Script:
    try:
        raw = json.loads(text) if source.endswith(".json") else yaml.load(text, Loader=_Yaml12Loader)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ScriptError(source, [f"not valid {'JSON' if source.endswith('.json') else 'YAML'}: {error}"]) from None
    return build_script(raw, source=source)


def build_script(raw: Any, *, source: str = "<data>") -> Script:
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ScriptError(source, ["the top level must be a mapping with name, start and nodes"])
    errors += [f"unknown top-level field {name!r}" for name in sorted(set(raw) - TOP_FIELDS)]
    name, start, raw_nodes = raw.get("name"), raw.get("start"), raw.get("nodes")
    if not isinstance(name, str) or not name.strip():
        errors.append("name: required (a non-empty string)")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise ScriptError(source, errors + ["nodes: required (a mapping of node name to node)"])
    nodes: dict[str, Node] = {}
    for node_name, body in raw_nodes.items():
        node = _node(str(node_name), body, errors)
        if node is not None:
            nodes[node.name] = node
    if not isinstance(start, str) or start not in raw_nodes:
        errors.append(f"start: {start!r} is not a node (nodes: {', '.join(map(str, raw_nodes))})")
    else:
        errors += _graph_errors(nodes, start)
    if errors:
        raise ScriptError(source, errors)
    return Script(name=name.strip(), start=start, nodes=nodes, source=source,
                  description=str(raw.get("description") or ""))


# --- one node -------------------------------------------------------------------------------------

def _node(name: str, body: Any, errors: list[str]) -> Node | None:
    where = f"node {name!r}"
    if not isinstance(body, dict):
        errors.append(f"{where}: must be a mapping with a type")
        return None
    try:
        node_type = NodeType(body.get("type"))
    except ValueError:
        errors.append(f"{where}: type {body.get('type')!r} is not one of {', '.join(t.value for t in NodeType)}")
        return None
    errors += [f"{where}: unknown field {key!r} for a {node_type.value} node (allowed: "
               f"{', '.join(sorted(FIELDS[node_type] - {'type'}))})" for key in sorted(set(body) - FIELDS[node_type])]
    errors += [f"{where}: missing {key}" + (" branch" if key in ("no_match", "no_input", "default") else "")
               for key in REQUIRED[node_type] if body.get(key) in (None, "", [], {})]
    builder = {NodeType.SAY: _say, NodeType.ASK: _ask, NodeType.BRANCH: _branch, NodeType.ACTION: _action}
    return builder[node_type](name, body, where, errors)


def _say(name: str, body: dict, where: str, errors: list[str]) -> Node:
    return Node(name=name, type=NodeType.SAY, text=_text(body, "text", where, errors), next=_ref(body, "next", where, errors))


def _ask(name: str, body: dict, where: str, errors: list[str]) -> Node:
    inputs = body.get("input", list(INPUT_KINDS))
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not inputs or any(kind not in INPUT_KINDS for kind in inputs):
        errors.append(f"{where}: input {body.get('input')!r} must be speech, dtmf or both")
        inputs = list(INPUT_KINDS)
    timeout = body.get("timeout_seconds", 5)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 30:
        errors.append(f"{where}: timeout_seconds must be a whole number of seconds from 1 to 30, got {timeout!r}")
        timeout = 5
    intents = _intents(body.get("intents"), where, inputs, errors)
    return Node(name=name, type=NodeType.ASK, text=_text(body, "prompt", where, errors), input=tuple(inputs),
                intents=intents, no_match=_ref(body, "no_match", where, errors),
                no_input=_ref(body, "no_input", where, errors),
                reprompt=_text(body, "reprompt", where, errors, required=False), timeout_seconds=timeout)


def _intents(raw: Any, where: str, inputs: list[str], errors: list[str]) -> tuple[Intent, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        errors.append(f"{where}: intents must be a mapping of intent name to keywords/digits/goto")
        return ()
    intents, seen_digits = [], {}
    for intent_name, spec in raw.items():
        at = f"{where} intent {intent_name!r}"
        if not isinstance(spec, dict):
            errors.append(f"{at}: must be a mapping with keywords and/or digits, and goto")
            continue
        errors += [f"{at}: unknown field {key!r} (allowed: {', '.join(sorted(INTENT_FIELDS))})"
                   for key in sorted(set(spec) - INTENT_FIELDS)]
        keywords = _string_list(spec.get("keywords", []), f"{at}: keywords", errors)
        digits = _string_list(spec.get("digits", []), f"{at}: digits", errors)
        for digit in digits:
            if not DIGIT.match(digit):
                errors.append(f"{at}: digit {digit!r} must be one key: 0-9, * or #")
            elif digit == OPT_OUT_KEY:
                errors.append(f"{at}: digit {OPT_OUT_KEY} is reserved for the opt-out every call offers")
            elif digit in seen_digits:
                errors.append(f"{at}: digit {digit} is already used by intent {seen_digits[digit]!r}")
            else:
                seen_digits[digit] = intent_name
        if not keywords and not digits:
            errors.append(f"{at}: needs keywords or digits")
        if digits and "dtmf" not in inputs:
            errors.append(f"{at}: has digits but the node does not gather dtmf")
        if keywords and "speech" not in inputs:
            errors.append(f"{at}: has keywords but the node does not gather speech")
        goto = spec.get("goto")
        if not isinstance(goto, str) or not goto:
            errors.append(f"{at}: missing goto")
            goto = ""
        intents.append(Intent(name=str(intent_name), keywords=tuple(k.casefold() for k in keywords),
                              digits=tuple(digits), goto=goto, learn=_learn(spec.get("learn"), at, errors)))
    return tuple(intents)


def _learn(raw: Any, at: str, errors: list[str]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = {raw: "true"}
    if not isinstance(raw, dict):
        errors.append(f"{at}: learn must be a fact kind or a mapping of fact kind to value")
        return ()
    learned = []
    for kind, value in raw.items():
        if kind not in {k.value for k in FactKind}:
            errors.append(f"{at}: learn {kind!r} is not a fact kind ({', '.join(k.value for k in FactKind)})")
        learned.append((str(kind), str(value).lower() if isinstance(value, bool) else str(value)))
    return tuple(learned)


def _branch(name: str, body: dict, where: str, errors: list[str]) -> Node:
    rules = []
    raw = body.get("on") or []
    if not isinstance(raw, list):
        errors.append(f"{where}: on must be a list of {{fact, goto}}")
        raw = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, dict) or set(rule) != {"fact", "goto"}:
            errors.append(f"{where}: on[{index}] must have exactly fact and goto")
            continue
        if rule["fact"] not in {k.value for k in FactKind}:
            errors.append(f"{where}: on[{index}] fact {rule['fact']!r} is not a fact kind "
                          f"({', '.join(k.value for k in FactKind)})")
        rules.append(BranchRule(fact=str(rule["fact"]), goto=str(rule["goto"])))
    return Node(name=name, type=NodeType.BRANCH, on=tuple(rules), default=_ref(body, "default", where, errors))


def _action(name: str, body: dict, where: str, errors: list[str]) -> Node:
    try:
        kind = ActionKind(body.get("action"))
    except ValueError:
        errors.append(f"{where}: action {body.get('action')!r} is not defined "
                      f"(actions: {', '.join(a.value for a in ActionKind)})")
        kind = ActionKind.END
    return Node(name=name, type=NodeType.ACTION, action=kind, text=_text(body, "say", where, errors, required=False))


def _text(body: dict, key: str, where: str, errors: list[str], required: bool = True) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{where}: {key} must be non-empty text")
        return None
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    except ValueError as error:
        errors.append(f"{where}: {key}: {error} (write {{{{ and }}}} for literal braces)")
        return value
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        errors.append(f"{where}: {key} uses unknown placeholder(s) {', '.join(unknown)} "
                      f"(known: {', '.join(sorted(PLACEHOLDERS))})")
    return value.strip()


def _ref(body: dict, key: str, where: str, errors: list[str]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(f"{where}: {key} must be a node name")
        return None
    return value


def _string_list(value: Any, where: str, errors: list[str]) -> list[str]:
    value = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if not isinstance(value, list) or not all(isinstance(item, (str, int)) and not isinstance(item, bool)
                                              for item in value):
        errors.append(f"{where} must be a list of strings")
        return []
    return [str(item).strip() for item in value if str(item).strip()]


# --- the graph ------------------------------------------------------------------------------------

def _graph_errors(nodes: dict[str, Node], start: str) -> list[str]:
    errors = [f"node {node.name!r}: {field} {target!r} is not a node"
              for node in nodes.values() for field, target in node.targets() if target not in nodes]
    reachable = _reachable(nodes, start)
    errors += [f"node {name!r}: unreachable from start {start!r}" for name in nodes if name not in reachable]
    errors += [f"node {name!r}: loops back to itself without an ask node (the call would never listen)"
               for name in _silent_loops(nodes)]
    return errors


def _reachable(nodes: dict[str, Node], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        stack += [target for _, target in nodes[name].targets()]
    return seen


def _silent_loops(nodes: dict[str, Node]) -> list[str]:
    """Nodes on a cycle made only of say/branch nodes (an ask breaks a cycle: it waits for a reply)."""
    talking = {name: [t for _, t in node.targets() if t in nodes and nodes[t].type in (NodeType.SAY, NodeType.BRANCH)]
               for name, node in nodes.items() if node.type in (NodeType.SAY, NodeType.BRANCH)}
    on_cycle = []
    for origin in talking:
        seen, stack = set(), list(talking[origin])
        while stack:
            name = stack.pop()
            if name == origin:
                on_cycle.append(origin)
                break
            if name not in seen:
                seen.add(name)
                stack += talking.get(name, [])
    return on_cycle
