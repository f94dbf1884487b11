"""Reading the repository's Dockerfile: its instructions and the image's environment."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword and its arguments (continuation lines joined)."""

    keyword: str
    arguments: str


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped and continued lines joined."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    parsed = []
    for text in logical:
        keyword, _, arguments = text.strip().partition(" ")
        parsed.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return parsed


def runtime_env() -> dict[str, str]:
    """The ENV values of the image (the runtime stage, the last FROM)."""
    stages = instructions()
    last_from = max(n for n, i in enumerate(stages) if i.keyword == "FROM")
    values: dict[str, str] = {}
    for instruction in stages[last_from:]:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                values[name] = value
    return values
