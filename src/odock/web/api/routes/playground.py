"""Route: the playground — a chat call made as one of the caller's API keys, from the console.

API keys are stored hashed, so the console cannot present a key's secret. Instead, a caller who
may manage a key (``api_key:update`` on it, the same permission as rotating it) may use it: the
route builds a gateway request of its own (``POST /v1/chat/completions``) and hands it to the
gateway's ASGI app with the key named in the scope entry :data:`~odock.web.asgi.ACTING_KEY_HASH`,
which no client can set. The request then runs the whole pipeline like any client's — the key is
checked (revoked, expired, organisation disabled), its model grants, limits, budgets and policies
apply, and the usage record is a normal one — and its answer (an SSE stream, or JSON) is relayed
to the browser as the gateway writes it, with the governed call's ``X-Request-Id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit, request_ip
from odock.web.api.fields import ModelRef
from odock.web.api.routes.api_keys import KEY, locate_key
from odock.web.api.services import Keys
from odock.web.asgi import ACTING_KEY_HASH, CLIENT_CONNECTION, Message, Receive, Scope, Send
from odock.web.gateway import Gateway

router = APIRouter(tags=["Playground"])

CHAT_PATH = "/v1/chat/completions"


class PlaygroundMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=100_000)


class PlaygroundChat(BaseModel):
    """A chat call made as the key in the path (OpenAI's chat completions, a subset)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelRef = Field(description="a model the key may call (name or slug)")
    messages: list[PlaygroundMessage] = Field(min_length=1, max_length=100)
    stream: bool = Field(default=True, description="stream the answer as server-sent events")
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)

    def gateway_body(self) -> bytes:
        """The OpenAI request the gateway is sent (streams report their usage in a last event)."""
        body: dict[str, Any] = self.model_dump(exclude_none=True)
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)


def gateway_of(request: Request) -> Gateway:
    """The gateway of this process (built with the API app, see ``create_api``)."""
    gateway: Gateway = request.app.state.gateway
    return gateway


class GatewayAnswer(Response):
    """The gateway's own answer to a request built here, written to the client as it comes."""

    def __init__(self, gateway: Gateway, scope: Scope, body: bytes) -> None:
        super().__init__()
        self._gateway = gateway
        self._scope = scope
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_sent = False

        async def gateway_receive() -> Message:
            # The body once; then the client's own receive, so a browser that leaves cancels the call.
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": self._body, "more_body": False}
            return await receive()

        inner = dict(self._scope)
        if CLIENT_CONNECTION in scope:
            inner[CLIENT_CONNECTION] = scope[CLIENT_CONNECTION]
        await self._gateway(inner, gateway_receive, send)


@router.post(
    KEY + "/playground",
    response_class=Response,
    responses={
        200: {
            "description": "the gateway's answer: an SSE stream (`stream: true`) or a chat completion",
            "content": {"text/event-stream": {}, "application/json": {}},
        }
    },
)
async def playground_chat(
    request: Request,
    organisation_id: str,
    api_key_id: str,
    body: PlaygroundChat,
    keys: Keys,
    gateway: Annotated[Gateway, Depends(gateway_of)],
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> Response:
    """Send a chat call through the gateway as this key (whoever may manage the key may use it).

    The answer is the gateway's: OpenAI's stream or completion, or its error (a model the key
    may not call is 403, a revoked key 401, a budget exhausted 429…). ``X-Request-Id`` names the
    usage record of the call.
    """
    key = await keys.get(api_key_id)
    payload = body.gateway_body()
    client = request_ip(request)
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT_PATH,
        "raw_path": CHAT_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", str(request.state.request_id).encode("latin-1")),
            (b"user-agent", b"odock-console-playground"),
        ],
        "client": (client, 0) if client else None,
        "server": request.scope.get("server"),
        ACTING_KEY_HASH: key.key_hash,
    }
    return GatewayAnswer(gateway, scope, payload)
