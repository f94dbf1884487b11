"""The upstream links of the MCP gateway, one per transport (the contract is :mod:`odock.mcp.link`).

How the gateway uses them::

    links = open_links(settings)              # no I/O: connections and processes start on use
    link = links[server.target.transport]     # a Link
    binding = await link.open(server.target, client_params)
    async for message in link.exchange(server.target, binding, messages): ...
    ...
    await links.aclose()                      # at shutdown: HTTP sessions closed, processes stopped

:class:`Links` is a ``Mapping[Transport, Link]`` with :meth:`Links.aclose`, and with
``links.stdio`` (the :class:`~odock.mcp.links.stdio.StdioLink`: ``stats()`` gives processes,
in-flight requests and peak per server id, for measurements). It is also an async context
manager (``async with open_links(settings) as links:``).

The modules: :mod:`.auth` (upstream credentials, OAuth2 token cache), :mod:`.wire` (JSON-RPC and
SSE parsing), :mod:`.streamable_http` (forwarding), :mod:`.channel` (the id-mapping machinery of
the bridged links), :mod:`.sse` (the legacy HTTP+SSE bridge), :mod:`.stdio` (the process pool).

Bridged links (SSE, STDIO) put a gateway-made session tag in ``Binding.upstream_session_id``
(they have no upstream session of their own); keep it with the binding like any other field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType

from odock.mcp.link import Link, Transport
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.sse import SseLink
from odock.mcp.links.stdio import StdioLink
from odock.mcp.links.streamable_http import StreamableHttpLink
from odock.settings import Settings


class Links(Mapping[Transport, Link]):
    """The gateway's links, by transport; :meth:`aclose` stops them all."""

    def __init__(self, settings: Settings) -> None:
        self.auth = UpstreamAuth()
        self.streamable_http = StreamableHttpLink(self.auth)
        self.sse = SseLink(self.auth)
        self.stdio = StdioLink(settings)
        self._by_transport: dict[Transport, Link] = {
            Transport.STREAMABLE_HTTP: self.streamable_http,
            Transport.SSE: self.sse,
            Transport.STDIO: self.stdio,
        }

    def __getitem__(self, transport: Transport) -> Link:
        return self._by_transport[transport]

    def __iter__(self) -> Iterator[Transport]:
        return iter(self._by_transport)

    def __len__(self) -> int:
        return len(self._by_transport)

    async def aclose(self) -> None:
        """Stop every process and close every connection."""
        for link in self._by_transport.values():
            await link.aclose()

    async def __aenter__(self) -> Links:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()


def open_links(settings: Settings) -> Links:
    """The links for ``settings`` (nothing starts until first use)."""
    return Links(settings)


__all__ = ["Links", "SseLink", "StdioLink", "StreamableHttpLink", "UpstreamAuth", "open_links"]
