"""The pure interpreter: (script, memory, position, reply) → the next step.

No clock, no database, no carrier: the conversation layer (`outbound.conversation`) stores what
it returns and the TwiML layer (`telephony.twiml`) renders it. The position travels with the
gather (the node that listens and how many tries it has had), so a step depends on nothing else.

Rules no script can change:

- the call opens with the preamble (`preamble.build_preamble`), and the opt-out key is open
  during it: a script whose first step is an action still listens briefly first;
- at every gather, the opt-out key or speech that reads as an opt-out ends the call as an
  opt-out, before the script sees the reply;
- a reply the node does not expect gets one reprompt, then the node's `no_match` (or `no_input`)
  branch: never silence.
"""
from __future__ import annotations

import re
import string
from collections.abc import Mapping

from outbound.scripts.model import (
    OPT_OUT_KEY, Action, ActionKind, FactKind, Gather, Learned, Node, NodeType, Reply, Script, Step,
)
from outbound.scripts.preamble import CallContext, build_preamble, spell_number
from outbound.sms_keywords import Intent as TextIntent
from outbound.sms_keywords import classify, normalise

MAX_NODES_PER_STEP = 100          # validation forbids silent loops; this is the belt to its braces
PREAMBLE_LISTEN_SECONDS = 2       # the key-press window after the identification, (b)(3)
DEFAULT_REPROMPT = "Sorry, I didn't catch that."


class InterpreterError(RuntimeError):
    """A position that does not fit the script (e.g. the script changed during the call)."""


def begin(script: Script, memory: Mapping[str, str], context: CallContext) -> Step:
    """The first step of a call: the preamble, then the script from its start."""
    step = walk(script, script.start, memory, context)
    prompts = build_preamble(context).lines() + step.prompts
    if step.gather is None and step.action is not None:
        # Keep the opt-out key open after the preamble even when the script acts at once: listen
        # briefly, then resume at the action node.
        action_node = script.nodes[step.action.node]
        return Step(prompts=prompts[:len(prompts) - (1 if action_node.text else 0)],
                    gather=Gather(node=action_node.name, input=("dtmf", "speech"),
                                  timeout_seconds=PREAMBLE_LISTEN_SECONDS),
                    path=step.path)
    return Step(prompts=prompts, gather=step.gather, action=step.action, path=step.path)


def next_step(script: Script, memory: Mapping[str, str], context: CallContext, position: Gather,
              reply: Reply) -> Step:
    """The step after `reply` was heard at `position`."""
    opt_out = global_opt_out(reply, context)
    if opt_out is not None:
        return Step(prompts=opt_out.prompts, action=Action(ActionKind.OPT_OUT, position.node),
                    path=(position.node,), intent=opt_out.intent, learned=opt_out.learned)
    node = script.nodes.get(position.node)
    if node is None:
        raise InterpreterError(f"script {script.name!r} has no node {position.node!r} "
                               "(was the script changed during the call?)")
    if node.type is not NodeType.ASK:
        # A listening pause before an action (see `begin`): anything but an opt-out resumes there.
        return walk(script, node.name, memory, context)
    if reply.empty:
        return _fallback(script, node, position, memory, context, node.no_input, "no_input")
    intent = match_intent(node, reply)
    if intent is None:
        return _fallback(script, node, position, memory, context, node.no_match, "no_match")
    step = walk(script, intent.goto, memory, context)
    learned = tuple(Learned(kind, value) for kind, value in intent.learn)
    return Step(prompts=step.prompts, gather=step.gather, action=step.action, path=(node.name,) + step.path,
                intent=intent.name, learned=learned + step.learned)


def global_opt_out(reply: Reply, context: CallContext) -> Step | None:
    """The opt-out every call offers: the reserved key, or words that read as an opt-out (the
    same reading an SMS reply gets, so a spoken "stop" and a texted STOP are the same request)."""
    goodbye = (f"You will not get more calls from {context.seller}. Thank you, goodbye.",)
    if reply.digits.strip().startswith(OPT_OUT_KEY):
        return Step(prompts=goodbye, intent="opt_out",
                    learned=(Learned(FactKind.KEYPRESS_OPT_OUT.value, OPT_OUT_KEY),))
    if reply.speech.strip():
        verdict = classify(reply.speech)
        if verdict.intent is TextIntent.OPT_OUT:
            learned = [Learned(FactKind.SPOKEN_OPT_OUT.value, reply.speech.strip()[:300])]
            if verdict.matched == "wrong number":
                learned.append(Learned(FactKind.WRONG_NUMBER.value, "true"))
            return Step(prompts=goodbye, intent="opt_out", learned=tuple(learned))
    return None


def match_intent(node: Node, reply: Reply):
    digits = reply.digits.strip()
    if digits:
        for intent in node.intents:
            if digits[:1] in intent.digits:
                return intent
    text = normalise(reply.speech) if reply.speech else ""
    # The longest keyword heard wins: "not interested" is about `no`, though it holds "interested".
    best, best_length = None, 0
    for intent in node.intents:
        for keyword in intent.keywords:
            word = normalise(keyword)
            if len(word) > best_length and re.search(rf"\b{re.escape(word)}\b", text):
                best, best_length = intent, len(word)
    return best


def _fallback(script: Script, node: Node, position: Gather, memory: Mapping[str, str], context: CallContext,
              target: str, why: str) -> Step:
    if position.tries == 0:
        prompts = (fill(node.reprompt or DEFAULT_REPROMPT, memory, context), fill(node.text, memory, context))
        return Step(prompts=prompts, gather=_gather(node, tries=1), path=(node.name,), intent=why)
    step = walk(script, target, memory, context)
    return Step(prompts=step.prompts, gather=step.gather, action=step.action, path=(node.name,) + step.path,
                intent=why, learned=step.learned)


def walk(script: Script, start: str, memory: Mapping[str, str], context: CallContext) -> Step:
    """From `start`, say and branch until a node listens (ask) or acts (action)."""
    prompts: list[str] = []
    path: list[str] = []
    name = start
    for _ in range(MAX_NODES_PER_STEP):
        node = script.nodes[name]
        path.append(name)
        if node.type is NodeType.SAY:
            prompts.append(fill(node.text, memory, context))
            name = node.next
        elif node.type is NodeType.BRANCH:
            name = next((rule.goto for rule in node.on if memory.get(rule.fact)), node.default)
        elif node.type is NodeType.ASK:
            prompts.append(fill(node.text, memory, context))
            return Step(prompts=tuple(prompts), gather=_gather(node), path=tuple(path))
        else:
            if node.text:
                prompts.append(fill(node.text, memory, context))
            return Step(prompts=tuple(prompts), action=Action(node.action, node.name), path=tuple(path))
    raise InterpreterError(f"script {script.name!r}: more than {MAX_NODES_PER_STEP} nodes without listening "
                           f"from {start!r}")


def _gather(node: Node, tries: int = 0) -> Gather:
    hints = tuple(keyword for intent in node.intents for keyword in intent.keywords)
    return Gather(node=node.name, tries=tries, input=node.input, timeout_seconds=node.timeout_seconds, hints=hints)


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return ""


def fill(text: str | None, memory: Mapping[str, str], context: CallContext) -> str:
    """A node's text with its placeholders filled; an unknown value reads as nothing."""
    if not text:
        return ""
    values = _Values(seller=context.seller, first_name=context.first_name or "",
                     callback_number=spell_number(context.callback_number) if context.callback_number else "",
                     callback_time=memory.get("callback_time", ""))
    filled = string.Formatter().vformat(text, (), values)
    return re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", filled)).strip()
