"""The translation glue: refusals named in the client's words, streams re-encoded with their usage."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from odock.errors import UnsupportedParameter
from odock.llm.translate import Translation
from odock.llm.upstream import StreamChunk, Usage
from odock.providers.provider_types import spec_of
from odock.surfaces.registry import ANTHROPIC_MESSAGES, GEMINI_GENERATE, OPENAI_CHAT, OPENAI_RESPONSES


def _upstream(type_name: str) -> object:
    spec = spec_of(type_name)
    assert spec is not None
    assert spec.codecs is not None
    return spec.codecs.generation


@pytest.mark.parametrize(
    ("surface", "body", "param"),
    [
        (OPENAI_CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3}, "seed"),
        (
            GEMINI_GENERATE,
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"seed": 3}},
            "generationConfig.seed",
        ),
    ],
)
def test_an_upstream_refusal_names_the_field_as_the_client_sent_it(
    surface: object, body: dict[str, object], param: str
) -> None:
    """Anthropic has no seed: the 400 names ``seed`` to an OpenAI client, ``generationConfig.seed``
    to a Gemini one."""
    decoded = surface.decode(body, {"model": "m"})  # type: ignore[attr-defined]
    request = surface.client.decode_request(decoded.payload)  # type: ignore[attr-defined]
    translation = Translation(surface.client, _upstream("ANTHROPIC"), request, None, surface.field_names)  # type: ignore[attr-defined, arg-type]
    with pytest.raises(UnsupportedParameter) as refused:
        translation.upstream_payload("claude", stream=False)
    assert refused.value.param == param


class _Chunks:
    """An upstream stream of fixed chunks."""

    def __init__(self, chunks: list[StreamChunk]) -> None:
        self._chunks = chunks
        self.provider_request_id = "up-1"
        self.closed = False

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._each()

    async def _each(self) -> AsyncIterator[StreamChunk]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def _anthropic_events() -> list[StreamChunk]:
    usage = Usage(10, 2, 12)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
         "model": "claude", "content": [], "stop_reason": None, "stop_sequence": None,
         "usage": {"input_tokens": 10, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi there"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return [
        StreamChunk(orjson.dumps(e), usage=usage if e["type"] == "message_delta" else None, event=e["type"])
        for e in events
    ]


async def test_a_translated_stream_carries_the_upstream_usage_and_the_text_length() -> None:
    """Anthropic events become OpenAI chunks; the usage read by the adapter rides along, the text
    length is counted, the closing usage chunk is marked usage-only, and closing closes upstream."""
    request = OPENAI_CHAT.client.decode_request(  # type: ignore[union-attr]
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    inner = _Chunks(_anthropic_events())
    translation = Translation(OPENAI_CHAT.client, _upstream("ANTHROPIC"), request)  # type: ignore[arg-type]
    stream = translation.stream(inner)  # type: ignore[arg-type]
    chunks = [chunk async for chunk in stream]
    await stream.aclose()
    assert inner.closed
    assert sum(chunk.text_chars for chunk in chunks) == len("Hi there")
    assert [chunk.usage for chunk in chunks if chunk.usage] == [Usage(10, 2, 12)]
    assert chunks[-1].usage_only
    assert not any(chunk.usage_only for chunk in chunks[:-1])
    text = "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in orjson.loads(chunk.data)["choices"]
    )
    assert text == "Hi there"


def test_every_surface_with_a_client_codec_names_its_events_when_it_needs_to() -> None:
    """Dialects whose streams name their events (Anthropic, Responses) frame with ``event:`` lines."""
    for surface in (ANTHROPIC_MESSAGES, OPENAI_RESPONSES):
        framed = surface.framer({}).frame(StreamChunk(b'{"type":"ping"}', event="ping"))
        assert framed.startswith(b"event: ping\ndata: ")
