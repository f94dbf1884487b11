"""Fake upstream servers that speak the vendors' exact wire formats, for integration tests."""
