"""Charts drawn on the server as SVG: horizontal bars, a line over time, a donut.

Pages load no chart library: each function returns the ``<svg>`` as :class:`markupsafe.Markup`
to drop into a template. Every chart is an image with a name (``role="img"``, a ``<title>`` and a
``<desc>`` listing the values, referenced by ``aria-labelledby``), and every bar, point and slice
carries its own ``<title>`` (a tooltip), so nothing is told by colour alone. Colours come from the
stylesheet through classes (the page's CSP refuses inline styles).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

SLICE_CLASSES = 6  # .s0 … .s5 in spend.css; further slices reuse them (each slice is labelled)


@dataclass(frozen=True)
class Datum:
    """One value to draw: its label, its value, and the text a person reads for it."""

    label: str
    value: float
    text: str = ""

    @property
    def shown(self) -> str:
        """The value as read aloud and in the tooltip."""
        return self.text or f"{self.value:,.0f}"


def _frame(kind: str, title: str, width: int, height: int, body: list[str], data: Sequence[Datum]) -> Markup:
    """The ``<svg>`` around ``body``, named by ``title`` and described by every value."""
    summary = "; ".join(f"{d.label}: {d.shown}" for d in data) or "no data"
    # Ids for aria-labelledby: derived from the content, so a page renders the same every time.
    ident = (
        "chart-"
        + hashlib.sha1(f"{title}|{summary}|{len(body)}".encode(), usedforsecurity=False).hexdigest()[:10]
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" data-chart="{kind}">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(summary)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def bar_chart(data: Sequence[Datum], *, title: str, width: int = 440) -> Markup:
    """Horizontal bars, one row per datum, scaled to the largest value (labels left, values right)."""
    row, label_width, value_width = 26, 140, 90
    height = max(row * len(data), row)
    top = max((d.value for d in data), default=0) or 1
    span = width - label_width - value_width
    body: list[str] = []
    for index, datum in enumerate(data):
        y = index * row
        length = max(datum.value / top * span, 0)
        body.append(
            f'<g class="datum"><title>{escape(datum.label)}: {escape(datum.shown)}</title>'
            f'<text x="0" y="{y + 17}">{escape(_short(datum.label, 22))}</text>'
            f'<rect class="bar" x="{label_width}" y="{y + 5}" width="{length:.1f}" '
            f'height="{row - 10}" rx="3"/>'
            f'<text x="{width}" y="{y + 17}" text-anchor="end">{escape(datum.shown)}</text></g>'
        )
    return _frame("bar", title, width, height, body, data)


def line_chart(
    data: Sequence[Datum], *, title: str, width: int = 480, height: int = 180, ticks: int = 5
) -> Markup:
    """Values over time as a line with a dot per bucket, a baseline and a few bucket labels."""
    left, bottom, top_pad = 8, 22, 10
    plot_w, plot_h = width - 2 * left, height - bottom - top_pad
    top = max((d.value for d in data), default=0) or 1
    step = plot_w / max(len(data) - 1, 1)

    def x(i: int) -> float:
        return left + i * step if len(data) > 1 else left + plot_w / 2

    def y(value: float) -> float:
        return top_pad + plot_h - value / top * plot_h

    base = top_pad + plot_h
    body = [f'<line class="axis" x1="{left}" y1="{base}" x2="{width - left}" y2="{base}"/>']
    if data:
        points = " ".join(f"{x(i):.1f},{y(d.value):.1f}" for i, d in enumerate(data))
        body.append(f'<polyline class="line" fill="none" points="{points}"/>')
    every = max(math.ceil(len(data) / ticks), 1)
    for i, datum in enumerate(data):
        body.append(
            f'<circle class="dot" cx="{x(i):.1f}" cy="{y(datum.value):.1f}" r="3">'
            f"<title>{escape(datum.label)}: {escape(datum.shown)}</title></circle>"
        )
        last = i == len(data) - 1
        if (i % every == 0 and len(data) - 1 - i >= every / 2) or (last and i > 0):
            anchor = "start" if i == 0 else "end" if last else "middle"
            body.append(
                f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="{anchor}">{escape(datum.label)}</text>'
            )
    return _frame("line", title, width, height, body, data)


def donut_chart(data: Sequence[Datum], *, title: str, size: int = 180) -> Markup:
    """Shares of a whole as a ring of slices, the total in the middle, a legend beside (zeros left out)."""
    parts = [d for d in data if d.value > 0]
    total = sum(d.value for d in parts)
    thickness = 26
    centre, radius = size / 2, size / 2 - thickness / 2 - 2
    body: list[str] = []
    if total <= 0:
        body.append(f'<circle class="ring" cx="{centre}" cy="{centre}" r="{radius}" fill="none"/>')
    angle = -math.pi / 2
    for index, datum in enumerate(parts):
        share = datum.value / total
        css = f"slice s{index % SLICE_CLASSES}"
        tip = f"<title>{escape(datum.label)}: {escape(datum.shown)} ({share:.0%})</title>"
        if share >= 0.9999:
            body.append(
                f'<circle class="{css}" cx="{centre}" cy="{centre}" r="{radius}" fill="none" '
                f'stroke-width="{thickness}">{tip}</circle>'
            )
            break
        end = angle + share * 2 * math.pi
        large = 1 if share > 0.5 else 0
        x1, y1 = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
        x2, y2 = centre + radius * math.cos(end), centre + radius * math.sin(end)
        body.append(
            f'<path class="{css}" fill="none" stroke-width="{thickness}" '
            f'd="M {x1:.2f} {y1:.2f} A {radius} {radius} 0 {large} 1 {x2:.2f} {y2:.2f}">{tip}</path>'
        )
        angle = end
    shown = f"{total:,.0f}"
    body.append(f'<text class="total" x="{centre}" y="{centre + 5}" text-anchor="middle">{shown}</text>')
    for index, datum in enumerate(parts):  # the legend: colour is never the only signal
        y = 24 + index * 22
        body.append(
            f'<rect class="key s{index % SLICE_CLASSES}" x="{size + 10}" y="{y - 10}" '
            'width="12" height="12"/>'
            f'<text x="{size + 28}" y="{y}">{escape(_short(datum.label, 18))}: {escape(datum.shown)}</text>'
        )
    return _frame("donut", title, size + 190, max(size, 24 + len(parts) * 22), body, parts)
