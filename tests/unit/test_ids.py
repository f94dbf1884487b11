"""Identifier generators: shapes, uniqueness and time order."""

from __future__ import annotations

import re

import pytest

from odock import ids


def test_ordered_hex_ids_are_32_hex_characters_and_unique() -> None:
    made = [ids.ordered_hex_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert len(set(made)) == len(made)


def test_ordered_hex_ids_sort_by_creation_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids of a later millisecond sort after every id of an earlier one, whatever their random part."""
    clock = iter(range(1_700_000_000_000_000_000, 1_700_000_000_050_000_000, 1_000_000))
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    made = [ids.ordered_hex_id() for _ in range(50)]
    assert made == sorted(made)
    assert int(made[0][:12], 16) == 1_700_000_000_000  # the first 48 bits are the Unix milliseconds


def test_new_request_ids_are_ordered_hex_ids() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", ids.new_request_id())
    assert ids.accept_request_id("bad id with spaces") != "bad id with spaces"
    assert ids.accept_request_id("client-id.1") == "client-id.1"
