"""A gateway's ``GET /metrics`` answer, parsed: which series names it exports, with which labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

# The series a metric family of each type is exposed as (prometheus_client's family name drops
# a counter's ``_total``).
_SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


@dataclass
class Exposition:
    """The series names a scrape exports and the label names each carries."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    """Series name → label names over its samples (empty set: the series has no labels)."""
    declared: set[str] = field(default_factory=set)
    """Series names of every family, including families that have no sample yet."""
    families: set[str] = field(default_factory=set)
    """Family names as exposed (a counter's with its ``_total``)."""
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    """(series name, labels) → value."""

    @classmethod
    def parse(cls, text: str) -> Exposition:
        """Parse Prometheus text exposition format."""
        exposition = cls()
        for family in text_string_to_metric_families(text):
            suffixes = _SERIES_SUFFIXES.get(family.type, ("",))
            exposition.declared.update(family.name + suffix for suffix in suffixes)
            exposition.families.add(family.name + ("_total" if family.type == "counter" else ""))
            for sample in family.samples:
                exposition.labels.setdefault(sample.name, set()).update(sample.labels)
                exposition.values[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return exposition

    def value(self, name: str, **labels: str) -> float:
        """The value of one series (KeyError when it is not exported)."""
        return self.values[(name, frozenset(labels.items()))]


def scrape(base_url: str) -> Exposition:
    """``GET {base_url}/metrics``, parsed."""
    reply = httpx.get(base_url + "/metrics", timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain"), reply.headers["content-type"]
    return Exposition.parse(reply.text)
