"""The whole conversation on loopback with the real local engines, no fakes.

A real relay server (`--agent conversation`: Whisper tiny.en, the scripted LLM, the piper
voice) takes a call from the real Twilio simulator, which speaks the bundled caller lines
through mu-law at real time. One call covers both behaviours the issue asks for: a spoken
question gets a transcript with its key words and a spoken answer, and a second line spoken
over that (long) answer interrupts it, cancelling the reply and leaving in the context only
what the caller heard.
"""

from __future__ import annotations

import asyncio

import faster_whisper  # noqa: F401  (the [local] extra the test command installs)
import piper  # noqa: F401  (the [local] extra the test command installs)
from call_support import silence
from voxrelay.conversation.engine import ConversationAgent, ConversationFactory
from voxrelay.conversation.providers import Message
from voxrelay.conversation.scripted_llm import Script
from voxrelay.demo_audio import caller_audio
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from voxrelay.simulator import CallOptions, CallResult, run_call


async def converse(
    audio: bytes, barge_in: dict[int, int], **settings: object
) -> tuple[CallResult, ConversationAgent]:
    server = RelayServer(Settings(port=0, agent="conversation", **settings))  # type: ignore[arg-type]
    factory = server.agent_factory
    assert isinstance(factory, ConversationFactory)
    agents: list[ConversationAgent] = []
    factory.on_agent = agents.append
    await server.start()  # loads the models before the port opens
    try:
        result = await run_call(
            CallOptions(
                f"ws://127.0.0.1:{server.port}/twilio",
                audio,
                tail_s=2.0,
                converse=True,
                barge_in=barge_in,
            )
        )
    finally:
        await server.shutdown(drain_timeout_s=5.0)
    assert len(agents) == 1
    return result, agents[0]


def test_question_is_answered_and_a_barge_in_truncates_the_answer() -> None:
    lines = dict(caller_audio())
    question = lines["Hello. What time are you open on Sunday?"]
    interruption = lines["Sorry, where are you located?"]
    hours = Script.default().reply([Message("user", "open")])
    # The caller (the simulator in converse mode) hears the greeting out, asks, and once the
    # ~9 s hours answer has played for 1.5 s talks over it; then waits for the next answer.
    audio = question + silence(1.5) + interruption
    result, agent = asyncio.run(converse(audio, {0: 1500}, greeting="Hello."))

    # The question: transcribed with its key words, answered out loud.
    first = agent.records[0]
    assert "sunday" in first.user_text.lower() and "open" in first.user_text.lower()
    assert first.first_frame_sent_ms is not None
    assert result.turns and result.turns[0].latency_ms is not None  # the caller heard it

    # The interruption: the answer was cut where the caller stopped hearing it.
    assert result.clears_ms, "the relay never cleared the caller's audio"
    said = [m for m in agent.conversation.turns if m.role == "assistant"]
    cut = [m for m in said if m.interrupted]
    assert len(cut) == 1
    assert hours.startswith(cut[0].content) and cut[0].content != hours
    assert len(cut[0].content) > 0
    assert first.interrupted
    # The interrupting line became the next turn and got its own answer.
    second = agent.records[1]
    assert "located" in second.user_text.lower() or "where" in second.user_text.lower()
    assert "harbour" in second.reply_text.lower()
    users = [m.content for m in agent.conversation.turns if m.role == "user"]
    assert users == [first.user_text, second.user_text]
    # Context order: question, the heard part of its answer, the interruption, its answer.
    roles = [(m.role, m.interrupted) for m in agent.conversation.turns]
    assert roles == [
        ("assistant", False),
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ]
