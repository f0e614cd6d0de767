"""What an inbound text asks for: opt out, help, re-subscribe, or something a person must read.

Pure: no database, no clock. The rules come from 47 CFR 64.1200(a)(10) (FCC 24-24) and the CTIA
Messaging Principles (reference/tcpa-rules.md §1.4 and §3.2):

- a reply that is exactly one of the opt-out keywords (the FCC's seven, CTIA's and the carriers'
  additions, the variants people send, Spanish ones included) is an opt-out;
- any other wording a reasonable person would read as "stop contacting me" is an opt-out too, so
  a list of phrases errs toward opt-out: a wrong opt-out costs one confirmation text, a missed
  one is a violation for every later call or text. Both lists are `consent.opt_out_words`;
- HELP/INFO and START/UNSTOP/YES are matched only as the whole message, because "yes" or "info"
  inside a sentence is a conversation, not a command.

Everything else is stored for review by a person.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from consent import opt_out_words


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    HELP = "help"
    START = "start"
    OTHER = "other"              # stored for review


# The opt-out words (English, Spanish, French; keywords and phrases) are data of `consent`,
# shared with spoken replies on calls.
OPT_OUT_KEYWORDS = opt_out_words.KEYWORDS
HELP_KEYWORDS = frozenset({"help", "info"})
START_KEYWORDS = frozenset({"start", "unstop", "yes"})


@dataclass(frozen=True)
class Classification:
    intent: Intent
    matched: str | None          # the keyword or phrase that decided it; None for OTHER
    normalised: str


def normalise(body: str) -> str:
    """Case-folded, punctuation dropped, spaces collapsed: "  Opt-Out! " -> "optout".

    Apostrophes and hyphens vanish rather than become spaces, so "don't" is "dont" and "opt-out"
    is "optout"; any other punctuation becomes a space so "stop.please" stays two words.
    Compatibility normalisation first folds full-width and styled letters to plain ones.
    """
    text = unicodedata.normalize("NFKC", body).casefold()
    text = re.sub(r"['\u2019\u2018`\-\u2010\u2011\u2013\u2014]", "", text)
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def classify(body: str) -> Classification:
    text = normalise(body)
    keyword = opt_out_words.keyword(body)
    if keyword is not None:
        return Classification(Intent.OPT_OUT, keyword, text)
    for keywords, intent in ((HELP_KEYWORDS, Intent.HELP), (START_KEYWORDS, Intent.START)):
        if text in keywords:
            return Classification(intent, text, text)
    phrase = opt_out_words.phrase(body)
    if phrase is not None:
        return Classification(Intent.OPT_OUT, phrase, text)
    return Classification(Intent.OTHER, None, text)


def opt_out_phrase(normalised_text: str) -> str | None:
    """The name of the first opt-out phrase found in the text, else None."""
    return opt_out_words.phrase(normalised_text)


# --- the replies ------------------------------------------------------------------------------
# Each is one plain message with no marketing (47 CFR 64.1200(a)(12) allows exactly one
# confirmation, confirming and nothing more). The confirmation names texts and calls because a
# revocation by text is applied to every channel (revoke-all, the conservative reading).

def opt_out_confirmation(brand: str) -> str:
    return (f"You're unsubscribed from {brand} texts and calls. No more messages will be sent. "
            "Reply START to resubscribe.")


def help_reply(brand: str, contact: str) -> str:
    return (f"{brand}: for help contact {contact}. Msg frequency varies. "
            "Msg & data rates may apply. Reply STOP to opt out.")


def resubscribed_reply(brand: str) -> str:
    return (f"{brand}: you're resubscribed to texts. Msg frequency varies. "
            "Msg & data rates may apply. Reply HELP for help, STOP to opt out.")


def resubscribe_requested_reply(brand: str) -> str:
    # The number is on the internal do-not-call list, which only a compliance review lifts:
    # saying "resubscribed" would promise texts the engine will not send.
    return (f"{brand}: we got your request to get texts again. Texts resume only once our team has "
            "reviewed it; until then you won't get texts from us.")


def already_subscribed_reply(brand: str) -> str:
    return f"{brand}: you're already subscribed to texts. Reply STOP to opt out."


def cannot_resubscribe_reply(brand: str, contact: str) -> str:
    return (f"{brand}: we can't resubscribe you by text without your consent on file. "
            f"To sign up, contact {contact}.")
