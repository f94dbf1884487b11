"""The invoices page in a real browser: totals after real calls, the CSV and PDF downloads, periods."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pypdf

from odock.usage.invoices import usd9
from tests.integration.console.conftest import SignIn
from tests.support.browser import Page
from tests.support.console_spend import Billed, download
from tests.support.console_spend import billed as billed  # the module's billed organisation


def test_the_invoice_totals_the_calls_and_downloads_as_csv_and_pdf(
    page: Page, sign_in: SignIn, billed: Billed, tmp_path: Path
) -> None:
    """This month's invoice shows the records' total; its CSV holds each record, its PDF the totals."""
    records = billed.records()
    total = sum(r["total_cost_nanos_usd"] for r in records)
    sign_in(billed.admin).open(f"/o/{billed.org}/invoices")
    assert page.find("[data-testid=total-cost] .value").text == usd9(total)
    assert page.find("[data-testid=llm-cost] .value").text == usd9(total)
    assert page.find("[data-testid=invoice-requests] .value").text == str(len(records))
    model_line = page.find("table[data-testid=by-model] tbody tr").text
    assert billed.tenant.model in model_line
    assert usd9(total) in model_line
    assert billed.tenant.key_id in page.find("table[data-testid=direct-keys]").text

    answer = download(page, page.find("[data-testid=download-csv]").get_attribute("href") or "")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert {r["request_id"] for r in rows} == {r["request_id"] for r in records}
    assert sum(int(r["total_cost_nanos_usd"]) for r in rows) == total

    answer = download(page, page.find("[data-testid=download-pdf]").get_attribute("href") or "")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(answer.content)).pages)
    assert f"Total cost {usd9(total)}" in text
    assert f"organisation {billed.org}" in text
    assert billed.tenant.model in text
    assert "Cost by category" in text
    rendered = render_first_page(answer.content, tmp_path)
    if rendered is not None:
        assert rendered.stat().st_size > 1000


def test_a_key_filter_and_a_custom_period(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """Filtering by the key keeps its calls; a period before the calls is empty; a reversed one is refused."""
    records = billed.records()
    total = sum(r["total_cost_nanos_usd"] for r in records)
    sign_in(billed.admin).open(f"/o/{billed.org}/invoices?preset=last_30_days")
    page.fill({"api_key_id": billed.tenant.key_id}).submit("form[data-invoice-form]")
    page.wait_path(lambda p: "api_key_id=" in p)
    assert page.find("[data-testid=total-cost] .value").text == usd9(total)
    assert f"api_key_id={billed.tenant.key_id}" in (
        page.find("[data-testid=download-pdf]").get_attribute("href") or ""
    )

    page.open(f"/o/{billed.org}/invoices?preset=custom&from=2020-01-01&to=2020-01-31")
    assert page.find("[data-testid=total-cost] .value").text == usd9(0)
    page.wait_text("No usage in this period", "[data-testid=empty]")

    page.open(f"/o/{billed.org}/invoices?preset=custom&from=2020-02-01&to=2020-01-01")
    assert "must not be after" in page.error_for("from")


def render_first_page(pdf: bytes, directory: Path) -> Path | None:
    """The PDF's first page rendered as a PNG by poppler's pdftoppm (None, with a notice, without it)."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        print("NOTICE: pdftoppm is not installed: the PDF was not rendered", file=sys.stderr)
        return None
    source = directory / "invoice.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [tool, "-png", "-r", "60", "-f", "1", "-l", "1", str(source), str(directory / "page")], check=True
    )
    pages = sorted(directory.glob("page*.png"))
    assert pages, "pdftoppm rendered no page"
    return pages[0]
