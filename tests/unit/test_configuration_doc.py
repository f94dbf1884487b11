"""The settings reference in docs/configuration.md stays in step with the Settings model."""

from __future__ import annotations

from pathlib import Path

from odock.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    """Each setting's ODOCK_ variable appears in docs/configuration.md."""
    text = DOC.read_text()
    missing = [name for name in Settings.model_fields if f"`ODOCK_{name.upper()}`" not in text]
    assert missing == []
