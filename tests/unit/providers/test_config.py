"""A provider's extra header values are write-only: shown hidden, kept when sent back hidden."""

from __future__ import annotations

import pytest

from odock.errors import UnprocessableEntity
from odock.providers.config import HIDDEN, merged_config, shown_config


def test_header_values_are_shown_hidden_and_the_rest_as_stored() -> None:
    stored = {"headers": {"x-org": "o1", "x-proxy-key": "s3cret"}, "api_version": "2024-10-21"}
    assert shown_config(stored) == {
        "headers": {"x-org": HIDDEN, "x-proxy-key": HIDDEN},
        "api_version": "2024-10-21",
    }
    assert stored["headers"]["x-proxy-key"] == "s3cret"  # the stored config is not changed
    assert shown_config(None) == {}
    assert shown_config({"headers": "not a mapping"}) == {"headers": "not a mapping"}


def test_a_hidden_value_sent_back_keeps_the_stored_one_and_new_values_replace() -> None:
    stored = {"headers": {"x-org": "o1", "x-proxy-key": "s3cret"}}
    given = {"headers": {"x-org": "o2", "x-proxy-key": HIDDEN, "x-new": "n"}, "extra_body_fields": ["a"]}
    assert merged_config(given, stored) == {
        "headers": {"x-org": "o2", "x-proxy-key": "s3cret", "x-new": "n"},
        "extra_body_fields": ["a"],
    }
    assert merged_config({"headers": {}}, stored) == {"headers": {}}  # headers left out are removed
    assert merged_config({"timeout": 1}, stored) == {"timeout": 1}


def test_a_hidden_value_for_a_header_never_stored_is_refused() -> None:
    with pytest.raises(UnprocessableEntity, match="x-new"):
        merged_config({"headers": {"x-new": HIDDEN}}, {"headers": {"x-org": "o1"}})
    with pytest.raises(UnprocessableEntity):
        merged_config({"headers": {"x-new": HIDDEN}}, None)
