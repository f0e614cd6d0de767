"""The opt-out words customers really send (consent.opt_out_words), English and Spanish, and the
readings that must not count: the same list reads texts and spoken answers."""
from __future__ import annotations

import pytest

from consent import opt_out_words
from outbound.scripts.interpreter import global_opt_out
from outbound.scripts.model import Reply
from outbound.scripts.preamble import CallContext
from outbound.sms_keywords import Intent, classify

OPT_OUTS = [
    # The FCC's and carriers' keywords, as before.
    "STOP", "Stop.", "stopall", "STOP ALL", "Unsubscribe", "CANCEL", "end", "Quit", "REVOKE", "Opt-Out",
    "OPTOUT", "remove",
    # Variants people send.
    "Stop please", "PLEASE STOP!!!", "stop it", "unsub", "Unsuscribe", "stop texting me", "Stop calling me",
    "quit calling", "remove me from your list", "take me off your list", "Take my number off",
    "do not call", "Don't call this number again", "DNC", "put me on your do not call list",
    "no more texts", "leave me alone", "lose my number", "wrong number", "I don't want these messages",
    "why don't you stop calling me",
    # Spanish.
    "ALTO", "Parar", "para", "CANCELAR", "Basta", "¡Ya basta!", "no me llamen", "No me llamen más",
    "NO LLAMAR", "no me vuelvan a llamar", "Dejen de llamarme", "dejen de enviarme mensajes",
    "No más mensajes", "no quiero recibir llamadas", "quiero darme de baja", "Baja",
    "quítenme de su lista", "borren mi número", "número equivocado", "cancelar suscripción",
    # French (Canadian numbers are NANP numbers).
    "ARRÊT",
]

NOT_OPT_OUTS = [
    "don't stop", "Please don't stop sending me deals", "I can't stop by today", "I'll stop by tomorrow",
    "I'm at the bus stop", "nonstop", "it stopped working", "stopwatch", "unstoppable",
    "cancel my appointment", "when does the sale end", "para mañana", "es muy alto", "estoy de vacaciones",
    "me llamo Juan", "yes", "help", "Call me at 5", "What time do you close?",
]


@pytest.mark.parametrize("body", OPT_OUTS)
def test_a_reply_that_asks_to_stop_is_an_opt_out(body):
    assert opt_out_words.opt_out(body) is not None, body
    assert classify(body).intent is Intent.OPT_OUT, body


@pytest.mark.parametrize("body", NOT_OPT_OUTS)
def test_a_reply_that_does_not_ask_to_stop_is_not_one(body):
    assert opt_out_words.opt_out(body) is None, body
    assert classify(body).intent is not Intent.OPT_OUT, body


@pytest.mark.parametrize("body", ["para", "alto", "cancel", "end", "baja"])
def test_ambiguous_words_count_only_as_the_whole_reply(body):
    assert classify(body).intent is Intent.OPT_OUT
    assert classify(f"{body} el lunes por favor").intent is not Intent.OPT_OUT


def test_accents_and_case_fold_away():
    assert opt_out_words.fold("  ¡NO MÁS!  ") == "no mas"
    assert opt_out_words.fold("Don’t  call") == "dont call"


@pytest.mark.parametrize("speech", ["no me llamen", "alto", "stop calling me", "take me off your list"])
def test_a_spoken_opt_out_ends_the_call_as_one(speech):
    step = global_opt_out(Reply(speech=speech, digits=""), CallContext(seller="Acme", callback_number=None, voice="live"))
    assert step is not None and step.intent == "opt_out"


def test_a_spoken_answer_that_is_not_an_opt_out_goes_on():
    assert global_opt_out(Reply(speech="I can't stop by today", digits=""), CallContext(seller="Acme", callback_number=None, voice="live")) is None
