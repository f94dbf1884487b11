"""Invoice amounts and CSV lines."""

from __future__ import annotations

import csv
import io

import pytest

from odock.usage.invoices import CSV_COLUMNS, csv_text, usd9


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0.000000000"),
        (1, "0.000000001"),
        (5_182_000, "0.005182000"),
        (12_345_678_901, "12.345678901"),
        (-7, "-0.000000007"),
    ],
)
def test_usd_strings_have_nine_decimals(nanos: int, text: str) -> None:
    """Nanos render as USD with exactly nine decimals, exactly."""
    assert usd9(nanos) == text


def test_csv_header_names_every_column() -> None:
    """The header line lists the record columns and the USD cost, in order."""
    header = next(csv.reader(io.StringIO(csv_text(None))))
    assert header == list(CSV_COLUMNS)
    assert header[:3] == ["id", "request_id", "timestamp"]
    assert header[-1] == "total_cost_usd"
    assert "total_cost_nanos_usd" in header
