"""A provider's extra header values are secrets: stored encrypted, shown hidden, kept if sent back hidden."""

from __future__ import annotations

import pytest

from odock.errors import UnprocessableEntity
from odock.providers.config import (
    HIDDEN,
    config_holds,
    holds_plaintext,
    merged_config,
    open_header,
    sealed_config,
    shown_config,
    stored_config,
)
from odock.providers.crypto import EnvelopeDecrypter


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


def test_header_values_are_stored_as_envelopes(decrypter: EnvelopeDecrypter) -> None:
    """Every given header value is stored as an envelope that opens to it; other fields are kept as given."""
    given = {"headers": {"x-proxy-key": "s3cret", "x-version": 2}, "api_version": "v1"}
    stored = stored_config(given, None, decrypter)
    assert stored["api_version"] == "v1"
    assert "s3cret" not in str(stored)
    assert {n: open_header(v, decrypter) for n, v in stored["headers"].items()} == {
        "x-proxy-key": "s3cret",
        "x-version": "2",
    }
    assert not holds_plaintext(stored)
    assert shown_config(stored) == {
        "headers": {"x-proxy-key": HIDDEN, "x-version": HIDDEN},
        "api_version": "v1",
    }


def test_a_hidden_value_keeps_the_stored_envelope_and_encrypts_legacy_plaintext(
    decrypter: EnvelopeDecrypter,
) -> None:
    """Sent back hidden, an envelope is kept as it is and a legacy plaintext value is encrypted now."""
    first = stored_config({"headers": {"x-a": "one"}}, None, decrypter)
    legacy = {"headers": {**first["headers"], "x-b": "two"}}
    assert holds_plaintext(legacy)
    again = stored_config({"headers": {"x-a": HIDDEN, "x-b": HIDDEN}}, legacy, decrypter)
    assert again["headers"]["x-a"] == first["headers"]["x-a"]
    assert open_header(again["headers"]["x-b"], decrypter) == "two"
    assert not holds_plaintext(again)


def test_header_values_are_not_stored_without_an_encryption_pair() -> None:
    """With no encryption pair, a config with header values is refused; one without them is stored."""
    with pytest.raises(UnprocessableEntity, match="never stored in plaintext"):
        stored_config({"headers": {"x-a": "one"}}, None, None)
    assert stored_config({"completion_tokens": 3, "headers": {}}, None, None) == {
        "completion_tokens": 3,
        "headers": {},
    }


@pytest.mark.parametrize("headers", [{"x-a": {"v": 1}}, {"x-a": None}, {"x-a": True}, ["x-a"], "x-a: 1"])
def test_header_values_must_be_text(decrypter: EnvelopeDecrypter, headers: object) -> None:
    """Headers are an object of text values: anything else (an envelope-like object too) is refused."""
    with pytest.raises(UnprocessableEntity):
        stored_config({"headers": headers}, None, decrypter)


def test_sealing_keeps_envelopes_and_encrypts_the_rest(decrypter: EnvelopeDecrypter) -> None:
    """Sealing a legacy config encrypts its plaintext values only; a sealed config is left as it is."""
    sealed = sealed_config({"headers": {"x-a": "one"}, "timeout": 1}, decrypter)
    assert sealed["timeout"] == 1
    assert open_header(sealed["headers"]["x-a"], decrypter) == "one"
    assert sealed_config(sealed, None) == sealed  # nothing to encrypt: no pair needed


def test_config_holds_compares_what_envelopes_open_to(decrypter: EnvelopeDecrypter) -> None:
    """A stored config holds the wanted one when its envelopes open to the wanted values."""
    wanted = {"headers": {"x-a": "one"}, "api_version": "v1"}
    stored = stored_config(wanted, None, decrypter)
    assert config_holds(stored, wanted, decrypter)
    assert not config_holds(stored, {"headers": {"x-a": "two"}, "api_version": "v1"}, decrypter)
    assert not config_holds(stored, {"headers": {"x-a": "one"}, "api_version": "v2"}, decrypter)
    assert not config_holds(stored, {"headers": {"x-a": "one", "x-b": "b"}, "api_version": "v1"}, decrypter)
    assert not config_holds(stored, wanted, None)  # cannot tell: saved again
    assert not config_holds(wanted, wanted, decrypter)  # legacy plaintext: saved again, encrypted
    assert config_holds({"timeout": 1}, {"timeout": 1}, None)


@pytest.mark.parametrize("key", ["connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms"])
@pytest.mark.parametrize("value", [0, -1, 3_600_001, 1.5, "100", True])
def test_a_timeout_override_out_of_range_is_refused_naming_it(key: str, value: object) -> None:
    """A timeout override that is not 1 to 3,600,000 whole milliseconds is a 422 naming the key."""
    with pytest.raises(UnprocessableEntity) as caught:
        stored_config({key: value}, None, None)
    assert caught.value.param == "config"
    assert caught.value.message == f"config.{key} must be a whole number of milliseconds from 1 to 3600000"


def test_timeout_overrides_in_range_are_stored_as_given() -> None:
    """Valid overrides (and a null, which sets none) are stored unchanged."""
    given = {"connect_timeout_ms": 1, "first_byte_timeout_ms": 3_600_000, "idle_timeout_ms": None}
    assert stored_config(given, None, None) == given
