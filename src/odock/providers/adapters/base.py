"""The contract between the pipeline and upstream APIs.

An adapter turns an :class:`UpstreamCall` (a payload in the upstream's own API format, already
rewritten for it: model id, usage requested) into a :class:`UnaryResult` or a
:class:`StreamResult` (:mod:`odock.llm.upstream`), and translates every foreign failure into an
:class:`odock.errors.UpstreamError` at its boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from odock.llm.upstream import Endpoint, StreamResult, UnaryResult
from odock.providers.catalog import ProviderTarget


class TimeoutSettings(Protocol):
    """The settings the default timeouts come from (:class:`odock.settings.Settings` has them)."""

    @property
    def upstream_connect_timeout_seconds(self) -> float: ...
    @property
    def upstream_first_byte_timeout_seconds(self) -> float: ...
    @property
    def upstream_idle_timeout_seconds(self) -> float: ...
    @property
    def upstream_default_timeout_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The bounds of one upstream exchange, in seconds (docs/providers.md#timeouts).

    connect     establishing the connection: TCP, TLS and a proxy's CONNECT tunnel (and waiting
                for a free slot in the connection pool)
    first_byte  a stream: from sending the request until the first byte of the response body
                (headers alone do not count: a server that answers its headers and then stalls
                is caught); a unary call: until the response's status line and headers
    idle        a stream: the longest silence between body pieces after the first; a client
                that reads slowly (reads from the upstream paused) does not count
    total       the whole exchange, from the start of the connect until the last byte
    """

    connect: float
    first_byte: float
    idle: float
    total: float

    @classmethod
    def from_settings(cls, settings: TimeoutSettings) -> Timeouts:
        """The gateway's defaults: the ``upstream_*_timeout_seconds`` settings (``default`` the total)."""
        return cls(
            connect=settings.upstream_connect_timeout_seconds,
            first_byte=settings.upstream_first_byte_timeout_seconds,
            idle=settings.upstream_idle_timeout_seconds,
            total=settings.upstream_default_timeout_seconds,
        )


@dataclass(slots=True)  # one per request, never changed: not frozen (see odock.limits.decision)
class UpstreamCall:
    """One request to send upstream."""

    endpoint: Endpoint
    payload: dict[str, Any]
    provider: ProviderTarget
    api_key: str | None
    timeouts: Timeouts
    request_id: str
    model_config: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # the provider's, decrypted
    model: str = ""  # the upstream model id (the model's slug); Gemini puts it in the URL
    client_headers: Mapping[str, str] = field(default_factory=dict)  # forwarded ones (anthropic-beta)


class Adapter(Protocol):
    """An upstream API."""

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        """Send a non-streaming request."""

    async def stream(self, call: UpstreamCall) -> StreamResult:
        """Open a streaming request (errors before the first byte are raised here)."""
