"""Twilio request signatures (`X-Twilio-Signature`), standard library only.

signature = base64(HMAC-SHA1(auth token, URL + name1 + value1 + name2 + value2 ...)) with the
POST parameters sorted by name. Which exact URL Twilio signed is not always known to the
server (a proxy may add or drop the default port; for the WebSocket upgrade Twilio signs
`wss://host/path` without the query string), so `validate` tries each plausible form and
accepts if any matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

__all__ = ["compute_signature", "signed_url_candidates", "validate"]

_DEFAULT_PORTS: Final[dict[str, int]] = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def compute_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The signature Twilio sends for a request to `url` with form `params`."""
    if not auth_token:
        # An empty key would make every signature forgeable by anyone.
        raise ValueError("auth_token is empty; set the account's auth token")
    data = url
    if params:
        data += "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _split_port(hostport: str) -> tuple[str, str | None]:
    # A bracketed IPv6 literal has colons of its own; only a colon after "]" starts a port.
    close = hostport.rfind("]")
    colon = hostport.rfind(":")
    if colon > close:
        return hostport[:colon], hostport[colon + 1 :]
    return hostport, None


def _port_forms(url: str) -> list[str]:
    """`url` as given, then with its default port added or removed (if it has one)."""
    forms = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return forms
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.netloc:
        return forms
    start = url.find("//") + 2
    netloc = parts.netloc
    if url[start : start + len(netloc)] != netloc:
        return forms
    rest = url[start + len(netloc) :]
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = _split_port(hostport)
    if port is None:
        other = f"{host}:{default}"
    elif port == str(default):
        other = host
    else:
        return forms
    forms.append(url[:start] + userinfo + at + other + rest)
    return forms


def signed_url_candidates(url: str) -> list[str]:
    """Every URL form `validate` accepts a signature for, most likely first."""
    candidates = _port_forms(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return candidates
    if parts.scheme.lower() in ("ws", "wss") and (parts.query or parts.fragment or "?" in url):
        cut = min(i for i in (url.find("?"), url.find("#"), len(url)) if i >= 0)
        candidates += _port_forms(url[:cut])
    return list(dict.fromkeys(candidates))


def validate(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | None,
    signature: str,
) -> bool:
    """True when `signature` is valid for `url` (in any accepted form) and `params`.

    For the WebSocket upgrade pass the `wss://` URL the platform connected to and empty params.
    Every candidate is compared in constant time, and all are compared, so the time taken does
    not reveal which form or how many bytes matched.
    """
    if not isinstance(signature, str) or not signature:
        return False
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    ok = False
    for candidate in signed_url_candidates(url):
        try:
            expected = compute_signature(auth_token, candidate, params).encode("ascii")
        except UnicodeEncodeError:
            # Lone surrogates cannot have been signed by anyone.
            return False
        ok |= hmac.compare_digest(expected, given)
    return ok
