"""TwiML for <Connect><Stream>, and the public WebSocket URL derived from a request."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from voxrelay.protocols.twiml import connect_stream_twiml, public_ws_url

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def parse(twiml: str) -> ET.Element:
    assert twiml.startswith(DECLARATION)
    return ET.fromstring(twiml.encode("utf-8"))


def test_structure() -> None:
    twiml = connect_stream_twiml("wss://voice.example.com/twilio/stream", {"k": "v", "call": "7"})
    root = parse(twiml)
    assert root.tag == "Response"
    assert [c.tag for c in root] == ["Connect"]
    connect = root[0]
    assert [c.tag for c in connect] == ["Stream"]
    stream = connect[0]
    assert stream.attrib == {"url": "wss://voice.example.com/twilio/stream"}
    assert [(p.tag, p.attrib) for p in stream] == [
        ("Parameter", {"name": "k", "value": "v"}),
        ("Parameter", {"name": "call", "value": "7"}),
    ]


def test_no_parameters() -> None:
    stream = parse(connect_stream_twiml("wss://h/s"))[0][0]
    assert len(stream) == 0


def test_hostile_values_are_escaped() -> None:
    hostile = {
        'a"b<c>&d': "x'/><Hangup/><Parameter name=\"z",
        "nl": "line1\nline2\r\n\ttab",
        "amp": "&amp; &#60; ]]>",
    }
    url = 'wss://h.example.com/s?a=1&b="2"<x>'
    twiml = connect_stream_twiml(url, hostile)
    root = parse(twiml)
    assert "<Hangup" not in twiml
    assert root.find(".//Hangup") is None
    stream = root[0][0]
    assert stream.attrib["url"] == url
    assert {p.attrib["name"]: p.attrib["value"] for p in stream} == hostile


xml_text = st.text(
    st.characters(
        exclude_categories=("Cs",),
        exclude_characters="".join(
            chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF)
        ),
    ),
    max_size=40,
)


@given(st.dictionaries(xml_text.filter(bool), xml_text, max_size=6), xml_text)
def test_any_representable_values_round_trip(params: dict[str, str], path: str) -> None:
    url = "wss://h.example.com/" + path
    stream = parse(connect_stream_twiml(url, params))[0][0]
    assert stream.attrib["url"] == url
    assert {p.attrib["name"]: p.attrib["value"] for p in stream} == params


@pytest.mark.parametrize("bad", ["\x00", "a\x1bb", "\ufffe", "\ud800"])
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="XML cannot represent"):
        connect_stream_twiml("wss://h/s", {"k": bad})
    with pytest.raises(ValueError, match="XML cannot represent"):
        connect_stream_twiml("wss://h/s" + bad)


def test_non_string_values_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        connect_stream_twiml("wss://h/s", {"k": 5})  # type: ignore[dict-item]


def test_empty_parameter_name_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        connect_stream_twiml("wss://h/s", {"": "v"})


@pytest.mark.parametrize("url", ["ws://h/s", "https://h/s", "h/s", ""])
def test_only_wss_urls(url: str) -> None:
    with pytest.raises(ValueError, match="wss://"):
        connect_stream_twiml(url)


def test_ws_allowed_for_local_tests() -> None:
    stream = parse(connect_stream_twiml("ws://localhost:8080/s", allow_insecure=True))[0][0]
    assert stream.attrib["url"] == "ws://localhost:8080/s"


# --------------------------------------------------------------------------------------------
# public_ws_url


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Host": "abc.ngrok.app", "X-Forwarded-Proto": "https"}, "wss://abc.ngrok.app/tw/s"),
        ({"host": "abc.ngrok.app", "x-forwarded-proto": "http"}, "ws://abc.ngrok.app/tw/s"),
        ({"HOST": "h.example:8443", "X-Forwarded-Proto": "HTTPS"}, "wss://h.example:8443/tw/s"),
        ({"Host": "h.example", "X-Forwarded-Proto": "https, http"}, "wss://h.example/tw/s"),
        ({"Host": "10.0.0.5:8080"}, "wss://10.0.0.5:8080/tw/s"),
        ({"Host": "relay_server:8080"}, "wss://relay_server:8080/tw/s"),
        ({"Host": "[::1]:8080", "X-Forwarded-Proto": "http"}, "ws://[::1]:8080/tw/s"),
    ],
)
def test_url_from_request_headers(headers: dict[str, str], expected: str) -> None:
    assert public_ws_url(headers, "/tw/s") == expected


def test_default_scheme_without_forwarded_proto() -> None:
    assert public_ws_url({"Host": "localhost:8080"}, "s", default_scheme="ws") == (
        "ws://localhost:8080/s"
    )


def test_bad_default_scheme() -> None:
    with pytest.raises(ValueError, match="'ftp'"):
        public_ws_url({"Host": "h"}, "/s", default_scheme="ftp")


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://voice.example.com", "wss://voice.example.com/tw/s"),
        ("https://voice.example.com/base/", "wss://voice.example.com/base/tw/s"),
        ("http://127.0.0.1:8000/base", "ws://127.0.0.1:8000/base/tw/s"),
        ("wss://voice.example.com", "wss://voice.example.com/tw/s"),
    ],
)
def test_configured_public_url_wins(configured: str, expected: str) -> None:
    headers = {"Host": "internal:9000", "X-Forwarded-Proto": "http"}
    assert public_ws_url(headers, "/tw/s", configured) == expected


@pytest.mark.parametrize("configured", ["ftp://h/", "voice.example.com", "https://"])
def test_bad_configured_url(configured: str) -> None:
    with pytest.raises(ValueError, match="public URL"):
        public_ws_url({}, "/s", configured)


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "no Host"),
        ({"Host": 'evil.com/"><Hangup/>'}, "evil.com"),
        ({"Host": "a b"}, "'a b'"),
        ({"Host": "user@evil.com"}, "user@evil.com"),
        ({"Host": "h", "X-Forwarded-Proto": "gopher"}, "gopher"),
    ],
)
def test_bad_headers_are_refused(headers: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        public_ws_url(headers, "/s")


def test_derived_url_goes_into_twiml() -> None:
    url = public_ws_url({"Host": "abc.ngrok.app", "X-Forwarded-Proto": "https"}, "/tw/s")
    assert parse(connect_stream_twiml(url))[0][0].attrib["url"] == "wss://abc.ngrok.app/tw/s"
