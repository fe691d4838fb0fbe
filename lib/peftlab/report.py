"""The report: run report/report.ipynb over a study's records, render HTML and PDF.

HTML comes from nbconvert (code cells hidden, figures embedded), PDF from WeasyPrint on
that HTML: neither needs a browser download nor a TeX installation.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import pandas as pd

from .config import repo_root, resolve_path
from .results import package_versions, write_json

REPORT_NOTEBOOK = "report/report.ipynb"
PDF_CSS = """
@page { size: A4 landscape; margin: 12mm; }
body { font-size: 9pt; }
table { font-size: 7pt; border-collapse: collapse; }
table.figures { width: 100%; table-layout: fixed; }
table.figures td, table.figures th { overflow-wrap: anywhere; padding: 1px 3px; }
img { max-width: 100%; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
"""


def render(*, study: str, out: str | None = None, compare_with: str | None = "outputs/reference") -> dict:
    """Execute the report notebook for `study` and write report.ipynb, .html and .pdf."""
    import papermill as pm

    study_dir = resolve_path(f"outputs/{study}")
    report_dir = Path(out) if out else study_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    executed = report_dir / "report.ipynb"
    pm.execute_notebook(str(repo_root() / REPORT_NOTEBOOK), str(executed), cwd=str(repo_root() / "report"),
                        parameters={"study": study, "study_dir": str(study_dir), "report_dir": str(report_dir),
                                    "compare_with": compare_with or ""}, progress_bar=False)
    html_path = report_dir / "report.html"
    html_path.write_text(notebook_html(executed), encoding="utf-8")
    pdf_path = report_dir / "report.pdf"
    html_to_pdf(html_path, pdf_path)
    return {"notebook": executed, "html": html_path, "pdf": pdf_path, "table1": report_dir / "table1.csv"}


def notebook_html(notebook: Path) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    return body


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    import weasyprint

    weasyprint.HTML(filename=str(html_path)).write_pdf(str(pdf_path), stylesheets=[weasyprint.CSS(string=PDF_CSS)])
    return pdf_path


# --- small HTML pieces the notebook displays ------------------------------------------


STATUS_STYLE = {"decisive": "#1b5e20", "tie": "#0d47a1", "insufficient data": "#8d6e00", "not answerable": "#555"}
AGREEMENT = {True: "agrees with the reference study", False: "differs from the reference study",
             None: "agreement undecided"}
COMPARISON_VIEW = {"a": "A", "b": "B", "task": "task", "metric": "measure", "n": "n", "diff": "A − B",
                   "ci_low": "adj. CI low", "ci_high": "adj. CI high", "p_adjusted": "p (Holm)", "mde": "MDE",
                   "verdict": "verdict"}


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(float_format=lambda x: f"{x:.4g}", na_rep="–", index=False, classes="figures")


def questions_html(answers: list[dict]) -> str:
    """The nine questions: answer, status, the study's answer and agreement, then the figures
    and every comparison behind the answer (Holm-adjusted within the question)."""
    parts = []
    for a in answers:
        colour = STATUS_STYLE.get(a["status"], "#555")
        figures = a.get("figures")
        comparisons = a.get("comparisons")
        table = _table(figures) if isinstance(figures, pd.DataFrame) and not figures.empty else ""
        if isinstance(comparisons, pd.DataFrame) and not comparisons.empty:
            view = comparisons[list(COMPARISON_VIEW)].rename(columns=COMPARISON_VIEW)
            size = int(comparisons["family_size"].iloc[0])
            table += (f"<p><i>Comparisons ({len(comparisons)}; Holm family of {size} tested): A − B in the "
                      "measure's unit, interval at the adjusted level; MDE = smallest difference detectable with 80 % "
                      "power.</i></p>" + _table(view))
        parts.append(
            f"<h3>{html.escape(a['id'])}. {html.escape(a['question'])}</h3>"
            f'<p><b style="color:{colour}">{html.escape(a["status"])}</b> — {html.escape(a["answer"])}</p>'
            f"<p><b>Reference study:</b> {html.escape(a['reference_answer'])} — "
            f"<i>{AGREEMENT[a['agrees_with_reference']]}</i></p>{table}")
    return "\n".join(parts)


def provenance(*, study_dir: str) -> pd.DataFrame:
    """Versions, commits and devices of every record, and of the report itself."""
    rows = [{"what": "report", "versions": json.dumps(package_versions()), "commit": None, "dirty": None,
             "device": None}]
    for path in sorted(Path(study_dir).glob("runs/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        meta = record.get("meta") or {}
        git = meta.get("git") or {}
        rows.append({"what": f"{path.parent.name}/{path.name}", "versions": json.dumps(meta.get("versions")),
                     "commit": git.get("commit"), "dirty": git.get("dirty"), "device": meta.get("device")})
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(subset=["versions", "commit", "dirty", "device"], keep="first")


def study_config_markdown(*, study: str):
    from IPython.display import Markdown

    from .config import ConfigError
    from .study import study_path

    try:
        text = study_path(study).read_text()
    except ConfigError:  # an imported study (reference) has no study file
        return Markdown(f"Study `{study}` has no study file: its records were imported.")
    return Markdown(f"Study file `params/studies/{study}.yaml`:\n\n```yaml\n{text}\n```")


def study_header(*, study: str, records):
    from IPython.display import Markdown

    evals = records.evals
    failed = int((evals["status"] != "ok").sum()) + int((records.trains["status"] != "ok").sum()) \
        if not records.trains.empty else int((evals["status"] != "ok").sum())
    protocols = ", ".join(sorted(set(evals["protocol"].dropna())))
    devices = ", ".join(sorted(set(evals["memory_kind"].dropna()))) if "memory_kind" in evals else "?"
    return Markdown(
        f"**Study:** `{study}` · **protocol:** {protocols} · **models evaluated:** {evals['model'].nunique()} · "
        f"**trained runs:** {len(records.trains)} · **evaluations:** {len(evals)} · **failed records:** {failed} · "
        f"**memory measured as:** {devices}")


def table1_section(*, records, report_dir: str):
    """Write table1.csv (one row per evaluated model) and show Table 1 with the best per block in bold."""
    from IPython.display import HTML

    from .analysis import table1, table1_html

    table = table1(records)
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(report_dir) / "table1.csv", index=False)
    return HTML(table1_html(table))


class Answers:
    """The nine answers, and their HTML for the notebook to show."""

    def __init__(self, answers: list[dict]):
        self.answers = answers
        self.html = _html(questions_html(answers))


def _html(text: str):
    from IPython.display import HTML

    return HTML(text)


def questions_section(*, records, report_dir: str, alpha: float = 0.05, min_n: int = 20, n_boot: int = 2000
                      ) -> Answers:
    """Answer the nine questions and write them to ``<report_dir>/questions.json``."""
    from .questions import answer_questions, write_questions

    answers = answer_questions(records, alpha=alpha, min_n=min_n, n_boot=n_boot)
    write_questions(answers, Path(report_dir) / "questions.json")
    return Answers(answers)


def answers_overview(*, answers: Answers) -> pd.DataFrame:
    """The nine answers in one table: question, status, agreement with the reference study."""
    from .questions import answers_table

    return answers_table(answers.answers)


def how_computed(*, alpha: float = 0.05, min_n: int = 20, n_boot: int = 2000) -> pd.DataFrame:
    """How each answer is computed: measure, resampling unit, interval, correction, minimum n."""
    from .questions import how_table

    return how_table(alpha=alpha, min_n=min_n, n_boot=n_boot)


def pareto_table(*, answers: Answers) -> pd.DataFrame:
    """Per task, each configuration's place relative to the Pareto front (Q9)."""
    q9 = next(a for a in answers.answers if a["id"] == "Q9")
    return q9["figures"]


def comparison_section(*, answers: Answers, compare_with: str, alpha: float = 0.05, min_n: int = 20,
                       n_boot: int = 2000):
    from IPython.display import Markdown

    from .questions import answer_questions, compare_protocols
    from .study_records import load_study

    if not compare_with:
        return Markdown("No comparison study given.")
    other = resolve_path(compare_with)
    if not (other / "runs").is_dir():
        return Markdown(f"No records at `{other}`: run `make reference-report` (imports the reference study) "
                        "or give another study's outputs.")
    theirs = answer_questions(load_study(other), alpha=alpha, min_n=min_n, n_boot=n_boot)
    return compare_protocols(answers.answers, theirs, labels=("this study", "compared"))


def failures_table(*, records) -> pd.DataFrame:
    frames = []
    for frame, kind in ((records.trains, "train"), (records.evals, "eval")):
        if not frame.empty:
            bad = frame[frame["status"] != "ok"]
            cols = [c for c in ("model", "task", "status", "error") if c in bad.columns]
            frames.append(bad[cols].assign(kind=kind))
    failed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return failed if not failed.empty else pd.DataFrame({"status": ["every run and evaluation finished ok"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peftlab.report",
                                     description="Render a study's report (HTML, PDF, table1.csv).")
    parser.add_argument("study", help="study name: outputs/<study>/ holds its records; 'reference' imports the "
                                      "reference study's published results first")
    parser.add_argument("--compare-with", default="outputs/reference",
                        help="another study's outputs to compare the nine answers with ('' for none)")
    args = parser.parse_args(argv)
    if args.study == "reference" or args.compare_with.rstrip("/").endswith("outputs/reference"):
        from .reference import import_reference

        import_reference()
    compare = args.compare_with if args.study != "reference" else ""
    paths = render(study=args.study, compare_with=compare)
    write_json(Path(paths["html"]).parent / "report-files.json",
               {"kind": "report", "status": "ok", "meta": {"versions": package_versions()},
                **{k: str(v) for k, v in paths.items()}})
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
