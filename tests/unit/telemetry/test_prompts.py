"""The answer text that prompt logging writes for a unary chat completion."""

from __future__ import annotations

import orjson

from odock.telemetry.prompts import answer_text


def test_every_choice_is_one_line_of_its_text() -> None:
    """Each choice's message content is logged, one per line, in order."""
    body = {"choices": [{"message": {"content": "first"}}, {"message": {"content": "second"}}]}
    assert answer_text(orjson.dumps(body)) == "first\nsecond"


def test_a_choice_without_text_is_logged_as_its_json() -> None:
    """A tool call's null content or a content array is written as JSON, not dropped or crashed on."""
    body = {"choices": [{"message": {"content": None}}, {"message": {"content": [{"type": "text"}]}}]}
    assert answer_text(orjson.dumps(body)) == 'null\n[{"type":"text"}]'


def test_a_body_that_is_not_a_completion_gives_a_placeholder_or_nothing() -> None:
    """A body that is not JSON says so; JSON without choices logs no text."""
    assert answer_text(b"<html>") == "(not JSON)"
    assert answer_text(b"[1, 2]") == ""
    assert answer_text(b'{"choices": "x"}') == ""
