"""lrlab.lab.report.document: one small report, rendered both ways and written."""

from __future__ import annotations

from lrlab.lab.report.document import Block, Report


def _report() -> Report:
    return Report("A <b> & c", ["first", "second"], [
        Block("h2", "Section"),
        Block("p", "a paragraph"),
        Block("ul", items=["one", "two"]),
        Block("table", header=["name", "diff", "acc"], rows=[["x | y", "+0.0100", "0.8500"],
                                                             ["z", "-0.0100", "—"]]),
        Block("table", header=["k", "v"], rows=[["+0.5", "1"]], plain=True),
    ])


def test_markdown():
    assert _report().markdown() == (
        "# A <b> & c\n\n**first**  \nsecond  \n\n## Section\n\na paragraph\n\n- one\n- two\n\n"
        "| name | diff | acc |\n|---|---|---|\n| x \\| y | +0.0100 | 0.8500 |\n"
        "| z | -0.0100 | — |\n\n| k | v |\n|---|---|\n| +0.5 | 1 |\n")


def test_html_escapes_and_aligns_numbers(tmp_path):
    page = _report().html()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<h1>A &lt;b&gt; &amp; c</h1>" in page and '<p class="headline">first</p>' in page
    assert '<p class="sub">second</p>' in page and "<ul><li>one</li><li>two</li></ul>" in page
    assert '<td class="pos">+0.0100</td>' in page and '<td class="neg">-0.0100</td>' in page
    assert '<td class="num">0.8500</td>' in page and '<td class="num">—</td>' in page
    assert '<td class="">+0.5</td>' in page  # a plain table: no numeric classes
    md, html = _report().write(tmp_path)
    assert (md, html) == (tmp_path / "report.md", tmp_path / "report.html")
    assert md.read_text() == _report().markdown() and html.read_text() == page
    assert _report().stats == []  # a report that is not a comparison's has no rows
