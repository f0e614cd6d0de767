"""Twilio webhook signatures (X-Twilio-Signature), checked and made with the SDK's own validator.

Twilio signs the URL it was told to call, i.e. the configured public URL (OUTBOUND_PUBLIC_URL),
not the URL the application sees: behind a TLS-terminating proxy the app sees http://10.0.0.5:8000
where Twilio called https://calls.example.com. So the URL to check is rebuilt from the configured
base and the request's path and query, never taken from the request.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from twilio.request_validator import RequestValidator

FormParams = Mapping[str, str | Sequence[str]]


class _RepeatedFormParams(dict):
    """Form parameters where a key may repeat. RequestValidator asks a mapping for `getall` (as
    on Starlette's and Flask's multi-dicts); a plain dict of lists would make it fail."""

    def getall(self, name: str) -> list[str]:
        return list(self[name])


def public_url(public_url_base: str, path: str, query: str | None = None) -> str:
    """The URL Twilio called: the configured base, then the path and the query as received.

    `path` is the path the application sees. When the proxy serves the app under a prefix and
    strips it, put the prefix in the base (https://example.com/outbound); when it passes the
    prefix through, the base is the bare origin.
    """
    if not public_url_base or "://" not in public_url_base:
        raise ValueError(f"public_url_base must be an absolute URL such as https://calls.example.com, "
                         f"got {public_url_base!r}")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    url = public_url_base.rstrip("/") + path
    # The query string is signed byte for byte as Twilio sent it, so it is not re-encoded.
    return f"{url}?{query}" if query else url


def validate_twilio_request(auth_token: str, public_url_base: str, path: str, query: str | None,
                            params: FormParams, signature: str | None) -> bool:
    """True when `signature` is Twilio's signature of this request under `auth_token`."""
    if not auth_token:
        # An empty key would make every signature anyone can compute valid.
        raise ValueError("auth_token is required to validate Twilio signatures")
    if not signature:
        return False
    url = public_url(public_url_base, path, query)
    return RequestValidator(auth_token).validate(url, _form(params), signature)


def sign(auth_token: str, url: str, params: FormParams) -> str:
    """The X-Twilio-Signature Twilio would send for a POST of `params` to `url` (tests, simulator)."""
    if not auth_token:
        raise ValueError("auth_token is required to sign")
    return RequestValidator(auth_token).compute_signature(url, _form(params))


def _form(params: FormParams) -> _RepeatedFormParams:
    return _RepeatedFormParams({name: _values(value) for name, value in params.items()})


def _values(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]
