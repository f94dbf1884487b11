"""Read the metrics: a gateway's ``GET /metrics`` scraped and parsed as Prometheus would, or this
process's registry directly (unit tests).

The metric objects are one set per process, shared by every gateway a test process runs, so a
test reads a value before and after what it does and asserts the difference (:class:`Scrape`'s
``delta``, :func:`counted`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from odock.telemetry.metrics import REGISTRY


@dataclass(frozen=True)
class Sample:
    """One sample line: its name, labels and value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape."""

    samples: list[Sample]
    types: dict[str, str]  # family name → type

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Parse a Prometheus text exposition."""
        samples, types = [], {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            samples.extend(Sample(s.name, dict(s.labels), s.value) for s in family.samples)
        return cls(samples, types)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str) -> bool:
        """Whether any sample is named ``name``."""
        return any(s.name == name for s in self.samples)

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        """How much ``value(name, **labels)`` grew since ``before``."""
        return self.value(name, **labels) - before.value(name, **labels)


def scrape(base_url: str, token: str | None = None) -> Scrape:
    """``GET /metrics`` (with the bearer token when given), on a connection of its own."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(base_url + "/metrics", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape.parse(reply.text)


def counted(name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in this process (0 when it has none)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
