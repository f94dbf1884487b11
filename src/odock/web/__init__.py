"""Thin HTTP adapters: raw ASGI on the gateway hot path (no framework layers), JSON in and out."""
