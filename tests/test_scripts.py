"""Scripts as data: validation names the node, the preamble cannot be removed, the interpreter
is a pure function of (script, memory, position, reply)."""
from __future__ import annotations

import pytest

from outbound.scripts.interpreter import begin, next_step
from outbound.scripts.loader import ScriptError, load_script, parse_script
from outbound.scripts.model import ActionKind, Gather, Reply
from outbound.scripts.preamble import CallContext, build_preamble
from outbound.scripts.recording_consent import all_party_states, needs_recording_notice

ROBOT = CallContext(seller="Sunrise Solar", callback_number="+12125550100", voice="artificial",
                    candidate_states=("NY",), first_name="Ann")
MINIMAL = """
name: minimal
start: hello
nodes:
  hello: {type: say, text: Hello., next: bye}
  bye: {type: action, action: end, say: Goodbye.}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, source="test.yaml")
    return caught.value.errors


def test_the_bundled_sample_script_loads():
    script = load_script("solar_qualify")
    assert script.start == "greet" and script.nodes["homeowner"].type == "ask"


@pytest.mark.parametrize("nodes,expected", [
    ("  a: {type: say, text: Hi, next: nowhere}", "node 'a': next 'nowhere' is not a node"),
    ("  a: {type: say, text: Hi, next: b}\n  b: {type: action, action: dance}",
     "node 'b': action 'dance' is not defined"),
    ("  a: {type: action, action: end}\n  lonely: {type: action, action: end}",
     "node 'lonely': unreachable from start 'a'"),
    ("  a: {type: ask, prompt: 'Yes?', intents: {yes: {keywords: [yes], goto: b}}, no_match: b}\n"
     "  b: {type: action, action: end}", "node 'a': missing no_input branch"),
    ("  a: {type: branch, on: [{fact: qualified, goto: b}]}\n  b: {type: action, action: end}",
     "node 'a': missing default branch"),
    ("  a: {type: say, text: Hi, next: a, colour: red}", "node 'a': unknown field 'colour'"),
    ("  a: {type: say, text: Hi, next: b}\n  b: {type: say, text: Again, next: a}",
     "node 'a': loops back to itself without an ask node"),
    ("  a: {type: ask, prompt: 'Yes?', intents: {yes: {digits: ['9'], goto: b}}, no_match: b, no_input: b}\n"
     "  b: {type: action, action: end}", "digit 9 is reserved for the opt-out"),
    ("  a: {type: say, text: 'Hi {nickname}', next: b}\n  b: {type: action, action: end}",
     "node 'a': text uses unknown placeholder(s) nickname"),
    ("  a: {type: branch, on: [{fact: shoe_size, goto: b}], default: b}\n  b: {type: action, action: end}",
     "fact 'shoe_size' is not a fact kind"),
])
def test_validation_errors_name_the_node(nodes, expected):
    errors = errors_of(f"name: t\nstart: a\nnodes:\n{nodes}\n")
    assert any(expected in error for error in errors), errors


def test_all_errors_are_reported_at_once_and_malformed_yaml_is_a_clear_error():
    errors = errors_of("name: t\nstart: a\nnodes:\n  a: {type: say, next: x}\n  b: {type: wave}\n")
    assert len(errors) >= 3 and any("node 'a': missing text" in e for e in errors)
    assert any("node 'b': type 'wave'" in e for e in errors)
    assert "not valid YAML" in errors_of("name: t\nnodes: [unclosed\n")[0]
    with pytest.raises(ScriptError, match="no bundled script of that name"):
        load_script("no_such_script")


def test_robot_voice_preamble_comes_first_and_cannot_be_removed():
    step = begin(parse_script(MINIMAL), {}, ROBOT)
    assert step.prompts[:4] == ("You are hearing an artificial, computer-generated voice.",
                                "This is a call from Sunrise Solar.",
                                "To stop calls from Sunrise Solar, press 9 or say stop at any time.",
                                "You can reach Sunrise Solar at 2 1 2, 5 5 5, 0 1 0 0.")
    # The script acts at once (say, end), yet the opt-out key is open after the preamble.
    assert step.gather is not None and step.gather.node == "bye" and step.action is None
    assert next_step(parse_script(MINIMAL), {}, ROBOT, step.gather, Reply(digits="9")).action.kind is ActionKind.OPT_OUT
    resumed = next_step(parse_script(MINIMAL), {}, ROBOT, step.gather, Reply())
    assert resumed.action.kind is ActionKind.END and resumed.prompts == ("Goodbye.",)


@pytest.mark.parametrize("states,recorded,announced", [
    (("CA",), True, True),            # all-party
    (("NY", "PA"), True, True),        # any candidate state counts
    (("NY",), True, False),            # one-party
    ((), True, True),                  # unknown location: fail closed
    (("CA",), False, False),           # not recorded: nothing to announce
    (("OR",), True, False),            # OR: phone calls are one-party
])
def test_recording_is_announced_before_anything_else_in_all_party_states(states, recorded, announced):
    context = CallContext(seller="S", callback_number=None, voice="live", recorded=recorded, candidate_states=states)
    first = build_preamble(context).lines()[0]
    assert (first == "This call is recorded.") is announced


def test_recorded_ai_voice_discloses_the_artificial_voice_after_the_recording_notice():
    context = CallContext(seller="S", callback_number="+12125550100", voice="artificial", recorded=True,
                          candidate_states=("FL",))
    lines = build_preamble(context).lines()
    assert lines[0] == "This call is recorded." and "artificial" in lines[1]


def test_all_party_list_is_data_with_sources():
    states = all_party_states()
    assert {"CA", "FL", "PA", "WA"} <= set(states) and "OR" not in states
    assert all(entry["citation"] for entry in states.values())
    assert needs_recording_notice(["ca"]) and not needs_recording_notice(["TX"])


def test_unexpected_speech_gets_one_reprompt_then_the_no_match_path():
    script = load_script("solar_qualify")
    first = begin(script, {}, ROBOT)
    again = next_step(script, {}, ROBOT, first.gather, Reply(speech="Bananas are yellow."))
    assert again.gather == Gather(node="homeowner", tries=1, input=first.gather.input,
                                  timeout_seconds=5, hints=first.gather.hints)
    assert again.prompts[0] == "Sorry, I did not understand."
    end = next_step(script, {}, ROBOT, again.gather, Reply(speech="Bananas are yellow."))
    assert end.action.kind is ActionKind.END and "You can reach us at 2 1 2" in end.prompts[0]
    silent = next_step(script, {}, ROBOT, again.gather, Reply())
    assert silent.intent == "no_input" and silent.action.kind is ActionKind.END


@pytest.mark.parametrize("reply,intent,action", [
    (Reply(speech="Yes, I own my home."), "yes", ActionKind.TRANSFER),
    (Reply(digits="1"), "yes", ActionKind.TRANSFER),
    (Reply(speech="No, I'm not interested."), "no", ActionKind.END),      # "not interested" beats "interested"
    (Reply(speech="Call me back after 5 pm"), "callback", ActionKind.SCHEDULE_CALLBACK),
    (Reply(speech="Stop calling me."), "opt_out", ActionKind.OPT_OUT),
    (Reply(speech="You have the wrong number."), "opt_out", ActionKind.OPT_OUT),
    (Reply(digits="9"), "opt_out", ActionKind.OPT_OUT),
])
def test_replies_lead_where_the_script_says(reply, intent, action):
    script = load_script("solar_qualify")
    step = next_step(script, {}, ROBOT, begin(script, {}, ROBOT).gather, reply)
    assert (step.intent, step.action.kind) == (intent, action)


def test_memory_changes_the_greeting():
    script = load_script("solar_qualify")
    remembered = {"callback_requested_at": "2026-07-15T21:00:00Z", "callback_time": "after 5 PM"}
    assert "last time you asked us to call you back after 5 PM" in " ".join(begin(script, remembered, ROBOT).prompts)
    assert "last time" not in " ".join(begin(script, {}, ROBOT).prompts)


def test_campaign_create_refuses_a_malformed_script_naming_the_node(cli_runner, outbound_env, tmp_path):
    import json

    from outbound.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstart: a\nnodes:\n  a: {type: say, text: Hi, next: gone}\n")
    base = ["campaign", "create", "robo", "--channel", "voice", "--purpose", "telemarketing", "--voice",
            "artificial", "--caller-id", "+12125550100", "--json"]
    live = [arg if arg != "artificial" else "live" for arg in base]
    spoken_by_a_robot = cli_runner.invoke(app, live + ["--conversation-script", "solar_qualify"])
    assert spoken_by_a_robot.exit_code == 2 and "synthetic voice" in spoken_by_a_robot.output
    refused = cli_runner.invoke(app, base + ["--conversation-script", str(bad)])
    assert refused.exit_code == 2
    assert "settings.conversation.script" in refused.output and "node 'a': next 'gone' is not a node" in refused.output
    created = cli_runner.invoke(app, base + ["--conversation-script", "solar_qualify", "--record-calls",
                                             "--machine-policy", "leave_voicemail", "--seller-name", "Sunrise Solar"])
    assert created.exit_code == 0, created.output
    conversation = json.loads(created.output.strip().splitlines()[-1])["settings"]["conversation"]
    assert conversation == {"script": "solar_qualify", "record_calls": True, "machine_policy": "leave_voicemail",
                            "seller_name": "Sunrise Solar", "callback_number": None}
