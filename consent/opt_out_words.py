"""The words that make a reply an opt-out: texted or spoken, English or Spanish.

The FCC lets a consumer revoke consent "by any reasonable means" (47 CFR 64.1200(a)(10), FCC
24-24, reference/tcpa-rules.md §1.4), so this list is what people really send, not only the
carriers' keywords. It is data, shared by SMS replies (`outbound.sms_keywords`) and spoken or
keyed answers on calls (`outbound.scripts.interpreter`, `outbound.carrier_events`), so a texted
STOP and a spoken "stop calling me" are one request.

Two kinds of entry:

- KEYWORDS: a reply that is exactly one of them (after `fold`) is an opt-out. Words that mean
  something else inside a sentence ("para" is also "for", "alto" is "tall", "end", "cancel")
  are keywords only.
- PHRASES: patterns that read as an opt-out anywhere in a message ("please stop", "no me
  llamen", "take me off your list").

They err toward opt-out: a false one costs one confirmation and a compliance review of the
do-not-call entry; a missed one is a violation on every later call or text. Only readings that
plainly mean the opposite are left out: "stop" right after a negation ("don't stop", "I can't
stop by") or as "stop by/in/over" (to visit); such a message still goes to a person for review.

Pure: no I/O. Matching runs on `fold`ed text: case-folded, accents dropped ("no más" is
"no mas"), apostrophes and hyphens removed ("don't" is "dont", "opt-out" is "optout"), other
punctuation as spaces.
"""
from __future__ import annotations

import re
import unicodedata

# --- whole-message keywords -------------------------------------------------------------------

ENGLISH_KEYWORDS = (
    # The FCC's seven (64.1200(a)(10)) and the carriers' / CTIA's.
    "stop", "quit", "end", "revoke", "opt out", "optout", "cancel", "unsubscribe", "stopall", "stop all",
    "remove",
    # As people send them.
    "unsub", "unsuscribe", "unsubcribe", "unsubscibe", "stop it", "stop now", "stop pls", "stop plz",
    "cancel all", "end all", "quit all", "unsubscribe all", "opt me out", "remove me", "dnc", "do not call",
    "dont call", "do not text", "dont text", "no more", "leave me alone", "wrong number",
)
SPANISH_KEYWORDS = (
    "alto", "parar", "para", "pare", "paren", "detener", "detente", "cancelar", "cancela", "basta",
    "ya basta", "baja", "darme de baja", "no mas", "no llamar", "no me llamen", "no me llames",
    "no me llame", "numero equivocado",
)
FRENCH_KEYWORDS = ("arret", "arreter")          # Canadian numbers are NANP numbers too (CTIA)
KEYWORDS = frozenset((*ENGLISH_KEYWORDS, *SPANISH_KEYWORDS, *FRENCH_KEYWORDS))

# --- phrases ----------------------------------------------------------------------------------

_CONTACT = (r"(?:text|txt|texting|texts|message|messaging|messages|msg|msgs|sms|call|calling|calls|"
            r"ring|ringing|contact|contacting|email|emailing|emails|bother|bothering|harass|harassing)")
# Right before "stop", these make it mean the opposite ("dont stop") or something else.
_NOT_BEFORE_STOP = "".join(rf"(?<!\b{word} )" for word in (
    "dont", "do not", "didnt", "did not", "doesnt", "cant", "cannot", "can not", "couldnt", "wont",
    "never", "not", "bus"))
_ES_CONTACT = (r"(?:llamen|llames|llame|llamar|llamarme|llamandome|escriban|escribas|escriba|escribir|"
               r"escribirme|manden|mandes|mande|mandar|mandarme|envien|envies|envie|enviar|enviarme|"
               r"contacten|contactes|contacte|contactar|contactarme|molesten|molestes|moleste|molestar|"
               r"molestarme|marquen|marcar)")
_ES_THINGS = r"(?:mensajes|mensaje|llamadas|llamada|textos|texto|sms|correos|promociones)"

PHRASES: tuple[tuple[str, str], ...] = (
    # English
    ("stop", rf"{_NOT_BEFORE_STOP}\bstop\b(?! (?:by|in|over)\b)"),
    ("unsubscribe", r"\b(?:unsubscribe|unsubscribed|unsuscribe|unsubcribe|unsubscibe|unsub)\b"),
    ("opt out", r"\bopt (?:me )?out\b|\boptout\b"),
    ("remove me", r"\bremove (?:me|my number|this number|my info|us)\b"),
    ("take me off", r"\btake (?:me|my number|this number|us) off\b"),
    ("do not contact", rf"\b(?:dont|do not|never|no longer|quit|cease|pls dont|please dont) (?:ever )?"
                       rf"(?:again )?{_CONTACT}\b"),
    ("do not want", rf"\b(?:dont|do not) want (?:any |these |those |this |your |more |the )*{_CONTACT}\b"),
    ("no more", rf"\bno more {_CONTACT}\b"),
    ("do not call list", r"\b(?:do not call|dont call|dnc) list\b|\bdnc\b"),
    ("leave me alone", r"\bleave (?:me|us) alone\b"),
    ("lose my number", r"\b(?:lose|delete|erase|forget) (?:my|this) number\b"),
    ("wrong number", r"\bwrong (?:number|person)\b"),
    # Spanish
    ("no me llamen", rf"\bno (?:me |nos )?(?:vuelvan a |vuelva a |vuelvas a |vuelvan mas a )?{_ES_CONTACT}\b"),
    ("dejen de llamar", rf"\b(?:dejen|deje|dejes|dejar|dejen ya|paren|pare|paren ya) de {_ES_CONTACT}\b"),
    ("no mas mensajes", rf"\bno (?:quiero |deseo |queremos )?(?:recibir )?(?:mas )?(?:sus |tus |estos |sus )?"
                        rf"{_ES_THINGS}\b"),
    ("dar de baja", r"\b(?:dar|darme|dame|denme|deme|den|doy|darnos) de baja\b"),
    ("quitenme de su lista", r"\b(?:quiten|quitar|quitenme|quiteme|quitame|borren|borrar|borrenme|eliminen|"
                             r"eliminar|eliminenme|saquen|sacar|saquenme) (?:me )?(?:mi numero|este numero|"
                             r"de (?:su|la|tu|esta) lista)\b"),
    ("ya basta", r"\bya basta\b"),
    ("cancelar suscripcion", r"\bcancelar (?:mi |la )?(?:suscripcion|subscripcion)\b"),
    ("numero equivocado", r"\b(?:numero|persona) equivocad[oa]\b|\bequivocado de numero\b"),
)
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in PHRASES)


def fold(text: str) -> str:
    """Case-folded, accents dropped, punctuation dropped, spaces collapsed: " ¡NO MÁS! " -> "no mas"."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = re.sub(r"['\u2019\u2018`\-\u2010\u2011\u2013\u2014]", "", text)
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def keyword(text: str) -> str | None:
    """The keyword the whole reply is, else None."""
    folded = fold(text)
    return folded if folded in KEYWORDS else None


def phrase(text: str) -> str | None:
    """The name of the first opt-out phrase found anywhere in the reply, else None."""
    folded = fold(text)
    for name, pattern in _COMPILED:
        if pattern.search(folded):
            return name
    return None


def opt_out(text: str) -> str | None:
    """What makes the reply an opt-out (a keyword, or a phrase's name), else None."""
    return keyword(text) or phrase(text)
