"""The report: run report/report.ipynb over a study's records, render HTML and PDF.

HTML comes from nbconvert (code cells hidden, figures embedded), PDF from WeasyPrint on
that HTML: neither needs a browser download nor a TeX installation.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

from peftlab.analysis.questions import answer_questions, compare_protocols, write_questions
from peftlab.analysis.reference import import_reference
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1, table1_html
from peftlab.core.errors import ConfigError
from peftlab.core.files import write_json
from peftlab.core.paths import repo_root, resolve_path
from peftlab.report.pages import check_report, render_document
from peftlab.report.view import ReportView
from peftlab.run.records import package_versions
from peftlab.study.plan import study_path
from peftlab.study.run_notebook import skip_iri_format_checker

REPORT_NOTEBOOK = "report/report.ipynb"
# Print layout (WeasyPrint): A4 landscape, page numbers, parts on new pages, tables and figures
# kept whole and within the text area. The margins match report_pages.MARGINS_MM.
PDF_CSS = """
@page { size: A4 landscape; margin: 12mm 12mm 14mm 12mm;
  @bottom-left { content: string(report-title); font: 7pt sans-serif; color: #666; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font: 7pt sans-serif; color: #666; } }
html, body { background: white; }
body { font-family: "DejaVu Sans", sans-serif; font-size: 8.5pt; line-height: 1.3; margin: 0; padding: 0; }
main, .jp-Notebook, .jp-Cell, .jp-Cell-outputWrapper, .jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output,
.jp-RenderedHTMLCommon, .jp-RenderedMarkdown { padding: 0 !important; margin: 0 !important; width: auto !important;
  max-width: 100% !important; overflow: visible !important; box-shadow: none !important; border: none !important; }
.jp-InputPrompt, .jp-OutputPrompt, .anchor-link { display: none !important; }
.jp-Cell, .jp-Cell-outputWrapper, .jp-Cell-inputWrapper, .jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output,
.jp-RenderedHTMLCommon, .jp-RenderedMarkdown { break-inside: auto !important; page-break-inside: auto !important; }
.jp-OutputArea-child, .jp-OutputArea-output, .jp-InputArea, .jp-Cell-inputWrapper { display: block !important; }
h1 { font-size: 14pt; margin: 0 0 1mm 0; string-set: report-title content(); bookmark-level: 1; }
h2 { font-size: 12pt; margin: 4mm 0 1.5mm 0; bookmark-level: 2; break-after: avoid; }
h3 { font-size: 10pt; margin: 3mm 0 1mm 0; bookmark-level: 3; break-after: avoid; }
h4, h5, h6 { font-size: 9pt; margin: 2mm 0 1mm 0; bookmark-level: none; break-after: avoid; }
.part-start { break-before: page; }
.celltag_part h2 { bookmark-level: 1; }
p, li { margin: 0.8mm 0; orphans: 2; widows: 2; }
table { border-collapse: collapse; max-width: 100%; font-size: 7pt; margin: 1mm 0 2mm 0; }
th, td { padding: 0.5mm 1.5mm; border-bottom: 0.3pt solid #ccc; vertical-align: top; overflow-wrap: break-word; }
thead th { border-bottom: 0.8pt solid #444; }
table.compact, table.answers { break-inside: avoid; }
table.table1 { font-size: 7pt !important; }
tr { break-inside: avoid; }
table.table1 tr.block { break-after: avoid; page-break-after: avoid; }  /* a block's title stays with its rows */
table.table1 th, table.table1 td { padding: 0.5mm 1.2mm !important; }
table.full { width: 100%; font-size: 6.5pt; }
section.findings { font-size: 7.2pt; line-height: 1.2; }
section.findings ul { margin: 0.5mm 0; } section.findings h4 { margin: 1.5mm 0 0.5mm 0; }
section.findings h2 { margin-top: 0; }
table.answers { width: 100%; font-size: 6.8pt; line-height: 1.15; }
table.answers td { padding: 0.3mm 1.2mm; }
table.answers td.q { width: 25%; } table.answers td:nth-child(2) { width: 47%; }
table.answers td:nth-child(3) { width: 7%; } table.answers td:nth-child(4) { width: 21%; }
figure { break-inside: avoid; margin: 1mm 0 2mm 0; }
figure img { display: block; max-width: 100%; }
figcaption, .figure-key, .table-note, p.more { font-size: 7.5pt; color: #333; }
.question-head { break-inside: avoid; }
details > summary { list-style: none; }
details > summary::marker { content: ""; }
nav.toc { columns: 3; column-gap: 8mm; font-size: 7pt; line-height: 1.2; }
nav.toc ul { margin: 0; padding-left: 4mm; }
nav.toc li { break-inside: avoid; }
nav.toc a { color: black; text-decoration: none; }
nav.toc a::after { content: leader('.') " " target-counter(attr(href), page); }
"""
# Shared by the HTML and the PDF: badges, table alignment, the collapsible appendix.
SCREEN_CSS = """
<style>
.badge { padding: 0 4px; border-radius: 3px; color: white; white-space: nowrap; font-size: 90%; }
.badge.decisive { background: #1b5e20; } .badge.tie { background: #0d47a1; }
.badge.insufficient { background: #8d6e00; } .badge.na { background: #555; }
.agree-agrees { color: #1b5e20; font-weight: bold; } .agree-differs { color: #b71c1c; font-weight: bold; }
.agree-undecided { color: #555; font-weight: bold; }
table.compact, table.full, table.answers { border-collapse: collapse; margin: 4px 0 8px 0; }
table.compact th, table.compact td, table.full th, table.full td, table.answers th, table.answers td {
  padding: 2px 6px; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right !important; } td.text, th.text { text-align: left !important; }
td.num { white-space: nowrap; } th { vertical-align: bottom; }
table.answers td.q { width: 26%; } table.answers td:nth-child(3) { white-space: nowrap; }
table.answers td:nth-child(4) { width: 22%; }
.figure-key { font-size: 85%; } figcaption { font-size: 90%; margin-top: 2px; }
details.appendix-question > summary { cursor: pointer; } details.appendix-question > summary h3 { display: inline; }
nav.toc ul { list-style: none; }
</style>
"""


def render(*, study: str, out: str | None = None, compare_with: str | None = "outputs/reference") -> dict:
    """Execute the report notebook for `study` and write report.ipynb, .html and .pdf, and the
    PDF's pages as images with their layout checks (``pages/``)."""
    import papermill as pm

    study_dir = resolve_path(f"outputs/{study}")
    report_dir = Path(out) if out else study_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    executed = report_dir / "report.ipynb"
    pm.execute_notebook(
        str(repo_root() / REPORT_NOTEBOOK),
        str(executed),
        cwd=str(repo_root() / "report"),
        parameters={
            "study": study,
            "study_dir": str(study_dir),
            "report_dir": str(report_dir),
            "compare_with": compare_with or "",
        },
        progress_bar=False,
    )
    html_path = report_dir / "report.html"
    html_path.write_text(notebook_html(executed), encoding="utf-8")
    pdf_path = report_dir / "report.pdf"
    document = render_document(html_path)
    document.write_pdf(str(pdf_path))
    layout = check_report(html_path, pdf_path, report_dir / "pages", document=document)
    return {
        "notebook": executed,
        "html": html_path,
        "pdf": pdf_path,
        "table1": report_dir / "table1.csv",
        "pages": report_dir / "pages",
        "layout": layout,
    }


def notebook_html(notebook: Path) -> str:
    """The executed notebook as HTML (code hidden), with its table of contents filled in."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    # The print rules go in the document itself, after the template's, so that they win.
    body = body.replace("</head>", f"{SCREEN_CSS}<style>@media print {{{PDF_CSS}}}</style></head>", 1)
    return fill_contents(mark_parts(body))


def mark_parts(body: str) -> str:
    """Cells tagged ``part`` start a new printed page: the class goes on the cell's outermost
    element, where a forced page break takes effect."""
    out, pos = [], 0
    for match in re.finditer(r"celltag_part\b", body):
        cell = body.rfind('<div class="jp-Cell ', 0, match.start())
        if cell < pos:
            continue
        insert = cell + len('<div class="')
        out.append(body[pos:insert] + "part-start ")
        pos = insert
    out.append(body[pos:])
    return "".join(out)


TOC_PLACEHOLDER = '<nav class="toc" id="toc"></nav>'
_HEADING = re.compile(r'<h([23])\b[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', re.S)


def fill_contents(body: str) -> str:
    """Fill the contents placeholder with links to every section (h2) and subsection (h3) after it."""
    at = body.find(TOC_PLACEHOLDER)
    if at < 0:
        return body
    entries = []
    for level, anchor, inner in _HEADING.findall(body):
        title = html.unescape(re.sub(r"<[^>]+>", "", inner)).replace("¶", "").strip()
        if anchor in ("toc", "Contents") or title == "Contents":
            continue
        entries.append((int(level), anchor, title))
    items, open_sub = ["<ul>"], False
    for level, anchor, title in entries:
        if level == 3 and not open_sub:
            items.append("<ul>")
            open_sub = True
        elif level == 2 and open_sub:
            items.append("</ul></li>")
            open_sub = False
        elif level == 2 and len(items) > 1:
            items.append("</li>")
        items.append(f'<li><a href="#{html.escape(anchor)}">{html.escape(title)}</a>' + ("</li>" if level == 3 else ""))
    items.append("</ul></li></ul>" if open_sub else "</li></ul>")
    return body.replace(TOC_PLACEHOLDER, f'<nav class="toc" id="toc">{"".join(items)}</nav>', 1)


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    render_document(html_path).write_pdf(str(pdf_path))
    return pdf_path


def study_config_markdown(*, study: str):
    from IPython.display import Markdown

    try:
        text = study_path(study).read_text()
    except ConfigError:  # an imported study (reference) has no study file
        return Markdown(f"Study `{study}` has no study file: its records were imported.")
    return Markdown(f"Study file `params/studies/{study}.yaml`:\n\n```yaml\n{text}\n```")


def table1_section(*, records, report_dir: str):
    """Write table1.csv (one row per evaluated model) and show Table 1 with the best per block in bold."""
    from IPython.display import HTML

    table = table1(records)
    resolve_path(report_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(resolve_path(report_dir) / "table1.csv", index=False)
    return HTML(table1_html(table))


class Answers:
    """The nine answers (``questions.answer_questions``)."""

    def __init__(self, answers: list[dict]):
        self.answers = answers


def questions_section(*, records, report_dir: str, alpha: float = 0.05, min_n: int = 20, n_boot: int = 2000) -> Answers:
    """Answer the nine questions and write them to ``<report_dir>/questions.json``."""
    answers = answer_questions(records, alpha=alpha, min_n=min_n, n_boot=n_boot)
    write_questions(answers, resolve_path(report_dir) / "questions.json")
    return Answers(answers)


def report_view(*, study: str, records, answers: Answers):
    """The report's sections for the notebook to show: findings, questions, figures, appendix."""
    return ReportView(records=records, answers=answers.answers, study=study)


def comparison_section(
    *, view, answers: Answers, compare_with: str, alpha: float = 0.05, min_n: int = 20, n_boot: int = 2000
):
    """This study's verdicts next to another study's (by default the imported reference study)."""
    if not compare_with:
        return view.comparison_html(
            None,
            "No other study is compared here: this report's own answers are set against "
            "the reference study's in the findings and in each question.",
        )
    other = resolve_path(compare_with)
    if not (other / "runs").is_dir():
        return view.comparison_html(
            None,
            f"No records at {other}: run `make reference-report` (it imports the "
            "reference study) or give another study's outputs.",
        )
    theirs = answer_questions(load_study(other), alpha=alpha, min_n=min_n, n_boot=n_boot)
    return view.comparison_html(compare_protocols(answers.answers, theirs, labels=("this study", other.name)))


def main(argv: list[str] | None = None) -> int:
    skip_iri_format_checker()  # before papermill and nbconvert import nbformat
    parser = argparse.ArgumentParser(
        prog="python -m peftlab.report", description="Render a study's report (HTML, PDF, table1.csv)."
    )
    parser.add_argument(
        "study",
        help="study name: outputs/<study>/ holds its records; 'reference' imports the "
        "reference study's published results first",
    )
    parser.add_argument(
        "--compare-with",
        default="outputs/reference",
        help="another study's outputs to compare the nine answers with ('' for none)",
    )
    args = parser.parse_args(argv)
    if args.study == "reference" or args.compare_with.rstrip("/").endswith("outputs/reference"):
        import_reference()
    compare = args.compare_with if args.study != "reference" else ""
    paths = render(study=args.study, compare_with=compare)
    layout = paths.pop("layout")
    write_json(
        Path(paths["html"]).parent / "report-files.json",
        {
            "kind": "report",
            "status": "ok",
            "meta": {"versions": package_versions()},
            **{k: str(v) for k, v in paths.items()},
        },
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(
        f"pages: {layout['pages']}; more than half empty (not a part's last): {layout['half_empty'] or 'none'}; "
        f"tables wider than the page: {len(layout['wide_tables'])}; figure problems: "
        f"{'; '.join(layout['figures']['problems']) or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
