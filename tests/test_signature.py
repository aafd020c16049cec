"""Twilio request signatures, checked against the `twilio` package as an independent signer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from voxrelay.protocols.signature import compute_signature, signed_url_candidates, validate

TOKEN = "12345678901234567890123456789012"
WEBHOOK = "https://voice.example.com/twilio/voice?tenant=7"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def twilio_sign(url: str, params: dict[str, str] | None = None, token: str = TOKEN) -> str:
    sig: str = RequestValidator(token).compute_signature(url, params or {})
    return sig


def test_compute_matches_twilio_for_a_webhook() -> None:
    assert compute_signature(TOKEN, WEBHOOK, PARAMS) == twilio_sign(WEBHOOK, PARAMS)


def test_compute_matches_twilio_for_an_upgrade_url() -> None:
    url = "wss://voice.example.com/twilio/stream"
    assert compute_signature(TOKEN, url, None) == twilio_sign(url)
    assert compute_signature(TOKEN, url, {}) == twilio_sign(url)


def test_webhook_signature_validates() -> None:
    sig = twilio_sign(WEBHOOK, PARAMS)
    assert validate(TOKEN, WEBHOOK, PARAMS, sig)


@pytest.mark.parametrize(
    ("signed", "received"),
    [
        ("https://voice.example.com/v?x=1", "https://voice.example.com:443/v?x=1"),
        ("https://voice.example.com:443/v?x=1", "https://voice.example.com/v?x=1"),
        ("http://voice.example.com/v", "http://voice.example.com:80/v"),
        ("http://voice.example.com:80/v", "http://voice.example.com/v"),
    ],
)
def test_default_port_may_be_explicit_or_not(signed: str, received: str) -> None:
    assert validate(TOKEN, received, PARAMS, twilio_sign(signed, PARAMS))


@pytest.mark.parametrize(
    ("signed", "received"),
    [
        ("wss://voice.example.com/twilio/stream", "wss://voice.example.com/twilio/stream"),
        ("wss://voice.example.com/twilio/stream", "wss://voice.example.com/twilio/stream?a=b"),
        ("wss://voice.example.com/twilio/stream", "wss://voice.example.com:443/twilio/stream?a"),
        ("wss://voice.example.com:443/twilio/stream", "wss://voice.example.com/twilio/stream"),
        ("wss://voice.example.com/twilio/stream?a=b", "wss://voice.example.com/twilio/stream?a=b"),
        ("ws://localhost/s", "ws://localhost:80/s"),
    ],
)
def test_websocket_upgrade_signatures(signed: str, received: str) -> None:
    assert validate(TOKEN, received, {}, twilio_sign(signed))
    assert validate(TOKEN, received, None, twilio_sign(signed))


@pytest.mark.parametrize(
    ("signed", "received"),
    [
        # A non-default port is part of the URL.
        ("https://voice.example.com:8443/v", "https://voice.example.com/v"),
        ("https://voice.example.com/v", "https://voice.example.com:8443/v"),
        # 80 is not the default for https, nor 443 for ws.
        ("https://voice.example.com:80/v", "https://voice.example.com/v"),
        ("ws://voice.example.com:443/v", "ws://voice.example.com/v"),
        # Webhooks (https) are signed with their query string; only upgrades drop it.
        ("https://voice.example.com/v", "https://voice.example.com/v?x=1"),
        ("https://voice.example.com/v?x=1", "https://voice.example.com/v?x=2"),
        # Another host, path or scheme.
        ("https://voice.example.com/v", "https://evil.example.com/v"),
        ("https://voice.example.com/v", "https://voice.example.com/w"),
        ("https://voice.example.com/v", "http://voice.example.com/v"),
        ("wss://voice.example.com/v", "https://voice.example.com/v"),
    ],
)
def test_other_urls_are_rejected(signed: str, received: str) -> None:
    assert not validate(TOKEN, received, PARAMS, twilio_sign(signed, PARAMS))


def test_tampered_signature_is_rejected() -> None:
    sig = twilio_sign(WEBHOOK, PARAMS)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (flipped, sig[:-1], sig + "A", "", " ", "\u00e9" + sig[1:], sig.lower()):
        assert not validate(TOKEN, WEBHOOK, PARAMS, bad)


def test_tampered_params_are_rejected() -> None:
    sig = twilio_sign(WEBHOOK, PARAMS)
    assert not validate(TOKEN, WEBHOOK, {**PARAMS, "Digits": "1235"}, sig)
    assert not validate(TOKEN, WEBHOOK, {**PARAMS, "Extra": ""}, sig)
    assert not validate(TOKEN, WEBHOOK, {k: v for k, v in PARAMS.items() if k != "To"}, sig)
    assert not validate(TOKEN, WEBHOOK, None, sig)


def test_wrong_token_is_rejected() -> None:
    sig = twilio_sign(WEBHOOK, PARAMS)
    assert not validate(TOKEN[:-1] + "x", WEBHOOK, PARAMS, sig)


def test_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="auth_token"):
        compute_signature("", WEBHOOK, PARAMS)
    with pytest.raises(ValueError, match="auth_token"):
        validate("", WEBHOOK, PARAMS, "x")


def test_unencodable_input_is_invalid_not_a_crash() -> None:
    assert not validate(TOKEN, "wss://h/\ud800", {}, twilio_sign("wss://h/"))


def test_candidates() -> None:
    assert signed_url_candidates("wss://h.example/s?t=1") == [
        "wss://h.example/s?t=1",
        "wss://h.example:443/s?t=1",
        "wss://h.example/s",
        "wss://h.example:443/s",
    ]
    assert signed_url_candidates("https://u:p@h:443/x") == [
        "https://u:p@h:443/x",
        "https://u:p@h/x",
    ]
    assert signed_url_candidates("wss://[::1]/s") == ["wss://[::1]/s", "wss://[::1]:443/s"]
    assert signed_url_candidates("https://h:8443/x") == ["https://h:8443/x"]
    assert signed_url_candidates("not a url") == ["not a url"]
    # Unparseable, or changed by the parser (it drops tabs): only the URL exactly as given.
    assert signed_url_candidates("wss://[::1/s?x") == ["wss://[::1/s?x"]
    assert signed_url_candidates("https://h\t.example/x") == ["https://h\t.example/x"]


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
params_st = st.dictionaries(text, text, max_size=8)


@given(params_st, st.sampled_from(["https://a.example/v", "https://a.example:443/v?q=1"]))
def test_random_params_match_twilio(params: dict[str, str], url: str) -> None:
    sig = twilio_sign(url, params)
    assert compute_signature(TOKEN, url, params) == sig
    assert validate(TOKEN, url, params, sig)


@given(params_st.filter(bool), text, st.data())
def test_random_param_tampering_is_rejected(
    params: dict[str, str], junk: str, data: st.DataObject
) -> None:
    sig = twilio_sign(WEBHOOK, params)
    name = data.draw(st.sampled_from(sorted(params)))
    changed = {**params, name: params[name] + (junk or "x")}
    assert not validate(TOKEN, WEBHOOK, changed, sig)


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40), text)
def test_random_tokens_and_paths(token: str, path: str) -> None:
    url = "wss://voice.example.com/" + path
    sig = twilio_sign(url, None, token)
    assert compute_signature(token, url) == sig
    assert validate(token, url, {}, sig)
