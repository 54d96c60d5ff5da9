"""A report as data (sections of paragraphs, tables and images) and its two renderings: one
self-contained HTML page (images inlined as base64) and Markdown with the PNG files beside it.
Both are written atomically (temp file + ``os.replace``) and are byte-identical for equal input.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from simulator.files import write_atomic


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    filename: str          # "memory.png", written beside report.md
    png: bytes
    alt: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)   # str (a paragraph) | Table | Image

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]


CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .subtitle{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left} th{background:#eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ok{background:#dff3df} td.bad{background:#f8d7d7} td.err{background:#e4e4e4}
caption{caption-side:top;text-align:left;font-weight:bold;padding-bottom:.3em}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
nav ol{columns:2} .verdict-fits{color:#1a7f37} .verdict-nofit{color:#b42318}
"""

_NUM = re.compile(r"^[-+]?[\d.,\s]+(e[-+]?\d+)?(\s*[A-Za-zµ/%]{0,16})?$", re.I)


def _cell_class(text: str) -> str:
    t = text.strip()
    if t in ("yes", "ok", "fits", "FITS"):
        return ' class="ok"'
    if t in ("no", "VIOLATED", "does not fit", "DOES NOT FIT"):
        return ' class="bad"'
    if t.startswith("error"):
        return ' class="err"'
    if t and t[0] in "-+0123456789" and _NUM.match(t):
        return ' class="num"'
    return ""


def _inline_html(text: str) -> str:
    """Paragraph text: HTML-escaped, **bold** kept."""
    esc = html.escape(text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc)


def to_html(doc: Document) -> str:
    """One self-contained page: inline CSS, images as data URIs, no scripts, no external fetches."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(doc.title)}</h1>", f'<p class="subtitle">{html.escape(doc.subtitle)}</p>',
           "<nav><ol>"]
    out += [f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in doc.sections]
    out.append("</ol></nav>")
    for s in doc.sections:
        out.append(f'<section id="{s.anchor}">')
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                out.append(f"<p>{_inline_html(b)}</p>")
            elif isinstance(b, Table):
                out.append("<table>")
                if b.caption:
                    out.append(f"<caption>{html.escape(b.caption)}</caption>")
                out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.headers) + "</tr></thead>")
                out.append("<tbody>")
                for r in b.rows:
                    out.append("<tr>" + "".join(f"<td{_cell_class(str(c))}>{html.escape(str(c))}</td>" for c in r)
                               + "</tr>")
                out.append("</tbody></table>")
            elif isinstance(b, Image):
                data = base64.b64encode(b.png).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">'
                           f"<figcaption>{html.escape(b.alt)}</figcaption></figure>")
        out.append("</section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _md_cell(c: str) -> str:
    return str(c).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    """Markdown with pipe tables; images link to the PNG files written beside the report."""
    out = [f"# {doc.title}", "", f"_{doc.subtitle}_", ""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"**{b.caption}**", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
                out.append("|" + "|".join("---" for _ in b.headers) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
                out.append("")
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({b.filename})", ""]
    return "\n".join(out)


def write_report(doc: Document, out_dir: str | Path) -> Path:
    """Write the PNGs, report.md and report.html into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for img in doc.images():
        write_atomic(out / img.filename, img.png)
    write_atomic(out / "report.md", to_markdown(doc).encode("utf-8"))
    page = out / "report.html"
    write_atomic(page, to_html(doc).encode("utf-8"))
    return page
