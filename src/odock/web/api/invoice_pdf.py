"""The invoice as a PDF document (fpdf2), drawn from an :class:`~odock.usage.invoices.InvoicePreview`.

Sections, in the order of spec §11.4: the period, the scope (organisation id), when it was
generated, the filters, the totals (total, LLM and MCP cost), then the cost by category, by team,
of the direct organisation API keys, by model, by MCP server and by MCP tool. Every amount is USD with 9
decimals, as the preview carries it (the nano is the unit of account). Nothing is stored.

The document uses the PDF core font (Helvetica, Latin-1): characters outside Latin-1 in names
are shown as ``?`` rather than failing the download.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fpdf import FPDF
from fpdf.fonts import FontFace

from odock.usage.invoices import CostLine, InvoicePreview, McpCostLine

NAME_LIMIT = 60
TITLE = "Odock usage invoice"


def _text(value: object) -> str:
    """``value`` as text the core font can draw."""
    text = "-" if value is None or value == "" else str(value)
    return text.encode("latin-1", "replace").decode("latin-1")


def _name(line: CostLine) -> str:
    label = line.label or line.key or "(none)"
    if line.key and line.label and line.label != line.key:
        label = f"{line.label} ({line.key})"
    return _text(label[:NAME_LIMIT])


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class _Invoice(FPDF):
    """An A4 page with a running footer (page numbers)."""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110)
        self.cell(0, 6, f"{TITLE} - page {self.page_no()}/{{nb}}", align="C")


def invoice_pdf(preview: InvoicePreview) -> bytes:
    """The invoice document for ``preview``."""
    pdf = _Invoice(format="A4")
    pdf.set_title(TITLE)
    pdf.set_creator("Odock")
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(0, 10, TITLE, new_x="LMARGIN", new_y="NEXT")
    _facts(pdf, preview)
    _section(pdf, "Totals")
    totals = preview.totals
    _table(
        pdf,
        ("Item", "Amount"),
        [
            ("Total cost", totals.total_cost_usd),
            ("LLM cost", totals.llm_cost_usd),
            ("MCP cost", totals.mcp_cost_usd),
            ("Requests", f"{totals.requests:,}"),
            ("Tokens", f"{totals.total_tokens:,}"),
        ],
    )
    _section(pdf, "Cost by category")
    _table(
        pdf,
        ("Category", "Cost (USD)"),
        [(c.category.replace("_", " "), c.cost_usd) for c in preview.by_category],
    )
    _lines(pdf, "Cost by team", "Team", preview.by_team)
    _lines(pdf, "Direct organisation API keys", "API key", preview.direct_organisation_keys)
    _lines(pdf, "Cost by model", "Model", preview.by_model)
    _mcp_lines(pdf, "Cost by MCP server", "MCP server", preview.by_mcp_server)
    _mcp_lines(pdf, "Cost by MCP tool", "Server / tool", preview.by_mcp_tool)
    return bytes(pdf.output())


def _facts(pdf: FPDF, preview: InvoicePreview) -> None:
    filters = preview.filters
    facts = [
        ("Period", f"{_when(preview.period_start)} to {_when(preview.period_end)} (end exclusive)"),
        ("Scope", f"organisation {preview.organisation_id or 'all organisations'}"),
        ("Generated", _when(preview.generated_at)),
        ("Teams", ", ".join(filters.team_ids) or "all"),
        ("API keys", ", ".join(filters.api_key_ids) or "all"),
        ("Currency", preview.currency),
    ]
    pdf.set_font("Helvetica", size=10)
    for label, value in facts:
        pdf.set_font(style="B")
        pdf.cell(28, 6, label)
        pdf.set_font(style="")
        pdf.multi_cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")


def _section(pdf: FPDF, title: str) -> None:
    pdf.ln(4)
    pdf.set_font("Helvetica", style="B", size=12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)


def _lines(pdf: FPDF, title: str, column: str, lines: Sequence[CostLine]) -> None:
    _section(pdf, title)
    if not lines:
        pdf.cell(0, 6, "None in this period.", new_x="LMARGIN", new_y="NEXT")
        return
    rows = [(_name(line), f"{line.requests:,}", f"{line.total_tokens:,}", line.cost_usd) for line in lines]
    _table(pdf, (column, "Requests", "Tokens", "Cost (USD)"), rows)


def _mcp_lines(pdf: FPDF, title: str, column: str, lines: Sequence[McpCostLine]) -> None:
    _section(pdf, title)
    if not lines:
        pdf.cell(0, 6, "None in this period.", new_x="LMARGIN", new_y="NEXT")
        return
    rows = [(_name(line), f"{line.requests:,}", f"{line.tool_calls:,}", line.cost_usd) for line in lines]
    _table(pdf, (column, "Requests", "Tool calls", "Cost (USD)"), rows)


def _table(pdf: FPDF, head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = (70, 40) if len(head) == 2 else (82, 28, 34, 46)
    aligns = ("LEFT", *("RIGHT",) * (len(head) - 1))
    with pdf.table(
        col_widths=widths,
        width=sum(widths),
        align="LEFT",
        text_align=aligns,
        headings_style=FontFace(emphasis="BOLD", fill_color=(238, 240, 244)),
        line_height=6,
    ) as table:
        table.row([_text(cell) for cell in head])
        for values in rows:
            table.row([_text(cell) for cell in values])
