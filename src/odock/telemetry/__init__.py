"""Telemetry: logging setup (metrics and traces arrive with the observability issue)."""
