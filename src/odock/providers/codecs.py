"""The upstream codecs by dialect: what a translated request is encoded with for each upstream API."""

from __future__ import annotations

from odock.llm.codec import Dialect, UpstreamCodecs

UPSTREAM_CODECS: dict[Dialect, UpstreamCodecs] = {}
