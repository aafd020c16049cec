"""Settings precedence and validation; the HTTP side (webhook, signatures) as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator
from voxrelay.agent import EchoAgent, load_agent
from voxrelay.httpd import RelayHttp, public_http_url
from voxrelay.settings import Settings, load_settings

TOKEN = "secret-auth-token"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "relay.toml"
    cfg.write_text('[voxrelay]\nport = 9000\nspeech-end-ms = 400\nagent = "echo"\n')
    s = load_settings(config=cfg, env={})
    assert (s.port, s.speech_end_ms) == (9000, 400)
    s = load_settings(config=cfg, env={"VOXRELAY_PORT": "9100", "VOXRELAY_ALLOW_INSECURE_WS": "1"})
    assert (s.port, s.speech_end_ms, s.allow_insecure_ws) == (9100, 400, True)
    s = load_settings(config=cfg, env={"VOXRELAY_PORT": "9100"}, overrides={"port": 9200})
    assert s.port == 9200
    # None in overrides means "flag not given".
    assert load_settings(env={}, overrides={"port": None}).port == Settings().port


def test_optional_values_from_env() -> None:
    s = load_settings(
        env={"VOXRELAY_PUBLIC_URL": "https://a.example", "VOXRELAY_PING_INTERVAL_S": "none"}
    )
    assert s.public_url == "https://a.example" and s.ping_interval_s is None


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"VOXRELAY_TWILIO_AUTH_TOKN": "x"}, "VOXRELAY_TWILIO_AUTH_TOKN"),
        ({"VOXRELAY_PORT": "eighty"}, "integer"),
        ({"VOXRELAY_PORT": "70000"}, "port"),
        ({"VOXRELAY_ALLOW_INSECURE_WS": "maybe"}, "true or false"),
        ({"VOXRELAY_PLAYOUT_LEAD_MS": "5"}, "playout_lead_ms"),
        ({"VOXRELAY_PLAYOUT_LEAD_MS": "20"}, "playout_lead_ms must be 40..1000"),
        ({"VOXRELAY_STREAM_SECRET": ""}, "non-empty"),
        ({"VOXRELAY_BAD_INPUT_WINDOW_S": "nan"}, "bad_input_window_s"),
    ],
)
def test_bad_settings_are_refused_with_the_name(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        load_settings(env=env)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "relay.toml"
    cfg.write_text("twilio_auth_tokn = 'x'\n")
    with pytest.raises(ValueError, match="twilio_auth_tokn"):
        load_settings(config=cfg, env={})


def test_agent_loading() -> None:
    assert load_agent("echo") is EchoAgent
    assert load_agent("voxrelay.agent:EchoAgent") is EchoAgent
    with pytest.raises(ValueError, match="not known"):
        load_agent("parrot")
    with pytest.raises(ValueError, match="not callable"):
        load_agent("voxrelay.agent:__all__")


@pytest.mark.parametrize(
    ("headers", "configured", "want"),
    [
        ({"Host": "r.example.com"}, None, "https://r.example.com/twilio/voice?x=1"),
        (
            {"Host": "r.example.com", "X-Forwarded-Proto": "http"},
            None,
            "http://r.example.com/twilio/voice?x=1",
        ),
        (
            {"Host": "ignored"},
            "https://pub.example.com/base",
            "https://pub.example.com/base/twilio/voice?x=1",
        ),
    ],
)
def test_public_http_url(headers: dict[str, str], configured: str | None, want: str) -> None:
    assert public_http_url(headers, "/twilio/voice?x=1", configured) == want


def test_webhook_signature_and_twiml() -> None:
    app = RelayHttp(Settings(twilio_auth_token=TOKEN))
    form = {"CallSid": "CA1", "From": "+15551230000", "Digits": ""}
    headers = {"host": "relay.example.com", "x-forwarded-proto": "https"}
    sig = RequestValidator(TOKEN).compute_signature("https://relay.example.com/twilio/voice", form)
    ok = app.voice("POST", "/twilio/voice", {**headers, "x-twilio-signature": sig}, form)
    assert ok.status == 200 and b'url="wss://relay.example.com/twilio"' in ok.body
    tampered = {**form, "From": "+15550000000"}
    assert (
        app.voice("POST", "/twilio/voice", {**headers, "x-twilio-signature": sig}, tampered).status
        == 403
    )
    assert app.voice("POST", "/twilio/voice", headers, form).status == 403


def test_webhook_without_token_accepts_and_refuses_ws_unless_allowed() -> None:
    headers = {"Host": "localhost:8080", "X-Forwarded-Proto": "http"}
    assert RelayHttp(Settings()).voice("POST", "/twilio/voice", headers, {}).status == 500
    reply = RelayHttp(Settings(allow_insecure_ws=True)).voice("POST", "/twilio/voice", headers, {})
    assert reply.status == 200 and b'url="ws://localhost:8080/twilio"' in reply.body


def test_body_requests_routing() -> None:
    app = RelayHttp(Settings())
    form_ct = {"Content-Type": "application/x-www-form-urlencoded", "Host": "h.example"}
    assert app.handle_body_request("POST", "/twilio/voice", form_ct, b"CallSid=CA1").status == 200
    assert app.handle_body_request("POST", "/twilio/voice", {"Host": "h"}, b"{}").status == 415
    assert app.handle_body_request("PUT", "/twilio/voice", form_ct, b"").status == 405
    assert app.handle_body_request("POST", "/elsewhere", form_ct, b"").status == 404
    assert app.handle_body_request("POST", "/twilio/voice", form_ct, b"\xff\xfe").status == 400


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"turn_complete_ms": 700}, "turn timing must satisfy"),
        ({"turn_incomplete_ms": 400}, "turn timing must satisfy"),
        ({"turn_pause_ms": 250}, "turn_pause_ms must be 20..turn_complete_ms-1"),
        ({"turn_pause_ms": 10}, "turn_pause_ms must be 20..turn_complete_ms-1"),
        ({"interrupt_min_ms": 10}, "interrupt_min_ms must be >= 20"),
        # The media engine's own limits, checked at startup rather than failing every call.
        ({"max_utterance_ms": 900_000}, r"max_utterance_ms must be 1\.\.=600000, got 900000"),
        ({"turn_incomplete_ms": 70_000}, r"turn_incomplete_ms must be 1\.\.=60000"),
        ({"interrupt_min_ms": 70_000}, r"interrupt_min_ms must be 1\.\.=60000"),
        ({"speech_start_ms": 70_000}, r"speech_start_ms must be 1\.\.=60000"),
        ({"barge_in_ms": 70_000}, r"barge_in_ms must be 1\.\.=60000"),
        ({"preroll_ms": 5000}, r"preroll_ms must be 0\.\.2000"),
    ],
)
def test_conversation_timing_is_checked(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**changes)  # type: ignore[arg-type]


def test_conversation_agent_with_a_missing_script_fails_before_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voxrelay.cli import main

    missing = tmp_path / "nope.toml"
    assert main(["demo", "--script", str(missing)]) == 2
    out = capsys.readouterr().out
    assert f"voxrelay demo: {missing}: cannot read script" in out
    assert "calling" not in out  # no call was placed
