"""Telemetry: logging setup, prompt logging, Prometheus metrics (metrics.py, exposition.py)."""
