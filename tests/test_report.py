"""The report's presentation: findings first, short question sections, formatted tables, checks on pages."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from handmade import mask, write_model, write_squad_dora_r8, write_squad_study_core
from peftlab.analysis.questions import answer_questions
from peftlab.analysis.study_records import load_study
from peftlab.report.build import fill_contents
from peftlab.report.cells import MAX_ROWS, number, short_labels
from peftlab.report.pages import figure_captions, half_empty_pages, page_fill
from peftlab.report.prose import comparison_sentence, headline
from peftlab.report.view import ReportView

RAW = re.compile(r"<NA>|\bnan\b|\bNaN\b|\bTrue\b|\bFalse\b|\d\.\d+e[+-]\d|latency_mean_s|eval_res_gb|_gb\b")


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "study"
    write_squad_study_core(out)
    write_model(
        out,
        "squad_v2-lora-r16-s0",
        method="lora",
        rank=16,
        train_task="squad_v2",
        seed=0,
        correct=mask(9),
        latency=0.2,
        tokens=8,
    )
    write_squad_dora_r8(out)
    write_model(out, "openmath-full-s0", method="full", train_task="openmath", seed=0, failed=True)
    records = load_study(out)
    return ReportView(records=records, answers=answer_questions(records, n_boot=200), study="handmade")


def test_numbers_read_as_numbers():
    assert number(float("nan")) == number(None) == number(pd.NA) == "—"
    assert number(16540.0, 1) == "16,540.0" and number(0.0466, 3) == "0.047"
    assert number(-1.5, 1, signed=True) == "−1.5" and number(2.0, 1, signed=True) == "+2.0"


def test_a_comparison_reads_as_a_sentence():
    row = {
        "a": "Qwen3-0.6B LoRA r32 (SQuAD v2)",
        "b": "Qwen3-0.6B Full FT (SQuAD v2)",
        "task": "squad_v2",
        "metric": "squad_f1",
        "n": 200,
        "diff": -12.4,
        "ci_low": -18.9,
        "ci_high": -6.1,
        "verdict": "b better",
        "mde": 5.0,
        "note": None,
    }
    labels = {"Qwen3-0.6B LoRA r32 (SQuAD v2)": "LoRA r32", "Qwen3-0.6B Full FT (SQuAD v2)": "full FT"}
    assert (
        comparison_sentence(row, labels) == "full FT beats LoRA r32 on SQuAD v2 by 12.4 F1 points [6.1, 18.9], n = 200"
    )
    faster = {**row, "metric": "latency_s", "diff": -0.5, "ci_low": -0.7, "ci_high": -0.3, "verdict": "a better"}
    assert comparison_sentence(faster, labels).startswith("LoRA r32 is faster than full FT on SQuAD v2 by 0.500 s")
    tie = {**row, "diff": 0.5, "ci_low": -3.0, "ci_high": 4.0, "verdict": "tie"}
    assert "tie" in comparison_sentence(tie, labels) and "5.0" in comparison_sentence(tie, labels)


def test_labels_drop_a_shared_base():
    configs = pd.DataFrame(
        {
            "config": ["Qwen3-0.6B LoRA r8 (ARC)", "Qwen3-0.6B untuned", "Qwen3-1.7B untuned"],
            "base": ["Qwen3-0.6B", "Qwen3-0.6B", "Qwen3-1.7B"],
            "trained": [True, False, False],
        }
    )
    assert short_labels(configs) == {
        "Qwen3-0.6B LoRA r8 (ARC)": "LoRA r8 (ARC)",
        "Qwen3-0.6B untuned": "Qwen3-0.6B untuned",
        "Qwen3-1.7B untuned": "Qwen3-1.7B untuned",
    }


def test_findings_page_has_the_study_the_nine_answers_and_caveats(view):
    page = str(view.findings_html())
    text = re.sub(r"<[^>]+>", " ", page)
    assert "tiny-Qwen3" in text and "LoRA (r = 8, 16)" in text and "SQuAD v2 (40 items)" in text
    assert len(re.findall(r'<a href="#q\d">', page)) == 9
    assert "Caveats" in text and "One training seed" in text and "failed" in text
    assert not RAW.search(text), RAW.search(text)
    for a in view.answers:
        one = headline(a, view.labels)
        assert one and len(one) <= 240 and "\n" not in one


def test_each_question_is_short_with_one_compact_table_or_figure(view):
    for a in view.answers:
        section = str(view.question_html(a["id"]))
        text = re.sub(r"<[^>]+>", " ", section)
        assert not RAW.search(text), (a["id"], RAW.search(text))
        assert section.count("<table") + section.count("<figure") <= 1
        assert section.count("<tr>") <= MAX_ROWS + 1
        assert f'href="#appendix-{a["id"].lower()}"' in section


def test_figures_are_numbered_in_order_with_captions(view):
    html = "".join(str(view.question_html(q)) for q in ("Q4", "Q9")) + str(view.figure_html("pareto-memory"))
    checked = figure_captions(html)
    assert checked["problems"] == [] and checked["figures"] == 3
    assert [c.split(".")[0] for c in checked["captions"]] == ["Figure 1", "Figure 2", "Figure 3"]
    assert figure_captions('<p><img src="x"></p><figure><img src="y"></figure>')["problems"]


def test_appendix_has_every_question_collapsible(view):
    appendix = str(view.appendix_html())
    assert appendix.count("<details") == 9
    assert not RAW.search(re.sub(r"<[^>]+>", " ", appendix))


def test_contents_link_every_section():
    body = (
        '<h2 id="a">A<a class="anchor-link" href="#a">¶</a></h2><nav class="toc" id="toc"></nav>'
        '<h2 id="b">B</h2><h3 id="b1">B.1</h3><h3 id="b2">B.2</h3><h2 id="c">C</h2>'
    )
    filled = fill_contents(body)
    links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', filled.split("</nav>")[0])
    assert links == [("a", "A"), ("b", "B"), ("b1", "B.1"), ("b2", "B.2"), ("c", "C")]


def test_half_empty_pages_are_allowed_only_at_the_end_of_a_part(tmp_path):
    assert half_empty_pages([0.9, 0.3, 0.9, 0.2], starts=[0, 2]) == []
    assert half_empty_pages([0.9, 0.3, 0.9], starts=[0]) == [2]
    from PIL import Image

    image = np.full((496, 702), 255, dtype=np.uint8)  # A4 landscape at 60 dpi
    image[40:200, 40:300] = 0
    Image.fromarray(image).save(tmp_path / "p.png")
    assert 0.3 < page_fill(tmp_path / "p.png") < 0.45
    Image.fromarray(np.full((496, 702), 255, dtype=np.uint8)).save(tmp_path / "blank.png")
    assert page_fill(tmp_path / "blank.png") == 0.0


def test_report_notebook_is_thin_and_committed_without_outputs():
    import json

    from peftlab.core.paths import repo_root

    notebook = json.loads((repo_root() / "report" / "report.ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            assert not cell["outputs"] and cell["execution_count"] is None
            assert "def " not in source and "class " not in source


def test_the_report_notebook_runs_from_its_own_folder_with_its_own_defaults(smoke_study, tmp_path, monkeypatch):
    """As JupyterLab opens it: cwd report/, no parameters; its default paths are the repository's
    (here the smoke study's project copy) and it reports on outputs/smoke."""
    import papermill as pm

    root, finished = smoke_study
    assert finished.returncode == 0, finished.stderr[-2000:]
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    report = root / "outputs" / "smoke" / "report"
    for name in ("questions.json", "table1.csv"):
        (report / name).unlink(missing_ok=True)
    pm.execute_notebook(
        str(root / "report" / "report.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(root / "report"), progress_bar=False
    )
    assert (report / "questions.json").is_file() and (report / "table1.csv").is_file()
    assert not (root / "report" / "outputs").exists() and not (root.parent / "outputs").exists()
