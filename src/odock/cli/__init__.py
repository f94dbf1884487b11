"""The ``odock`` command line: serve, config, migrate, and configuration management."""

from __future__ import annotations

from odock.cli.main import main

__all__ = ["main"]
