"""The translation matrix: every client dialect by every upstream API, unary and streamed, with text,
a tool call, a tool result sent back (the round trip) and an image, through the official SDKs and a
real gateway port.

Each fake vendor answers the scripted model (``tests/fakes/script.py``) in its own wire format,
so every cell must come back with the same text, the same tool call and the same usage, whatever
it was translated through. A cell that is a same-dialect pair passes through untranslated; the
others go through the gateway's own representation. One gateway and one set of fakes serve the
whole module.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from google.genai import types as gtypes

from odock.app import create_app
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.fakes import script
from tests.support.dialects import (
    UPSTREAMS,
    World,
    anthropic_client,
    fake_vendors,
    gemini_client,
    openai_client,
    three_vendor_world,
)
from tests.support.server import ThreadedServer

TEXT = "Hello there"
IMAGE_PROMPT = "Describe this"
TOOL_PROMPT = "What is the weather in Paris?"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
DATA_URL = f"data:image/png;base64,{PNG}"
TOOL_RESULT = "18 degrees"
CALL_ID = "call_1"
ARGUMENTS = json.dumps(script.TOOL_ARGUMENTS)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["city"],
}


@dataclass
class Outcome:
    """What a client saw, in no dialect's shape."""

    text: str
    tool_calls: list[tuple[str, dict[str, Any]]]
    input_tokens: int  # every input token, cached ones included
    output_tokens: int


# --- the world -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    """One gateway on the active backend in front of the three fakes, for the whole module."""
    pair = request.getfixturevalue("provider_keypair")
    settings = settings_factory(BACKEND, tmp_path_factory, request)(
        provider_key_encryption_key_id=pair.key_id,
        provider_key_encryption_private_key=pair.private_pem,
    )
    app = create_app(settings)
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    try:
        with fake_vendors() as vendors:
            yield three_vendor_world(gateway, vendors)
    finally:
        gateway.server.stop()


# --- one caller per client dialect ---------------------------------------------------------------


def _expected_text(content: str) -> str:
    return {
        "text": f"Echo: {TEXT}",
        "image": f"Echo: {IMAGE_PROMPT} [1 image(s)]",
        "tool_result": f"Tool said: {TOOL_RESULT}",
    }[content]


def openai_chat(world: World, model: str, content: str, stream: bool) -> Outcome:
    client = openai_client(world)
    user: Any = TEXT
    if content == "image":
        user = [{"type": "text", "text": IMAGE_PROMPT}, {"type": "image_url", "image_url": {"url": DATA_URL}}]
    elif content == "tools":
        user = TOOL_PROMPT
    tools: Any = [_openai_tool()] if content in ("tools", "tool_result") else openai.NOT_GIVEN
    messages: Any = [{"role": "user", "content": user}]
    if content == "tool_result":
        messages = _chat_round_trip()
    if not stream:
        answer = client.chat.completions.create(model=model, messages=messages, tools=tools)
        message = answer.choices[0].message
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
        assert answer.usage is not None
        return Outcome(
            message.content or "", calls, answer.usage.prompt_tokens, answer.usage.completion_tokens
        )
    text, arguments, names, usage = "", {}, {}, None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names[call.index] = call.function.name
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert usage is not None
    calls = [(names[i], json.loads(arguments[i])) for i in sorted(names)]
    return Outcome(text, calls, usage.prompt_tokens, usage.completion_tokens)


def _chat_round_trip() -> list[dict[str, Any]]:
    """The tool prompt, the model's call and the tool's result, as OpenAI chat messages."""
    call = {"id": CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": ARGUMENTS}}
    return [
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": CALL_ID, "content": TOOL_RESULT},
    ]


def _openai_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA},
    }


def openai_responses(world: World, model: str, content: str, stream: bool) -> Outcome:
    client = openai_client(world)
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": TEXT}]
    if content == "image":
        parts = [{"type": "input_text", "text": IMAGE_PROMPT}, {"type": "input_image", "image_url": DATA_URL}]
    elif content in ("tools", "tool_result"):
        parts = [{"type": "input_text", "text": TOOL_PROMPT}]
    tools: Any = []
    if content in ("tools", "tool_result"):
        tools = [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather now",
                "parameters": WEATHER_SCHEMA,
            }
        ]
    items: list[dict[str, Any]] = [{"role": "user", "content": parts}]
    if content == "tool_result":
        items += [
            {"type": "function_call", "call_id": CALL_ID, "name": "get_weather", "arguments": ARGUMENTS},
            {"type": "function_call_output", "call_id": CALL_ID, "output": TOOL_RESULT},
        ]
    request: dict[str, Any] = {"model": model, "input": items, "tools": tools}
    if stream:
        with client.responses.stream(**request) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**request)
    calls = [
        (item.name, json.loads(item.arguments)) for item in response.output if item.type == "function_call"
    ]
    assert response.usage is not None
    return Outcome(response.output_text, calls, response.usage.input_tokens, response.usage.output_tokens)


def anthropic_messages(world: World, model: str, content: str, stream: bool) -> Outcome:
    client = anthropic_client(world)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": TEXT}]
    if content == "image":
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
        blocks = [{"type": "text", "text": IMAGE_PROMPT}, image]
    elif content in ("tools", "tool_result"):
        blocks = [{"type": "text", "text": TOOL_PROMPT}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": blocks}]
    if content == "tool_result":
        use = {"type": "tool_use", "id": CALL_ID, "name": "get_weather", "input": script.TOOL_ARGUMENTS}
        result = {"type": "tool_result", "tool_use_id": CALL_ID, "content": TOOL_RESULT}
        messages += [{"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]
    request: dict[str, Any] = {"model": model, "max_tokens": 256, "messages": messages}
    if content in ("tools", "tool_result"):
        request["tools"] = [
            {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA}
        ]
    if stream:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**request)
    text = "".join(block.text for block in message.content if block.type == "text")
    calls = [(block.name, dict(block.input)) for block in message.content if block.type == "tool_use"]
    usage = message.usage
    total_input = (
        usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    )
    return Outcome(text, calls, total_input, usage.output_tokens)


def gemini(world: World, model: str, content: str, stream: bool) -> Outcome:
    client = gemini_client(world)
    parts: list[Any] = [gtypes.Part(text=TEXT)]
    if content == "image":
        parts = [
            gtypes.Part(text=IMAGE_PROMPT),
            gtypes.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png"),
        ]
    elif content in ("tools", "tool_result"):
        parts = [gtypes.Part(text=TOOL_PROMPT)]
    config = gtypes.GenerateContentConfig()
    if content in ("tools", "tool_result"):
        declaration = gtypes.FunctionDeclaration(
            name="get_weather", description="Weather now", parameters_json_schema=WEATHER_SCHEMA
        )
        config = gtypes.GenerateContentConfig(
            tools=[gtypes.Tool(function_declarations=[declaration])],
            automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
        )
    contents = [gtypes.Content(role="user", parts=parts)]
    if content == "tool_result":
        call = gtypes.FunctionCall(id=CALL_ID, name="get_weather", args=script.TOOL_ARGUMENTS)
        answer = gtypes.FunctionResponse(id=CALL_ID, name="get_weather", response={"output": TOOL_RESULT})
        contents += [
            gtypes.Content(role="model", parts=[gtypes.Part(function_call=call)]),
            gtypes.Content(role="user", parts=[gtypes.Part(function_response=answer)]),
        ]
    responses = (
        list(client.models.generate_content_stream(model=model, contents=contents, config=config))
        if stream
        else [client.models.generate_content(model=model, contents=contents, config=config)]
    )
    text, calls, usage = "", [], None
    for response in responses:
        usage = response.usage_metadata or usage
        for candidate in response.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.text and not part.thought:
                    text += part.text
                if part.function_call:
                    calls.append((part.function_call.name or "", dict(part.function_call.args or {})))
    assert usage is not None
    output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    return Outcome(text, calls, usage.prompt_token_count or 0, output)


def unified(world: World, model: str, content: str, stream: bool) -> Outcome:
    message: dict[str, Any] = {"role": "user", "content": TEXT}
    if content == "image":
        message = {
            "role": "user",
            "content_blocks": [
                {"type": "text", "text": IMAGE_PROMPT},
                {"type": "image_url", "image_url": {"url": DATA_URL}},
            ],
        }
    elif content in ("tools", "tool_result"):
        message = {"role": "user", "content": TOOL_PROMPT}
    messages = _chat_round_trip() if content == "tool_result" else [message]
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream, "include_usage": True}
    if content in ("tools", "tool_result"):
        body["tools"] = [_openai_tool()]
    headers = {"authorization": f"Bearer {world.secret}"}
    url = world.gateway.base_url + "/v1/llm/chat"
    if not stream:
        answer = httpx.post(url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        calls = [(c["name"], json.loads(c["arguments"])) for c in data["tool_calls"]]
        return Outcome(data["content"], calls, data["input_tokens"], data["output_tokens"])
    text, names, arguments, usage = "", {}, {}, {}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                text += choice["delta"].get("content") or ""
                for call in choice["delta"].get("tool_calls") or []:
                    if call.get("function", {}).get("name"):
                        names[call["index"]] = call["function"]["name"]
                    arguments[call["index"]] = arguments.get(call["index"], "") + call["function"].get(
                        "arguments", ""
                    )
    calls = [(names[i], json.loads(arguments[i])) for i in sorted(names)]
    return Outcome(text, calls, usage["prompt_tokens"], usage["completion_tokens"])


CLIENTS: dict[str, Callable[[World, str, str, bool], Outcome]] = {
    "openai_chat": openai_chat,
    "openai_responses": openai_responses,
    "anthropic": anthropic_messages,
    "gemini": gemini,
    "unified": unified,
}


# --- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["text", "tools", "tool_result", "image"])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", list(CLIENTS))
def test_translation_matrix(world: World, client: str, upstream: str, stream: bool, content: str) -> None:
    """The cell answers with the scripted content, tool call and usage of the fake vendor."""
    outcome = CLIENTS[client](world, world.model(upstream), content, stream)
    if content == "tools":
        assert outcome.tool_calls == [("get_weather", script.TOOL_ARGUMENTS)]
        assert outcome.text == ""
        expected_output = script.TOOL_CALL_TOKENS
    else:
        assert outcome.tool_calls == []
        assert outcome.text == _expected_text(content)
        expected_output = len(outcome.text.split())
    assert (outcome.input_tokens, outcome.output_tokens) == (script.PROMPT_TOKENS, expected_output)
