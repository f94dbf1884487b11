"""The error catalogue in docs/errors.md stays in step with the exception tree."""

from __future__ import annotations

from pathlib import Path

import orjson

from odock import errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _all_error_classes() -> list[type[errors.OdockError]]:
    found: list[type[errors.OdockError]] = []
    pending: list[type[errors.OdockError]] = [errors.OdockError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_documented() -> None:
    """Each error class's stable code appears in docs/errors.md."""
    text = DOC.read_text()
    missing = sorted({c.code for c in _all_error_classes()} - {c for c in _codes_in(text)})
    assert missing == []


def _codes_in(text: str) -> set[str]:
    return {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}


def test_error_body_shape() -> None:
    """An error renders the OpenAI-compatible body with code, message, type and param."""
    body = orjson.loads(errors.ModelNotAllowed("nope", param="model").body())
    assert body == {
        "error": {
            "code": "model_not_allowed",
            "message": "nope",
            "type": "permission_error",
            "param": "model",
        }
    }


def test_upstream_rejected_keeps_provider_status() -> None:
    """A provider 4xx is answered with the provider's own status."""
    assert errors.UpstreamRejected("too long", upstream_status=422).http_status == 422
    assert errors.UpstreamRejected("x").http_status == 400
