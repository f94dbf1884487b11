"""External programs some tests drive (promtool, Prometheus, docker-compose, helm, hadolint).

A test that needs one calls :func:`require_tool`: without the program it is skipped with a notice
naming what to install; ``ODOCK_TEST_REQUIRE_TOOLS=1`` (set by ``.ci/run``, which installs them)
turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("ODOCK_TEST_REQUIRE_TOOLS") == "1"


def find_tool(name: str) -> str | None:
    """The path of ``name``: on PATH, or installed beside this interpreter (a pip-installed binary)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def require_tool(name: str, install: str) -> str:
    """The path of ``name``, or a skip with a notice (a failure when tools are required).

    ``install`` says how to get it, e.g. "apt-get install prometheus".
    """
    found = find_tool(name)
    if found is None:
        message = f"{name} not installed ({install}): this test was SKIPPED"
        if REQUIRE_TOOLS:
            pytest.fail(message.replace("this test was SKIPPED", "required (ODOCK_TEST_REQUIRE_TOOLS=1)"))
        pytest.skip(message)
    return found
