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


@dataclass(slots=True)  # one per request, never changed: not frozen (see odock.limits.decision)
class UpstreamCall:
    """One request to send upstream."""

    endpoint: Endpoint
    payload: dict[str, Any]
    provider: ProviderTarget
    api_key: str | None
    timeout: float
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
