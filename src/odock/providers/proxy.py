"""Outbound HTTP proxies for upstream calls: which proxy serves an origin, and the CONNECT tunnel.

Networks that reach the internet only through a proxy name it in the usual environment
variables, which :mod:`odock.settings` reads (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``)::

    http://host/…    via HTTP_PROXY:  connect to the proxy and send the request in absolute form
                                      (POST http://host:port/path HTTP/1.1)
    https://host/…   via HTTPS_PROXY: connect to the proxy, CONNECT host:port, then TLS with the
                                      upstream through the tunnel (the proxy sees only the host)
    NO_PROXY         comma-separated exceptions: ``*`` (no proxy at all); a host or domain
                     (``example.com`` and ``.example.com`` both match example.com and its
                     subdomains), optionally with ``:port``; an IP address or CIDR block

Credentials in a proxy URL (``http://user:password@proxy:3128``) are sent as
``Proxy-Authorization: Basic``. The choice is made once per upstream URL (the client keeps it with
the parsed URL), so a request pays nothing for it.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

_MAX_TUNNEL_HEAD = 16 * 1024  # bytes of the proxy's answer to CONNECT before it is refused


class TunnelRefused(OSError):
    """The proxy did not open the tunnel (an error status, or no valid answer)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where to connect, and the credentials to present."""

    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)  # the Proxy-Authorization value

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """``http://[user:password@]host[:port]`` (port 80 when absent); ValueError otherwise.

        The message never repeats the URL, which may hold a password.
        """
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError("a proxy URL must start with http:// (TLS to the proxy is not supported)")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ValueError("the proxy URL has an invalid port") from exc
        if not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError("a proxy URL is http://[user:password@]host[:port] with no path")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = b"Basic " + base64.b64encode(pair.encode())
        return cls(parts.hostname, port, authorization)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Exemption:
    """One ``NO_PROXY`` entry: a domain or an IP network, optionally on one port only."""

    domain: str | None
    network: Network | None
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> Exemption:
        """An entry such as ``example.com``, ``.corp``, ``host:8080``, ``10.0.0.0/8`` or ``[::1]:443``."""
        entry = entry.strip().lower()
        port: int | None = None
        if entry.startswith("["):  # a bracketed IPv6 address, maybe with a port
            address, _, rest = entry[1:].partition("]")
            entry, port = address, _port(rest.removeprefix(":")) if rest else None
        elif entry.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
            entry, _, number = entry.partition(":")
            port = _port(number)
        try:
            return cls(None, ipaddress.ip_network(entry, strict=False), port)
        except ValueError:
            pass
        domain = entry.removeprefix("*").removeprefix(".").rstrip(".")
        if not domain:
            raise ValueError(f"NO_PROXY entry {entry!r} names no host")
        return cls(domain, None, port)

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host:port`` (host lower case) is exempt from the proxy."""
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        assert self.domain is not None
        return host == self.domain or host.endswith("." + self.domain)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"NO_PROXY entry has an invalid port {text!r}")
    return int(text)


class ProxyRoutes:
    """Which proxy, if any, an upstream origin is reached through."""

    def __init__(
        self, *, http: str | None = None, https: str | None = None, no_proxy: str | None = None
    ) -> None:
        self._by_scheme = {
            "http": Proxy.parse(http) if http else None,
            "https": Proxy.parse(https) if https else None,
        }
        entries = [entry for entry in (no_proxy or "").split(",") if entry.strip()]
        self._bypass_all = any(entry.strip() == "*" for entry in entries)
        self._exemptions = tuple(Exemption.parse(entry) for entry in entries if entry.strip() != "*")

    @property
    def active(self) -> bool:
        """Whether any upstream may be reached through a proxy."""
        return not self._bypass_all and any(self._by_scheme.values())

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for ``scheme://host:port``, or None to connect directly."""
        proxy = self._by_scheme.get(scheme)
        if proxy is None or self._bypass_all:
            return None
        host = host.lower().rstrip(".")
        if any(exemption.matches(host, port) for exemption in self._exemptions):
            return None
        return proxy


async def open_tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connected socket to ``proxy`` on which ``CONNECT host:port`` succeeded (ready for TLS)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"cannot resolve the proxy host {proxy.host}")
    for family, kind, protocol, _name, address in infos:
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        try:
            await _connect_request(loop, sock, proxy, host, port)
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure


async def _connect_request(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str, port: int
) -> None:
    name = host.encode("idna")
    authority = (b"[" + name + b"]" if b":" in name else name) + b":%d" % port
    lines = [b"CONNECT " + authority + b" HTTP/1.1\r\nhost: " + authority + b"\r\n"]
    if proxy.authorization is not None:
        lines.append(b"proxy-authorization: " + proxy.authorization + b"\r\n")
    lines.append(b"\r\n")
    await loop.sock_sendall(sock, b"".join(lines))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise TunnelRefused(f"the proxy hung up instead of opening a tunnel to {authority.decode()}")
        head += chunk
        if len(head) > _MAX_TUNNEL_HEAD:
            raise TunnelRefused("the proxy's answer to CONNECT is too long")
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or not status[1].isdigit():
        raise TunnelRefused("the proxy's answer to CONNECT is not HTTP")
    if not 200 <= int(status[1]) < 300:
        raise TunnelRefused(f"the proxy refused a tunnel to {authority.decode()}: HTTP {int(status[1])}")
    # The upstream speaks only after the TLS client hello: anything more is not a tunnel.
    if not head.endswith(b"\r\n\r\n"):
        raise TunnelRefused("the proxy sent data after its answer to CONNECT")
