"""The trusted catalogue of MCP servers shipped with the gateway (spec §10.7).

``trusted_catalogue.json`` (package data, next to this module) lists well-known MCP servers an
organisation can add in one step: name, slug, description, category, tags, transport, the STDIO
command and arguments or the remote endpoint URL, the upstream auth type, whether the publisher
of the service ships it (``official``), the names of the environment variables a STDIO server
reads (names only: never values) and a suggested price in integer nanos-USD (0 unless stated).

The file is read and validated once per process (:func:`trusted_catalogue`); a broken file fails
loudly at the first use, and a unit test reads it. Nothing here starts a process or opens a
connection: adding a STDIO entry still needs its command on the STDIO allowlist.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Annotated, Self
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from odock.mcp.link import AuthType, Transport

CATALOGUE_FILE = "trusted_catalogue.json"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"

Nanos = Annotated[int, Field(ge=0, le=10**15)]


class CatalogueError(Exception):
    """The shipped MCP server catalogue is malformed."""


class SuggestedPricing(BaseModel):
    """A suggested price in integer nanos-USD per tool call and per byte in and out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_nanos_usd: Nanos = 0
    input_byte_nanos_usd: Nanos = 0
    output_byte_nanos_usd: Nanos = 0


class CatalogueServer(BaseModel):
    """One MCP server of the catalogue: a STDIO command, or a remote (HTTPS) endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=1000)
    category: str = Field(pattern=TAG_PATTERN)
    tags: tuple[Annotated[str, Field(pattern=TAG_PATTERN)], ...] = ()
    publisher: str | None = Field(default=None, max_length=200)
    official: bool = False
    transport: Transport
    command: str | None = Field(default=None, min_length=1, max_length=500)
    args: tuple[Annotated[str, Field(min_length=1, max_length=1000)], ...] = ()
    env: tuple[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], ...] = ()
    endpoint_url: str | None = Field(default=None, max_length=2000)
    auth_type: AuthType = AuthType.NONE
    docs_url: str | None = Field(default=None, max_length=2000)
    suggested_pricing: SuggestedPricing = SuggestedPricing()

    @model_validator(mode="after")
    def _reachable_by_its_transport(self) -> Self:
        if self.transport is Transport.STDIO:
            if self.command is None or any(c.isspace() for c in self.command):
                raise ValueError(f"{self.slug}: a STDIO server needs a command (one word; arguments apart)")
            if self.endpoint_url is not None:
                raise ValueError(f"{self.slug}: a STDIO server has no endpoint URL")
            if self.auth_type is not AuthType.NONE:
                raise ValueError(f"{self.slug}: a STDIO server authenticates through its environment")
        else:
            if self.command is not None or self.args or self.env:
                raise ValueError(f"{self.slug}: a remote server has no command, arguments or environment")
            if self.endpoint_url is None or not _is_https(self.endpoint_url):
                raise ValueError(f"{self.slug}: a remote server needs an https:// endpoint URL")
        if len(set(self.env)) != len(self.env) or len(set(self.tags)) != len(self.tags):
            raise ValueError(f"{self.slug}: duplicate environment variable or tag")
        if self.docs_url is not None and not _is_https(self.docs_url):
            raise ValueError(f"{self.slug}: docs_url must be https://")
        return self

    def matches(self, q: str | None, transport: Transport | None, category: str | None) -> bool:
        """Whether this entry passes the filters (``q``: part of the name, slug, description or a tag)."""
        if transport is not None and self.transport is not transport:
            return False
        if category is not None and self.category != category:
            return False
        if not q:
            return True
        needle = q.lower()
        haystack = (self.name, self.slug, self.description, *self.tags)
        return any(needle in text.lower() for text in haystack)


def _is_https(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username and not parts.password


class TrustedCatalogue(BaseModel):
    """The whole catalogue: what it is, when it was last reviewed, and its servers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str
    updated: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    servers: tuple[CatalogueServer, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _slugs_unique(self) -> Self:
        seen: set[str] = set()
        for server in self.servers:
            if server.slug in seen:
                raise ValueError(f"slug {server.slug} is listed twice")
            seen.add(server.slug)
        return self

    @property
    def categories(self) -> list[str]:
        """The categories of the catalogue, sorted."""
        return sorted({s.category for s in self.servers})

    def find(self, slug: str) -> CatalogueServer | None:
        """The entry with ``slug``, if any."""
        return next((s for s in self.servers if s.slug == slug), None)


def parse_catalogue(raw: bytes) -> TrustedCatalogue:
    """Validate a catalogue document; :class:`CatalogueError` names what is wrong."""
    try:
        return TrustedCatalogue.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise CatalogueError(f"the trusted MCP server catalogue is invalid: {exc}") from exc


@lru_cache(maxsize=1)
def trusted_catalogue() -> TrustedCatalogue:
    """The shipped catalogue, read and validated once per process."""
    return parse_catalogue(resources.files("odock.mcp").joinpath(CATALOGUE_FILE).read_bytes())
