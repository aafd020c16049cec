"""TwiML that connects a call to our WebSocket, and the public URL to put in it.

The webhook answers Twilio with `<Connect><Stream>` (bidirectional: we can send audio, marks
and clear). Per-call values travel as `<Parameter>` because Twilio may drop the stream URL's
query string; they arrive in the `start` message's `customParameters`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

__all__ = ["connect_stream_twiml", "public_ws_url"]

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Attribute values: besides markup, escape whitespace that attribute normalisation would
# otherwise turn into plain spaces.
_ATTR_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&apos;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def _attr(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    bad = _NOT_XML.search(value)
    if bad:
        raise ValueError(
            f"{what} {value[:60]!r} contains {bad.group()!r} at {bad.start()}, "
            "which XML cannot represent"
        )
    return value.translate(_ATTR_ESCAPES)


def connect_stream_twiml(
    ws_url: str,
    parameters: Mapping[str, str] = _EMPTY,
    *,
    allow_insecure: bool = False,
) -> str:
    """`<Response><Connect><Stream url=..>` with one `<Parameter>` per item, as XML text.

    Twilio only connects to `wss://` URLs; `allow_insecure` admits `ws://` for local tests.
    """
    scheme = urlsplit(ws_url).scheme.lower() if isinstance(ws_url, str) else ""
    allowed = ("wss", "ws") if allow_insecure else ("wss",)
    if scheme not in allowed:
        raise ValueError(
            f"stream URL {ws_url!r} must use {' or '.join(s + '://' for s in allowed)}"
        )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Response><Connect><Stream url="{_attr(ws_url, "stream URL")}">',
    ]
    for name, value in parameters.items():
        if not name:
            raise ValueError("parameter names must not be empty")
        parts.append(
            f'<Parameter name="{_attr(name, "parameter name")}" '
            f'value="{_attr(value, f"parameter {name!r} value")}"/>'
        )
    parts.append("</Stream></Connect></Response>")
    return "".join(parts)


# A DNS name (underscores allowed: container service names) or IPv4 address, or a
# bracketed IPv6 address, with an optional port.
_HOST: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)

_WS_SCHEMES: Final[dict[str, str]] = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    v = headers.get(name)
    if v is not None:
        return v
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


def _join(base_path: str, path: str) -> str:
    return base_path.rstrip("/") + "/" + path.lstrip("/")


def public_ws_url(
    headers: Mapping[str, str],
    path: str,
    configured_public_url: str | None = None,
    *,
    default_scheme: str = "wss",
) -> str:
    """The URL the platform must use to reach `path` on this server over WebSocket.

    A configured public URL (`https://example.com/base`) wins: behind some proxies the request
    headers do not show the public name. Otherwise `Host` and `X-Forwarded-Proto` (set by
    TLS-terminating proxies and tunnels) are used; without that header `default_scheme` applies.
    The result is also the URL Twilio signs for the WebSocket upgrade.
    """
    if configured_public_url is not None:
        u = urlsplit(configured_public_url)
        scheme = _WS_SCHEMES.get(u.scheme.lower())
        if scheme is None or not u.netloc:
            raise ValueError(
                f"public URL {configured_public_url!r} must be an absolute http(s):// or "
                "ws(s):// URL"
            )
        return f"{scheme}://{u.netloc}{_join(u.path, path)}"
    host = _header(headers, "Host")
    if not host:
        raise ValueError("the request has no Host header; configure the public URL instead")
    host = host.strip()
    if not _HOST.fullmatch(host):
        raise ValueError(f"Host header {host[:100]!r} is not a host name with an optional port")
    proto = _header(headers, "X-Forwarded-Proto")
    if proto:
        # Several proxies append their own: the first is the one the client used.
        first = proto.split(",")[0].strip().lower()
        scheme = _WS_SCHEMES.get(first)
        if scheme is None:
            raise ValueError(f"X-Forwarded-Proto {proto[:40]!r} is not http or https")
    else:
        scheme = _WS_SCHEMES.get(default_scheme.lower())
        if scheme is None:
            raise ValueError(f"default_scheme {default_scheme!r} must be ws, wss, http or https")
    return f"{scheme}://{host}{_join('', path)}"
