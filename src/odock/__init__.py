"""Odock: an open-source AI governance gateway."""

__version__ = "0.1.0"
