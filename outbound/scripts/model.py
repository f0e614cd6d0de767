"""The shapes of a script and of one step of a conversation.

A script is a graph of named nodes:

- `say`: speak `text`, go to `next`;
- `ask`: speak `prompt` and gather speech and/or key presses; each intent names keywords and/or
  digits and the node to go to; `no_match` and `no_input` name the fallback nodes (after one
  reprompt);
- `branch`: go to the first `on` entry whose fact is in the contact's memory, else `default`;
- `action`: transfer | opt_out | schedule_callback | leave_voicemail | end, optionally saying
  `say` first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class NodeType(StrEnum):
    SAY = "say"
    ASK = "ask"
    BRANCH = "branch"
    ACTION = "action"


class ActionKind(StrEnum):
    TRANSFER = "transfer"
    OPT_OUT = "opt_out"
    SCHEDULE_CALLBACK = "schedule_callback"
    LEAVE_VOICEMAIL = "leave_voicemail"
    END = "end"


class FactKind(StrEnum):
    """What the conversation memory can hold about a contact."""

    CALLBACK_REQUESTED_AT = "callback_requested_at"
    NOT_INTERESTED = "not_interested"
    WRONG_NUMBER = "wrong_number"
    PREFERRED_CHANNEL = "preferred_channel"
    SPOKEN_OPT_OUT = "spoken_opt_out"
    KEYPRESS_OPT_OUT = "keypress_opt_out"
    QUALIFIED = "qualified"
    VOICEMAIL_LEFT = "voicemail_left"


INPUT_KINDS = ("speech", "dtmf")
# Reserved for the preamble's opt-out (47 CFR 64.1200(b)(3)): a script may not give it a meaning.
OPT_OUT_KEY = "9"


@dataclass(frozen=True)
class Intent:
    name: str
    keywords: tuple[str, ...]
    digits: tuple[str, ...]
    goto: str
    learn: tuple[tuple[str, str], ...] = ()      # (fact kind, value) stored when it matches


@dataclass(frozen=True)
class BranchRule:
    fact: str
    goto: str


@dataclass(frozen=True)
class Node:
    name: str
    type: NodeType
    text: str | None = None                 # say: text; ask: prompt; action: what to say first
    next: str | None = None                 # say
    input: tuple[str, ...] = ()             # ask
    intents: tuple[Intent, ...] = ()        # ask
    no_match: str | None = None             # ask
    no_input: str | None = None             # ask
    reprompt: str | None = None             # ask: said before the prompt on the second try
    timeout_seconds: int = 5                # ask
    on: tuple[BranchRule, ...] = ()         # branch
    default: str | None = None              # branch
    action: ActionKind | None = None        # action

    def targets(self) -> list[tuple[str, str]]:
        """(field, node name) for every edge out of this node."""
        edges: list[tuple[str, str | None]] = [("next", self.next), ("no_match", self.no_match),
                                               ("no_input", self.no_input), ("default", self.default)]
        edges += [(f"intents.{intent.name}.goto", intent.goto) for intent in self.intents]
        edges += [(f"on[{i}].goto", rule.goto) for i, rule in enumerate(self.on)]
        return [(name, target) for name, target in edges if target is not None]


@dataclass(frozen=True)
class Script:
    name: str
    start: str
    nodes: dict[str, Node]
    source: str = ""                        # the file it came from
    description: str = ""


# --- one step of a conversation ------------------------------------------------------------------

@dataclass(frozen=True)
class Gather:
    """Listen after speaking; the reply comes back with `node` and `tries` (the position)."""

    node: str
    tries: int = 0
    input: tuple[str, ...] = INPUT_KINDS
    timeout_seconds: int = 5
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    node: str


@dataclass(frozen=True)
class Learned:
    kind: str
    value: str


@dataclass(frozen=True)
class Reply:
    """What the carrier heard: speech (with its confidence) and/or digits; both empty = silence."""

    speech: str = ""
    digits: str = ""
    confidence: float | None = None

    @property
    def empty(self) -> bool:
        return not self.speech.strip() and not self.digits.strip()

    def heard(self) -> str:
        return self.speech.strip() or (f"pressed {self.digits}" if self.digits else "")


@dataclass(frozen=True)
class Step:
    """What to do now: speak `prompts`, then either gather (`gather`) or act (`action`); with
    neither, hang up. `path` lists the nodes passed; `intent` is what the reply matched."""

    prompts: tuple[str, ...]
    gather: Gather | None = None
    action: Action | None = None
    path: tuple[str, ...] = ()
    intent: str | None = None
    learned: tuple[Learned, ...] = field(default_factory=tuple)
