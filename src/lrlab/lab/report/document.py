"""The document model of a report, and its rendering: Markdown, and one self-contained HTML
file (inline CSS, figures embedded as base64 ``data:`` URIs, no link to anything).

A :class:`Report` is a title, headline lines and a list of :class:`Block`; the comparison
report (:mod:`lrlab.lab.report.build`) and the tune report (:mod:`lrlab.lab.tune.report`)
both build one and render it with :meth:`Report.markdown` and :meth:`Report.html`.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.files import atomic_file

__all__ = ["Block", "Report"]


@dataclass
class Block:
    """One piece of a report: a heading (``h2``: ``text``), a paragraph (``p``: ``text``), a
    list (``ul``: ``items``), a table (``table``: ``header`` and ``rows`` of cell texts) or a
    figure (``img``: the PNG ``image``, ``text`` its alt text)."""

    kind: str  # h2 p ul table img
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    image: Path | None = None
    plain: bool = False  # a table of words: no numeric alignment of its cells


@dataclass
class Report:
    """A report: its title, the headline lines (the first one bold), the blocks in order, and
    ``stats``, the per-label rows a comparison report is made of
    (:class:`lrlab.lab.report.summary.LabelStats`; empty for other reports)."""

    title: str
    headline: list[str]
    blocks: list[Block]
    stats: list[Any] = field(default_factory=list)

    def markdown(self) -> str:
        """The report as Markdown (figures linked by file name, next to the file)."""
        out = [f"# {self.title}", ""]
        out += [f"**{line}**  " if i == 0 else f"{line}  " for i, line in
                enumerate(self.headline)]
        out.append("")
        for b in self.blocks:
            if b.kind == "h2":
                out += [f"## {b.text}", ""]
            elif b.kind == "p":
                out += [b.text, ""]
            elif b.kind == "ul":
                out += [f"- {item}" for item in b.items] + [""]
            elif b.kind == "table":
                out += _md_table(b.header, b.rows) + [""]
            elif b.kind == "img" and b.image is not None:
                out += [f"![{b.text}]({b.image.name})", ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        """The report as one self-contained HTML page."""
        body = [f"<h1>{_escape(self.title)}</h1>"]
        if self.headline:
            body.append(f'<p class="headline">{_escape(self.headline[0])}</p>')
            body += [f'<p class="sub">{_escape(line)}</p>' for line in self.headline[1:]]
        for b in self.blocks:
            if b.kind == "h2":
                body.append(f"<h2>{_escape(b.text)}</h2>")
            elif b.kind == "p":
                body.append(f"<p>{_escape(b.text)}</p>")
            elif b.kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_escape(i)}</li>" for i in b.items)
                            + "</ul>")
            elif b.kind == "table":
                head = "".join(f"<th>{_escape(h)}</th>" for h in b.header)
                rows = "".join("<tr>" + "".join(
                    f'<td class="{"" if b.plain else _cell_class(c)}">{_escape(c)}</td>'
                    for c in row) + "</tr>" for row in b.rows)
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
            elif b.kind == "img" and b.image is not None:
                data = base64.b64encode(b.image.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{_escape(b.text)}" '
                            f'src="data:image/png;base64,{data}"></figure>')
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_escape(self.title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html`` into ``directory``, each whole or not at
        all (:func:`lrlab.files.atomic_file`); returns their paths."""
        md, page = directory / "report.md", directory / "report.html"
        for path, text in ((md, self.markdown()), (page, self.html())):
            with atomic_file(path) as fh:
                fh.write(text)
        return md, page


#: The page's whole style sheet, inlined in its ``<style>``.
_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;"
    "margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}"
    "h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:1.8em;"
    "border-bottom:1px solid #dde2ea;padding-bottom:.2em}"
    ".headline{font-size:1.08em;font-weight:600;background:#eef5ff;border-left:4px solid "
    "#2f6fdf;padding:.5em .8em}.sub{color:#4a5568;margin:.3em 0}"
    "table{border-collapse:collapse;font-size:.84em;margin:.5em 0}"
    "th,td{padding:.3em .45em;border-bottom:1px solid #e5e9f0;text-align:left;"
    "vertical-align:top}th{background:#f5f7fa}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums;white-space:nowrap}td.pos{color:#137333;"
    "text-align:right;white-space:nowrap}td.neg{color:#b3261e;text-align:right;"
    "white-space:nowrap}td.wide{min-width:11em}tr:hover td{background:#fafbfd}"
    ".scroll{overflow-x:auto}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}li{margin:.2em 0}"
)


def _escape(text: str) -> str:
    """``text`` for HTML, quotes included."""
    return html.escape(str(text), quote=True)


def _cell_class(text: str) -> str:
    """How a table cell is aligned and coloured: ``num`` (right, tabular digits), ``pos`` /
    ``neg`` (a signed difference), ``wide`` (long words), or nothing."""
    if re.fullmatch(r"[+-]?0(\.0*)?", text):
        return "num"
    if re.fullmatch(r"\+\d[\d.]*", text):
        return "pos"
    if re.fullmatch(r"-\d[\d.]*", text):
        return "neg"
    if re.fullmatch(r"[\d.,±\s—%e+<\[\]-]+|\d+( of \d+)? vs \d+( of \d+)?", text):
        return "num"
    return "wide" if len(text) > 40 else ""


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table (``|`` in a cell escaped, newlines made spaces)."""
    def cell(t: str) -> str:
        return str(t).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
