"""A report's PDF pages as images, and the checks a reader's eye would make, done mechanically.

* No page is more than half empty, except the last page of a part (a part starts on a new
  page: its heading is a level-1 PDF bookmark) and the report's last page.
* No table is wider than the page's text area (WeasyPrint's layout boxes).
* Every image in the report is inside a <figure> with a numbered caption ("Figure N.").

``render`` writes the page images to ``<report>/pages/page-NN.png`` and the measurements to
``<report>/pages/layout.json`` for a person to look at.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

PAGE_DPI = 60
# The page margins of the report's @page rule (mm): the page number sits in the bottom one.
MARGINS_MM = {"top": 12.0, "right": 12.0, "bottom": 14.0, "left": 12.0}
HALF = 0.5
INK = 235  # a pixel darker than this (0..255 grey) is ink


def render_document(html_path: Path, css: str | None = None):
    """WeasyPrint's laid-out document of ``html_path`` (its own print styles, plus ``css``)."""
    import weasyprint

    sheets = [weasyprint.CSS(string=css)] if css else None
    return weasyprint.HTML(filename=str(html_path)).render(stylesheets=sheets)


def part_starts(document, *, slack_pt: float = 30.0) -> list[int]:
    """Pages (from 0) that a part starts: a level-1 bookmark at the top of the page."""
    top = MARGINS_MM["top"] * 72 / 25.4 + slack_pt
    return sorted({page for _, (page, _x, y), _, _ in document.make_bookmark_tree() if y <= top})


def _boxes(box):
    yield box
    for child in getattr(box, "children", None) or []:
        yield from _boxes(child)


def wide_tables(document, tolerance_px: float = 1.0) -> list[dict]:
    """Tables whose right edge passes the text area's, per page."""
    out = []
    for number, page in enumerate(document.pages):
        page_box = page._page_box
        right = page_box.content_box_x() + page_box.width
        for box in _boxes(page_box):
            if type(box).__name__ != "TableBox":
                continue
            edge = box.position_x + box.margin_width()
            if edge > right + tolerance_px:
                text = " ".join(t.text for t in _boxes(box) if hasattr(t, "text") and isinstance(t.text, str))[:80]
                out.append({"page": number + 1, "overflow_mm": round((edge - right) * 25.4 / 96, 1), "text": text})
    return out


def rasterise(pdf_path: Path, out_dir: Path, *, dpi: int = PAGE_DPI) -> list[Path]:
    """Every page of ``pdf_path`` as ``out_dir/page-NN.png`` (old page images removed first)."""
    import pypdfium2 as pdfium

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("page-*.png"):
        old.unlink()
    pdf = pdfium.PdfDocument(str(pdf_path))
    paths = []
    try:
        for i in range(len(pdf)):
            image = pdf[i].render(scale=dpi / 72).to_pil()
            path = out_dir / f"page-{i + 1:02d}.png"
            image.save(path)
            paths.append(path)
    finally:
        pdf.close()
    return paths


def page_fill(image_path: Path, *, dpi: int = PAGE_DPI) -> float:
    """Share of the text area's height down to the lowest ink on the page (0 = blank, 1 = full)."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(image_path).convert("L"))
    px = dpi / 25.4
    top, bottom = int(MARGINS_MM["top"] * px), grey.shape[0] - int(MARGINS_MM["bottom"] * px)
    left, right = int(MARGINS_MM["left"] * px), grey.shape[1] - int(MARGINS_MM["right"] * px)
    area = grey[top:bottom, left:right]
    rows = np.nonzero((area < INK).any(axis=1))[0]
    return 0.0 if rows.size == 0 else float((rows[-1] + 1) / area.shape[0])


class _Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.depth, self.images, self.loose, self.figures, self.captions = 0, 0, 0, 0, []
        self._caption = None

    def handle_starttag(self, tag, attrs):
        if tag == "figure":
            self.depth += 1
            self.figures += 1
        elif tag == "img":
            self.images += 1
            self.loose += self.depth == 0
        elif tag == "figcaption":
            self._caption = ""

    def handle_endtag(self, tag):
        if tag == "figure":
            self.depth -= 1
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append(self._caption.strip())
            self._caption = None

    def handle_data(self, data):
        if self._caption is not None:
            self._caption += data


def figure_captions(html_text: str) -> dict:
    """Images, figures and captions of a report's HTML; ``problems`` lists what a reader would miss."""
    parser = _Figures()
    parser.feed(html_text)
    numbered = [c for c in parser.captions if re.match(r"Figure \d+\.", c)]
    problems = []
    if parser.loose:
        problems.append(f"{parser.loose} image(s) outside a <figure>")
    if len(numbered) != parser.figures:
        problems.append(f"{parser.figures - len(numbered)} figure(s) without a numbered caption")
    numbers = [int(re.match(r"Figure (\d+)\.", c).group(1)) for c in numbered]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"figure numbers out of order: {numbers}")
    return {"images": parser.images, "figures": parser.figures, "captions": numbered, "problems": problems}


def half_empty_pages(fills: list[float], starts: list[int]) -> list[int]:
    """Pages (from 1) more than half empty that are neither the last of a part nor the last page."""
    out = []
    for i, fill in enumerate(fills):
        last_of_part = i + 1 == len(fills) or (i + 1) in starts
        if fill < HALF and not last_of_part:
            out.append(i + 1)
    return out


def check_report(html_path: Path, pdf_path: Path, pages_dir: Path, *, css: str | None = None, document=None) -> dict:
    """Page images of ``pdf_path`` in ``pages_dir`` and the layout checks; written to ``layout.json``."""
    document = document or render_document(html_path, css)
    images = rasterise(pdf_path, pages_dir)
    fills = [round(page_fill(p), 3) for p in images]
    starts = part_starts(document)
    result = {
        "pages": len(images),
        "fill": fills,
        "part_starts": [s + 1 for s in starts],
        "half_empty": half_empty_pages(fills, starts),
        "wide_tables": wide_tables(document),
        "figures": figure_captions(Path(html_path).read_text(encoding="utf-8")),
    }
    (pages_dir / "layout.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


__all__ = [
    "check_report",
    "figure_captions",
    "half_empty_pages",
    "page_fill",
    "part_starts",
    "rasterise",
    "render_document",
    "wide_tables",
]
