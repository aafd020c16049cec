"""Twilio Media Streams parsing, builders and the per-call state machine, driven by text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from voxrelay.protocols import errors
from voxrelay.protocols.errors import CLOSE_CODES, KINDS, ProtocolError, classify_frame_error
from voxrelay.protocols.twilio import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    StreamState,
    clear_message,
    connected_message,
    dtmf_message,
    mark_echo_message,
    mark_message,
    media_message,
    parse_control,
    parse_message,
    start_message,
    stop_message,
)

# The messages exactly as PROTOCOLS.md documents them (placeholders kept as values).
CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = (
    '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC..","streamSid":"MZ..",'
    '"callSid":"CA..","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw",'
    '"sampleRate":8000,"channels":1},"customParameters":{"k":"v"}},"streamSid":"MZ.."}'
)
MEDIA = (
    '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2",'
    '"timestamp":"5","payload":"<b64>"},"streamSid":"MZ.."}'
)
DTMF = (
    '{"event":"dtmf","streamSid":"MZ..","sequenceNumber":"5",'
    '"dtmf":{"track":"inbound_track","digit":"1"}}'
)
MARK_ECHO = '{"event":"mark","sequenceNumber":"6","streamSid":"MZ..","mark":{"name":"utt-7"}}'
STOP = (
    '{"event":"stop","sequenceNumber":"7","stop":{"accountSid":"AC..","callSid":"CA.."},'
    '"streamSid":"MZ.."}'
)
OUT_MEDIA = '{"event":"media","streamSid":"MZ..","media":{"payload":"<b64 mu-law 8k>"}}'
OUT_MARK = '{"event":"mark","streamSid":"MZ..","mark":{"name":"utt-7"}}'
OUT_CLEAR = '{"event":"clear","streamSid":"MZ.."}'

TELNYX_START = (
    '{"event":"start","sequence_number":"1","start":{"user_id":"u-1","call_control_id":"v3:cc",'
    '"client_state":"","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},'
    '"stream_id":"st-9"}'
)
EXOTEL_START = (
    '{"event":"start","sequence_number":1,"stream_sid":"ex-1","start":{"stream_sid":"ex-1",'
    '"call_sid":"c-1","account_sid":"a-1","custom_parameters":{"x":"y"},'
    '"media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}}'
)


def doc(text: str, **changes: Any) -> str:
    """A documented message with some fields replaced (dotted paths), compact JSON."""
    obj = json.loads(text)
    for path, value in changes.items():
        *parents, last = path.split("__")
        o = obj
        for p in parents:
            o = o[p]
        if value is DELETE:
            del o[last]
        else:
            o[last] = value
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


DELETE = object()


def key_order(obj: Any) -> Any:
    if isinstance(obj, dict):
        return [(k, key_order(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [key_order(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Parsing documented messages


def test_documented_messages_parse_to_their_dataclasses() -> None:
    assert parse_message(CONNECTED) == Connected("Call", "1.0.0")
    assert parse_message(START) == Start(
        "MZ..",
        "CA..",
        "AC..",
        ("inbound",),
        "audio/x-mulaw",
        8000,
        1,
        {"k": "v"},
        sequence_number=1,
        dialect="twilio",
    )
    assert parse_message(MEDIA) == Media(
        "<b64>", "inbound", 2, 5, stream_sid="MZ..", sequence_number=4
    )
    assert parse_message(DTMF) == Dtmf("1", "inbound_track", stream_sid="MZ..", sequence_number=5)
    assert parse_message(MARK_ECHO) == Mark("utt-7", stream_sid="MZ..", sequence_number=6)
    assert parse_message(STOP) == Stop("CA..", "AC..", stream_sid="MZ..", sequence_number=7)


def test_server_to_platform_messages_parse_for_the_simulator() -> None:
    assert parse_message(OUT_MEDIA) == Media(
        "<b64 mu-law 8k>", "inbound", None, None, stream_sid="MZ.."
    )
    assert parse_message(OUT_MARK) == Mark("utt-7", stream_sid="MZ..")
    assert parse_message(OUT_CLEAR) == Clear(stream_sid="MZ..")


def test_parse_accepts_bytes_and_bytearray() -> None:
    assert parse_message(START.encode()) == parse_message(START)
    assert parse_message(bytearray(DTMF.encode())) == parse_message(DTMF)
    assert parse_message(memoryview(MARK_ECHO.encode())) == parse_message(MARK_ECHO)


def test_counters_may_be_numbers_or_strings() -> None:
    as_numbers = doc(START, sequenceNumber=1, start__mediaFormat__sampleRate="8000")
    assert parse_message(as_numbers) == parse_message(START)
    media = parse_message(doc(MEDIA, sequenceNumber=4, media__chunk=2, media__timestamp=5))
    assert media == parse_message(MEDIA)


def test_telnyx_snake_case_start_is_accepted_and_labelled() -> None:
    ev = parse_message(TELNYX_START)
    assert isinstance(ev, Start)
    assert ev.dialect == "telnyx"
    assert ev.stream_sid == "st-9"
    assert ev.call_sid == "v3:cc"
    assert ev.account_sid == ""
    assert (ev.encoding, ev.sample_rate, ev.channels) == ("PCMU", 8000, 1)
    assert ev.tracks == ("inbound",)
    assert ev.sequence_number == 1


def test_exotel_snake_case_start_is_accepted_and_labelled() -> None:
    ev = parse_message(EXOTEL_START)
    assert isinstance(ev, Start)
    assert ev.dialect == "exotel"
    assert (ev.stream_sid, ev.call_sid, ev.account_sid) == ("ex-1", "c-1", "a-1")
    assert ev.custom_parameters == {"x": "y"}
    assert (ev.encoding, ev.sample_rate) == ("audio/x-raw", 8000)


def test_snake_case_mark_and_stop() -> None:
    mark = parse_message(
        '{"event":"mark","sequence_number":"3","stream_id":"s","mark":{"name":"m"}}'
    )
    assert mark == Mark("m", stream_sid="s", sequence_number=3, dialect="telnyx")
    stop = parse_message(
        '{"event":"stop","stream_sid":"e","stop":{"call_sid":"c","account_sid":"a",'
        '"reason":"callended"}}'
    )
    assert stop == Stop("c", "a", stream_sid="e", reason="callended", dialect="exotel")


def test_dialect_is_guessed_from_the_spelling() -> None:
    connected = parse_message('{"event":"connected","sequence_number":"1","version":"1.0.0"}')
    assert connected == Connected("", "1.0.0", sequence_number=1, dialect="telnyx")
    # Twilio's top-level keys with a snake_case media format: still not Twilio's own shape.
    mixed = doc(START, start__media_format={"encoding": "PCMU", "sample_rate": 8000})
    mixed = mixed.replace(
        ',"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}', ""
    )
    ev = parse_message(mixed)
    assert isinstance(ev, Start) and ev.dialect == "telnyx" and ev.encoding == "PCMU"


def test_start_stream_sid_may_be_only_top_level_or_only_inside() -> None:
    inside_only = parse_message(doc(START, streamSid=DELETE))
    outside_only = parse_message(doc(START, start__streamSid=DELETE))
    assert isinstance(inside_only, Start) and isinstance(outside_only, Start)
    assert inside_only.stream_sid == outside_only.stream_sid == "MZ.."


def test_optional_fields_take_documented_defaults() -> None:
    ev = parse_message(doc(START, start__customParameters=DELETE, start__tracks=DELETE))
    assert isinstance(ev, Start)
    assert ev.custom_parameters == {}
    assert ev.tracks == ("inbound",)
    assert parse_message('{"event":"dtmf","dtmf":{"digit":"#"}}') == Dtmf("#", "inbound_track")
    assert parse_message('{"event":"stop"}') == Stop("", "")
    assert parse_message('{"event":"connected"}') == Connected("", "")


def test_parse_control_refuses_media_and_clear() -> None:
    for text, name in ((MEDIA, "media"), (OUT_CLEAR, "clear")):
        with pytest.raises(ProtocolError) as e:
            parse_control(text)
        assert e.value.kind == "unknown_event"
        assert name in str(e.value)
    assert parse_control(START) == parse_message(START)


# --------------------------------------------------------------------------------------------
# Bad shapes: each raises the right kind, and the message names the bad value

BAD: list[tuple[str | bytes, str, str]] = [
    ("not json{", "not_json", "not json{"),
    (b"\xff\xfe{}", "not_json", "byte 0"),
    ('{"event":"mark","x":NaN}', "not_json", "NaN"),
    ('{"event":"mark","x":Infinity}', "not_json", "Infinity"),
    ("[1, 2]", "not_object", "[1, 2]"),
    ('"start"', "not_object", "'start'"),
    ('{"event":"hello"}', "unknown_event", "hello"),
    ('{"event":"error","payload":{"code":100003}}', "unknown_event", "error"),
    ('{"streamSid":"MZ1"}', "missing_field", "event"),
    ('{"event":5}', "bad_field", "5"),
    (doc(START, start=DELETE), "missing_field", "start"),
    (doc(START, start="abc"), "bad_field", "'abc'"),
    (doc(START, start__callSid=DELETE), "missing_field", "start.callSid"),
    (doc(START, start__callSid=12), "bad_field", "12"),
    (doc(START, start__accountSid=DELETE), "missing_field", "start.accountSid"),
    (doc(START, start__mediaFormat=DELETE), "missing_field", "start.mediaFormat"),
    (doc(START, start__mediaFormat__encoding=DELETE), "missing_field", "encoding"),
    (doc(START, start__mediaFormat__sampleRate=DELETE), "missing_field", "sampleRate"),
    (doc(START, start__mediaFormat__sampleRate="eight"), "bad_field", "'eight'"),
    (doc(START, start__mediaFormat__sampleRate=-8000), "bad_field", "-8000"),
    (doc(START, start__mediaFormat__sampleRate=True), "bad_field", "True"),
    (doc(START, start__mediaFormat__sampleRate=8000.5), "bad_field", "8000.5"),
    (doc(START, start__mediaFormat__channels="one"), "bad_field", "'one'"),
    (doc(START, start__tracks="inbound"), "bad_field", "'inbound'"),
    (doc(START, start__customParameters=["k"]), "bad_field", "['k']"),
    (doc(START, start__customParameters={"k": 1}), "bad_field", "customParameters.k"),
    (doc(START, start__streamSid="MZother"), "bad_field", "MZother"),
    (doc(START, start__streamSid=DELETE, streamSid=DELETE), "missing_field", "streamSid"),
    (doc(START, sequenceNumber="1a"), "bad_field", "'1a'"),
    (doc(START, sequenceNumber="-1"), "bad_field", "'-1'"),
    (doc(START, sequenceNumber="\u0663"), "bad_field", "sequenceNumber"),
    (doc(MEDIA, media__payload=DELETE), "missing_field", "media.payload"),
    (doc(MEDIA, media__payload=7), "bad_field", "7"),
    (doc(MEDIA, media="AAAA"), "bad_field", "'AAAA'"),
    (doc(MEDIA, media__chunk="two"), "bad_field", "'two'"),
    (doc(DTMF, dtmf__digit="x"), "bad_field", "'x'"),
    (doc(DTMF, dtmf__digit="12"), "bad_field", "'12'"),
    (doc(DTMF, dtmf=DELETE), "missing_field", "dtmf"),
    (doc(MARK_ECHO, mark__name=DELETE), "missing_field", "mark.name"),
    (doc(MARK_ECHO, mark__name=None), "bad_field", "None"),
    (doc(MARK_ECHO, mark=[]), "bad_field", "[]"),
    (doc(STOP, stop="now"), "bad_field", "'now'"),
    (doc(STOP, stop__callSid=3), "bad_field", "3"),
    (doc(CONNECTED, version=1), "bad_field", "1"),
]


@pytest.mark.parametrize(("text", "kind", "needle"), BAD)
def test_bad_shapes_raise_the_right_kind_naming_the_value(
    text: str | bytes, kind: str, needle: str
) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_message(text)
    assert e.value.kind == kind
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_too_large_is_checked_before_parsing() -> None:
    big = doc(START, start__customParameters={"pad": "x" * 300})
    with pytest.raises(ProtocolError) as e:
        parse_message(big, max_size=200)
    assert e.value.kind == "too_large"
    assert str(len(big)) in str(e.value) and "200" in str(e.value)
    # The limit counts UTF-8 bytes, not characters.
    wide = doc(MARK_ECHO, mark__name="\u20ac" * 60)
    assert len(wide) < 200 < len(wide.encode())
    with pytest.raises(ProtocolError, match="exceeds the limit of 200 bytes"):
        parse_message(wide, max_size=200)
    assert isinstance(parse_message(wide, max_size=1000), Mark)


def test_deep_nesting_is_not_json_not_a_crash() -> None:
    deep = '{"event":"mark","x":' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(ProtocolError) as e:
        parse_message(deep, max_size=1 << 20)
    assert e.value.kind == "not_json"


def test_bad_values_in_messages_are_truncated() -> None:
    with pytest.raises(ProtocolError) as e:
        parse_message('{"event":"' + "z" * 10_000 + '"}')
    assert len(str(e.value)) < 200


# --------------------------------------------------------------------------------------------
# Builders


@pytest.mark.parametrize(
    ("built", "documented"),
    [
        (lambda: connected_message(), CONNECTED),
        (lambda: start_message("MZ..", "CA..", "AC..", {"k": "v"}), START),
        (lambda: media_message("MZ..", 4, 2, 5, "<b64>"), MEDIA),
        (lambda: dtmf_message("MZ..", 5, "1"), DTMF),
        (lambda: mark_echo_message("MZ..", 6, "utt-7"), MARK_ECHO),
        (lambda: stop_message("MZ..", 7, "CA..", "AC.."), STOP),
        (lambda: mark_message("MZ..", "utt-7"), OUT_MARK),
        (lambda: clear_message("MZ.."), OUT_CLEAR),
    ],
)
def test_builders_match_the_documented_json(built: Any, documented: str) -> None:
    text = built()
    assert json.loads(text) == json.loads(documented)
    assert key_order(json.loads(text)) == key_order(json.loads(documented))
    assert text == documented


def test_builders_escape_and_round_trip_hostile_values() -> None:
    sid = 'MZ"\\\n\u00e9'
    params = {'a"b': "c\\d", "\u00fc": "\u20ac", "": ""}
    ev = parse_message(start_message(sid, "CA\t", "AC}", params, sequence_number=0))
    assert isinstance(ev, Start)
    assert (ev.stream_sid, ev.call_sid, ev.account_sid) == (sid, "CA\t", "AC}")
    assert ev.custom_parameters == params
    assert ev.sequence_number == 0
    assert parse_message(mark_message(sid, '"}')) == Mark('"}', stream_sid=sid)


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1"])
def test_builders_reject_bad_counters(bad: Any) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        media_message("MZ1", bad, 1, 0, "")
    with pytest.raises(ValueError, match=r"\bseq\b"):
        stop_message("MZ1", bad, "CA", "AC")


def test_dtmf_builder_rejects_non_digits() -> None:
    with pytest.raises(ValueError, match="'x'"):
        dtmf_message("MZ1", 1, "x")


plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(
    stream_sid=plain_text.filter(bool),
    call_sid=plain_text,
    account_sid=plain_text,
    params=st.dictionaries(plain_text, plain_text, max_size=5),
    seq=st.integers(0, 2**40),
)
def test_start_builder_round_trips(
    stream_sid: str, call_sid: str, account_sid: str, params: dict[str, str], seq: int
) -> None:
    ev = parse_message(
        start_message(stream_sid, call_sid, account_sid, params, sequence_number=seq)
    )
    assert ev == Start(
        stream_sid,
        call_sid,
        account_sid,
        ("inbound",),
        "audio/x-mulaw",
        8000,
        1,
        params,
        sequence_number=seq,
    )


@given(
    seq=st.integers(0, 2**40),
    chunk=st.integers(0, 2**40),
    ts=st.integers(0, 2**40),
    payload=st.binary(max_size=200),
)
def test_media_builder_round_trips(seq: int, chunk: int, ts: int, payload: bytes) -> None:
    import base64

    b64 = base64.b64encode(payload).decode()
    ev = parse_message(media_message("MZ1", seq, chunk, ts, b64))
    assert ev == Media(b64, "inbound", chunk, ts, stream_sid="MZ1", sequence_number=seq)


# --------------------------------------------------------------------------------------------
# No crash on any input: only ProtocolError escapes

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | plain_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(plain_text, children, max_size=4)
    ),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {
        "event": st.sampled_from(
            ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"]
        )
    },
    optional={
        "streamSid": json_values,
        "sequenceNumber": json_values,
        "start": json_values,
        "media": json_values,
        "dtmf": json_values,
        "mark": json_values,
        "stop": json_values,
        "stream_id": json_values,
    },
)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_text_raises_only_protocol_errors(text: str | bytes) -> None:
    try:
        parse_message(text)
    except ProtocolError as e:
        assert e.kind in KINDS


@given(message_like, st.sampled_from(["connected", "start", "media", "mark", "other"]))
def test_arbitrary_messages_raise_only_protocol_errors(obj: dict[str, Any], hint: str) -> None:
    text = json.dumps(obj)
    try:
        ev = parse_message(text)
    except ProtocolError as e:
        assert e.kind in KINDS
    else:
        assert type(ev).__name__.lower() == obj["event"]
    state = StreamState()
    for h in ("start", hint):
        try:
            state.receive(h, text)
        except ProtocolError as e:
            assert e.kind in KINDS


# --------------------------------------------------------------------------------------------
# StreamState


def kind_of(state: StreamState, event: str, text: str | bytes) -> str:
    with pytest.raises(ProtocolError) as e:
        state.receive(event, text)
    return e.value.kind


def test_a_whole_call() -> None:
    s = StreamState()
    assert s.phase == "new" and s.stream_sid is None and s.custom_parameters == {}
    assert s.receive("connected", CONNECTED) == Connected("Call", "1.0.0")
    assert s.phase == "connected"
    start = s.receive("start", START)
    assert isinstance(start, Start) and s.start == start
    assert s.phase == "streaming"
    assert (s.stream_sid, s.call_sid, s.account_sid) == ("MZ..", "CA..", "AC..")
    assert s.custom_parameters == {"k": "v"}
    assert s.dialect == "twilio"
    for _ in range(3):
        assert s.receive("media", MEDIA) is None
    assert s.media_messages == 3
    assert s.receive("dtmf", DTMF) == Dtmf(
        "1", "inbound_track", stream_sid="MZ..", sequence_number=5
    )
    assert s.receive("mark", MARK_ECHO) == Mark("utt-7", stream_sid="MZ..", sequence_number=6)
    assert s.mark_message("utt-8") == mark_message("MZ..", "utt-8")
    assert s.clear_message() == OUT_CLEAR
    assert isinstance(s.receive("stop", STOP), Stop)
    assert s.phase == "stopped"


def test_connected_is_optional() -> None:
    s = StreamState()
    assert isinstance(s.receive("start", START), Start)
    assert s.phase == "streaming"


def test_media_mark_and_dtmf_need_a_start() -> None:
    for phase_setup in ([], [("connected", CONNECTED)]):
        s = StreamState()
        for ev, text in phase_setup:
            s.receive(ev, text)
        assert kind_of(s, "media", MEDIA) == "media_before_start"
        assert kind_of(s, "mark", MARK_ECHO) == "out_of_order"
        assert kind_of(s, "dtmf", DTMF) == "out_of_order"
        assert s.media_messages == 0
        # The errors changed nothing: the call can still start.
        assert isinstance(s.receive("start", START), Start)


def test_start_twice_and_connected_late_are_out_of_order() -> None:
    s = StreamState()
    s.receive("start", START)
    with pytest.raises(ProtocolError, match="second start") as e:
        s.receive("start", START)
    assert e.value.kind == "out_of_order"
    assert kind_of(s, "connected", CONNECTED) == "out_of_order"
    s2 = StreamState()
    s2.receive("connected", CONNECTED)
    assert kind_of(s2, "connected", CONNECTED) == "out_of_order"
    assert s.phase == "streaming" and s.start == parse_message(START)


def test_nothing_after_stop() -> None:
    s = StreamState()
    s.receive("start", START)
    s.receive("stop", STOP)
    for ev, text in [
        ("media", MEDIA),
        ("mark", MARK_ECHO),
        ("dtmf", DTMF),
        ("start", START),
        ("stop", STOP),
        ("connected", CONNECTED),
        ("other", "garbage"),
    ]:
        assert kind_of(s, ev, text) == "after_stop"


def test_stop_without_start_ends_the_stream() -> None:
    s = StreamState()
    s.receive("connected", CONNECTED)
    assert isinstance(s.receive("stop", STOP), Stop)
    assert s.phase == "stopped"
    assert kind_of(s, "media", MEDIA) == "after_stop"


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"start__mediaFormat__encoding": "audio/x-alaw"}, "audio/x-alaw"),
        ({"start__mediaFormat__sampleRate": 16000}, "16000"),
        ({"start__mediaFormat__channels": 2}, "2 ch"),
        ({"start__mediaFormat__encoding": "audio/x-raw"}, "audio/x-raw"),
    ],
)
def test_twilio_media_format_must_be_mulaw_8k_mono(changes: dict[str, Any], needle: str) -> None:
    s = StreamState()
    with pytest.raises(ProtocolError) as e:
        s.receive("start", doc(START, **changes))
    assert e.value.kind == "bad_media"
    assert needle in str(e.value)
    assert s.phase == "new" and s.start is None


def test_exotel_pcm_is_bad_media_for_a_mulaw_stream() -> None:
    with pytest.raises(ProtocolError, match="audio/x-raw") as e:
        StreamState().receive("start", EXOTEL_START)
    assert e.value.kind == "bad_media"


def test_codec_selects_the_accepted_encodings() -> None:
    telnyx_alaw = doc(TELNYX_START, start__media_format__encoding="PCMA")
    assert StreamState(codec="alaw").receive("start", telnyx_alaw) is not None
    assert kind_of(StreamState(codec="alaw"), "start", START) == "bad_media"
    assert kind_of(StreamState(), "start", telnyx_alaw) == "bad_media"
    telnyx = StreamState()
    telnyx.receive("start", TELNYX_START)
    assert telnyx.dialect == "telnyx" and telnyx.stream_sid == "st-9"


def test_stream_sid_must_match_the_started_stream() -> None:
    s = StreamState()
    s.receive("start", START)
    with pytest.raises(ProtocolError, match="MZother") as e:
        s.receive("mark", doc(MARK_ECHO, streamSid="MZother"))
    assert e.value.kind == "bad_field"
    # Messages without a stream id are fine.
    assert s.receive("mark", doc(MARK_ECHO, streamSid=DELETE)) is not None


def test_unknown_and_wrong_direction_events() -> None:
    s = StreamState()
    s.receive("start", START)
    with pytest.raises(ProtocolError, match="hello") as e:
        s.receive("other", '{"event":"hello","streamSid":"MZ.."}')
    assert e.value.kind == "unknown_event"
    assert kind_of(s, "clear", OUT_CLEAR) == "unknown_event"
    # A media message the engine did not recognise as media (escaped event name) was never
    # decoded: it must not pass silently.
    escaped = MEDIA.replace('"event":"media"', '"event":"\\u006dedia"')
    assert kind_of(s, "other", escaped) == "bad_field"
    assert s.phase == "streaming"


def test_binary_frames_are_refused() -> None:
    s = StreamState()
    with pytest.raises(ProtocolError, match="320 bytes") as e:
        s.receive_binary(b"\0" * 320)
    assert e.value.kind == "binary_frame"
    assert e.value.close_code == 1008


def test_state_enforces_its_size_limit() -> None:
    s = StreamState(max_message_bytes=100)
    assert kind_of(s, "start", START) == "too_large"


def test_send_helpers_need_a_live_stream() -> None:
    s = StreamState()
    with pytest.raises(RuntimeError, match="new"):
        s.mark_message("m")
    s.receive("start", START)
    s.receive("stop", STOP)
    with pytest.raises(RuntimeError, match="stopped"):
        s.clear_message()


@pytest.mark.parametrize(
    "kwargs", [{"codec": "opus"}, {"max_message_bytes": 0}, {"max_message_bytes": True}]
)
def test_state_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=repr(next(iter(kwargs.values())))):
        StreamState(**kwargs)


# --------------------------------------------------------------------------------------------
# Errors


def test_protocol_error_kinds_and_close_codes() -> None:
    assert set(CLOSE_CODES) == KINDS
    assert {CLOSE_CODES[k] for k in ("not_json", "not_object", "missing_field", "bad_field")} == {
        1007
    }
    assert CLOSE_CODES["bad_media"] == 1007
    for k in ("unknown_event", "media_before_start", "out_of_order", "after_stop"):
        assert errors.close_code(k) == 1008
    assert errors.close_code("too_large") == 1008
    assert errors.close_code("binary_frame") == 1008
    with pytest.raises(ValueError, match="'nope'"):
        errors.close_code("nope")
    with pytest.raises(ValueError, match="'nope'"):
        ProtocolError("nope", "x")  # type: ignore[arg-type]
    e = ProtocolError("bad_field", "field x")
    assert e.kind == "bad_field" and str(e) == "field x" and "bad_field" in repr(e)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # The hot path's FrameError texts (voxmedia::wire::FrameError's Display).
        ("message of 70000 bytes exceeds the limit of 65536 bytes", "too_large"),
        ("malformed JSON at byte 0: expected an object", "not_object"),
        ("malformed JSON at byte 12: expected ',' or '}'", "not_json"),
        ('media message has no "media.payload" field', "missing_field"),
        ('field "media": not an object', "bad_field"),
        ('field "payload": not a string', "bad_media"),
        ("payload is not valid base64 (first bad symbol at offset 3)", "bad_media"),
        (
            "payload decodes to 3 bytes; expected 160 (one frame of the negotiated codec)",
            "bad_media",
        ),
    ],
)
def test_classify_frame_error(message: str, kind: str) -> None:
    assert classify_frame_error(message) == kind
