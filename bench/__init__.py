"""Odock's benchmark suite: a fast mock upstream, load drivers and the runner (see docs/performance.md)."""
