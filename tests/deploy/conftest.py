"""Fixtures of the deployment checks: the repository's path, settings read from a container's environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from odock.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]

SettingsFromEnv = Callable[[Mapping[str, str]], Settings]


@pytest.fixture
def settings_from_env(monkeypatch: pytest.MonkeyPatch) -> SettingsFromEnv:
    """Parse settings exactly as a container would from ``environment`` (and nothing else of ours)."""

    def parse(environment: Mapping[str, str]) -> Settings:
        for name in list(os.environ):
            if name.upper().startswith("ODOCK_") or name.lower() in ("https_proxy", "http_proxy", "no_proxy"):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return parse
