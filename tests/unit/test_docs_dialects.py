"""The translation matrix in docs/providers.md stays in step with the registries.

Each row of the matrix names the surfaces it documents (their ``odock.surfaces.registry`` names,
in backticks); each column is one upstream API, represented by one provider type. A cell says
``pass-through``, ``translated`` or ``refused (…)``, and must say what ResolveProvider does with
that surface and that provider type.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from odock.llm.upstream import Endpoint
from odock.providers.provider_types import ProviderTypeInfo, describe
from odock.providers.tables import ProviderType
from odock.surfaces.registry import SURFACES
from odock.surfaces.surface import Surface

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
MATRIX_HEADING = "### The matrix"
# The matrix's upstream columns, each with the provider type that stands for it.
COLUMNS = {
    "OpenAI-compatible": ProviderType.OPENAI,
    "Anthropic": ProviderType.ANTHROPIC,
    "Gemini": ProviderType.GOOGLE,
}
VERDICTS = ("pass-through", "translated", "refused")


def expected_verdict(surface: Surface, spec: ProviderTypeInfo) -> str:
    """What ResolveProvider does with a request of ``surface`` to a model of ``spec``'s type."""
    if surface.dialect in spec.passthrough:
        return "pass-through"
    codecs = spec.codecs
    if codecs is None:
        return "refused"
    if surface.endpoint == Endpoint.EMBEDDINGS:
        can = surface.embeddings_client is not None and codecs.embeddings is not None
    else:
        can = surface.client is not None
    return "translated" if can else "refused"


def matrix_rows(text: str) -> list[dict[str, str]]:
    """The matrix table (the first table after its heading) as one dict per row, by column title."""
    lines = text.split(MATRIX_HEADING, 1)[1].splitlines()
    table = _first_table(lines)
    header = _cells(table[0])
    return [dict(zip(header, _cells(line), strict=True)) for line in table[2:]]


def _first_table(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def verdict_of(cell: str) -> str:
    """The cell's first word(s): one of VERDICTS."""
    found = [verdict for verdict in VERDICTS if cell.startswith(verdict)]
    assert found, f"matrix cell {cell!r} does not start with one of {VERDICTS}"
    return found[0]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    """The matrix of docs/providers.md."""
    return matrix_rows(DOC.read_text())


def _surfaces_of(row: dict[str, str]) -> list[str]:
    return re.findall(r"`([a-z_]+)`", row["surfaces"])


def test_the_matrix_has_a_column_per_upstream_api(rows: list[dict[str, str]]) -> None:
    """Every representative column is in the table."""
    assert set(COLUMNS) <= set(rows[0])


def test_every_surface_is_a_row_of_the_matrix(rows: list[dict[str, str]]) -> None:
    """Each surface of the registry appears in exactly one row, and no row names an unknown one."""
    named = [name for row in rows for name in _surfaces_of(row)]
    assert sorted(named) == sorted(SURFACES)


def test_every_cell_says_what_the_gateway_does(rows: list[dict[str, str]]) -> None:
    """pass-through iff the upstream speaks the dialect; refused iff no codec carries it."""
    wrong = [
        (name, column, row[column], expected)
        for row in rows
        for name in _surfaces_of(row)
        for column, provider_type in COLUMNS.items()
        if verdict_of(row[column]) != (expected := expected_verdict(SURFACES[name], describe(provider_type)))
    ]
    assert wrong == []


def test_the_matrix_has_every_verdict(rows: list[dict[str, str]]) -> None:
    """The table is not vacuous: it documents passing through, translating and refusing."""
    verdicts = {verdict_of(row[column]) for row in rows for column in COLUMNS}
    assert verdicts == set(VERDICTS)
