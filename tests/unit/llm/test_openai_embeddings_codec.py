"""OpenAI Embeddings on both sides: bodies decoded and encoded, answers decoded and encoded."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse

from odock.errors import InvalidRequest, InvalidRequestBody, UnsupportedParameter
from odock.llm.types import EmbeddingRequest, EmbeddingResponse
from odock.llm.upstream import Usage
from odock.providers.adapters.openai_codec import OPENAI_EMBEDDINGS_UPSTREAM
from odock.surfaces.openai_chat_codec import OPENAI_EMBEDDINGS_CLIENT

VECTORS = [[0.5, -0.25, 1.0], [0.125, 0.0, -2.0]]  # exact in float32


def test_body_decodes_to_an_embedding_request() -> None:
    """A string or a list of strings, dimensions and user are carried."""
    single = OPENAI_EMBEDDINGS_CLIENT.decode_embeddings(
        {"model": "e", "input": "hello", "encoding_format": "float"}
    )
    assert single == EmbeddingRequest(model="e", inputs=["hello"])
    many = {"model": "e", "input": ["a", "b"], "dimensions": 3, "user": "u", "encoding_format": "base64"}
    assert OPENAI_EMBEDDINGS_CLIENT.decode_embeddings(many) == EmbeddingRequest("e", ["a", "b"], 3, "u")


@pytest.mark.parametrize(
    ("body", "error", "param"),
    [
        ({"input": [1, 2, 3]}, UnsupportedParameter, "input"),
        ({"input": [[1, 2], [3]]}, UnsupportedParameter, "input"),
        ({"input": "x", "extra": True}, UnsupportedParameter, "extra"),
        ({"input": "x", "encoding_format": "int8"}, InvalidRequestBody, "encoding_format"),
    ],
)
def test_what_cannot_be_carried_is_refused(body: dict[str, Any], error: type[Exception], param: str) -> None:
    """Token arrays and unknown fields are unsupported; an unknown encoding is an invalid body."""
    with pytest.raises(InvalidRequest) as caught:
        OPENAI_EMBEDDINGS_CLIENT.decode_embeddings({"model": "e", **body})
    assert type(caught.value) is error
    assert caught.value.param == param


def _response() -> EmbeddingResponse:
    return EmbeddingResponse(model="text-embedding-3-small", vectors=VECTORS, usage=Usage(prompt_tokens=8))


def test_response_encodes_as_floats() -> None:
    """Floats by default, with the index of each input and the usage."""
    payload = OPENAI_EMBEDDINGS_CLIENT.encode_embeddings(_response())
    parsed = CreateEmbeddingResponse.model_validate(payload)
    assert [item.embedding for item in parsed.data] == VECTORS
    assert [item.index for item in parsed.data] == [0, 1]
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (8, 8)
    assert parsed.model == "text-embedding-3-small"


def test_response_encodes_as_base64_float32() -> None:
    """base64 is the little-endian float32 bytes of each vector, as OpenAI sends it."""
    payload = OPENAI_EMBEDDINGS_CLIENT.encode_embeddings(_response(), encoding_format="base64")
    encoded = payload["data"][1]["embedding"]
    assert isinstance(encoded, str)
    assert list(struct.unpack("<3f", base64.b64decode(encoded))) == VECTORS[1]


def test_upstream_request_and_answer() -> None:
    """The upstream is asked for floats; its answer (in any index order, base64 too) is read back."""
    request = EmbeddingRequest("e", ["a", "b"], dimensions=3, user="u")
    assert OPENAI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(request, "slug") == {
        "model": "slug",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 3,
        "user": "u",
    }
    packed = base64.b64encode(struct.pack("<3f", *VECTORS[1])).decode()
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": packed},
            {"object": "embedding", "index": 0, "embedding": VECTORS[0]},
        ],
        "model": "slug",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    response = OPENAI_EMBEDDINGS_UPSTREAM.decode_embeddings_response(answer)
    assert response.vectors == VECTORS
    assert response.model == "slug"
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (4, 4)


def test_upstream_round_trip_through_the_client_codec() -> None:
    """Client body → upstream payload → upstream answer → client answer keeps the vectors."""
    request = OPENAI_EMBEDDINGS_CLIENT.decode_embeddings({"model": "e", "input": ["a", "b"]})
    payload = OPENAI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(request, "slug")
    answer = OPENAI_EMBEDDINGS_CLIENT.encode_embeddings(_response())
    back = OPENAI_EMBEDDINGS_CLIENT.encode_embeddings(
        OPENAI_EMBEDDINGS_UPSTREAM.decode_embeddings_response(answer)
    )
    assert payload["input"] == ["a", "b"]
    assert back == answer
