"""Server-side SVG charts: well-formed, named for assistive technology, scaled to their data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from odock.web.console.charts import Datum, bar_chart, donut_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    """The chart's XML tree (fails on malformed markup)."""
    return ET.fromstring(str(markup))


def test_a_chart_is_an_image_named_by_its_title_and_described_by_its_values() -> None:
    """role=img, aria-labelledby pointing at the <title> and the <desc> that lists every value."""
    svg = parse(bar_chart([Datum("gpt-4o", 3, "$0.03"), Datum("claude", 1, "$0.01")], title="Cost by model"))
    assert svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == "Cost by model"
    assert desc.text == "gpt-4o: $0.03; claude: $0.01"


def test_bars_are_proportional_to_their_values_and_each_has_a_tooltip() -> None:
    """The largest bar spans the plot; the others in proportion; every bar carries its label and value."""
    svg = parse(bar_chart([Datum("a", 4), Datum("b", 2), Datum("c", 0)], title="t"))
    widths = [float(rect.get("width") or 0) for rect in svg.iter(f"{SVG}rect")]
    assert widths[0] > 0
    assert widths[1] == widths[0] / 2
    assert widths[2] == 0
    tips = [g.find(f"{SVG}title") for g in svg.iter(f"{SVG}g")]
    assert [t.text for t in tips if t is not None] == ["a: 4", "b: 2", "c: 0"]


def test_text_is_escaped() -> None:
    """Labels come from users (model and key names): markup in them is text, not SVG."""
    svg = parse(bar_chart([Datum("<script>x</script>", 1)], title="a & b"))
    assert not list(svg.iter(f"{SVG}script"))
    assert not list(svg.iter("script"))
    assert svg.find(f"{SVG}title").text == "a & b"  # type: ignore[union-attr]


def test_a_line_has_a_point_per_bucket_and_the_highest_at_the_top() -> None:
    """One dot per bucket; the largest value is drawn highest (smallest y), zero on the baseline."""
    data = [Datum(f"d{i}", v) for i, v in enumerate([0, 5, 10, 5])]
    svg = parse(line_chart(data, title="Requests", height=200))
    ys = [float(c.get("cy") or 0) for c in svg.iter(f"{SVG}circle")]
    assert len(ys) == 4
    assert min(ys) == ys[2]
    assert max(ys) == ys[0]
    line = svg.find(f"{SVG}line")
    assert line is not None
    assert float(line.get("y1") or 0) == ys[0]
    assert svg.find(f"{SVG}polyline") is not None


def test_an_empty_series_still_draws_a_named_chart() -> None:
    """No buckets: the axis only, described as having no data."""
    svg = parse(line_chart([], title="Nothing"))
    assert svg.find(f"{SVG}desc").text == "no data"  # type: ignore[union-attr]
    assert not list(svg.iter(f"{SVG}circle"))


def test_donut_slices_share_the_ring_and_skip_zeros() -> None:
    """One slice per non-zero value, each with its share; a single value is a full ring."""
    svg = parse(donut_chart([Datum("2xx", 3), Datum("4xx", 1), Datum("5xx", 0)], title="Statuses"))
    tips = [p.find(f"{SVG}title").text for p in svg.iter(f"{SVG}path")]  # type: ignore[union-attr]
    assert tips == ["2xx: 3 (75%)", "4xx: 1 (25%)"]
    whole = parse(donut_chart([Datum("2xx", 7)], title="Statuses"))
    assert not list(whole.iter(f"{SVG}path"))
    assert [c.find(f"{SVG}title").text for c in whole.iter(f"{SVG}circle")] == ["2xx: 7 (100%)"]  # type: ignore[union-attr]


def test_the_line_labels_its_first_and_last_bucket_inside_the_frame() -> None:
    """Thirty days get a few labels, the first anchored at its start and the last at its end."""
    svg = parse(line_chart([Datum(f"d{i}", i) for i in range(30)], title="Days", ticks=6))
    labels = [(t.text, t.get("text-anchor")) for t in svg.iter(f"{SVG}text")]
    assert labels[0] == ("d0", "start")
    assert labels[-1] == ("d29", "end")
    assert 4 <= len(labels) <= 7
