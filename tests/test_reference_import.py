"""Importing the reference study's raw results as project records (values checked against the raw files)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from peftlab.analysis.reference import SOURCE_COMMIT, import_reference, parse_name
from peftlab.analysis.study_records import TABLE1_COLUMNS, load_study
from peftlab.analysis.table1 import table1, table1_best, table1_html, task_columns
from peftlab.core.files import ResultError, read_record, write_json
from peftlab.core.paths import resolve_path
from peftlab.tasks.registry import TASKS

RAW = resolve_path("data/reference-results")
TASK_KEYS = {
    "arc": "test-ai2_arc.parquet",
    "openmath": "test-OpenMathInstruct-2.parquet",
    "squad_v2": "test-squad_v2.parquet",
}


def raw(name: str) -> dict:
    return json.loads((RAW / name).read_text())


def raw_latency(name: str, task: str) -> list[float]:
    return raw(name)["datasets"][TASK_KEYS[task]]["latency_seconds"]["per_prompt"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return out, import_reference(out=out)


@pytest.fixture(scope="module")
def table(imported):
    out, _ = imported
    return table1(load_study(out))


def row(table: pd.DataFrame, block: str, method: str, rank=None, base="Qwen3-0.6B") -> pd.Series:
    hit = table[(table["block"] == block) & (table["method"] == method) & (table["base"] == base)]
    hit = hit[hit["rank"].isna()] if rank is None else hit[hit["rank"] == rank]
    assert len(hit) == 1
    return hit.iloc[0]


def test_parse_name_maps_files_to_project_folders():
    assert parse_name("Qwen3-0.6B-openmath_SFT_DoRa256_NoQuant.json")["folder"] == "openmath-dora-r256-s0"
    full = parse_name("Qwen3-0.6B-squad_SFT_NoPeft_NoQuant.json")
    assert full["folder"] == "squad_v2-full-s0" and full["method"] == "full" and full["rank"] is None
    vera = parse_name("Qwen3-0.6B-openmath_SFT_VeRa1024_NoQuant.json")
    assert (vera["method"], vera["rank"], vera["train_task"]) == ("vera", 1024, "openmath")
    base = parse_name("Qwen3-1.7B_base.json")
    assert base["folder"] == "base-qwen3-1.7b" and base["base_model"] == "Qwen/Qwen3-1.7B" and not base["trained"]
    with pytest.raises(ResultError, match="unrecognised name"):
        parse_name("Qwen3-0.6B-arc_SFT_LoRa8_Quant.json")


def test_every_file_becomes_valid_records(imported):
    out, written = imported
    folders = sorted(p.name for p in (out / "runs").iterdir())
    assert len(folders) == 16 and "base-qwen3-0.6b" in folders and "openmath-dora-r256-s0" in folders
    assert len(written) == 16 * 6 + 14  # eval + items per task, train.json for the 14 fine-tuned models
    for path in written:
        assert path.is_file()
        if path.suffix == ".json":
            record = read_record(path)
            assert record["status"] == "ok" and record["imported_from"].endswith(".json")
            assert record["meta"]["source"]["repository"] == "https://github.com/albrp97/LLM-Training"
    train = read_record(out / "runs/squad_v2-lora-r512-s0/train.json")
    assert train["kind"] == "train" and train["memory"] is None
    expected = {
        "method": "lora",
        "rank": 512,
        "train_task": "squad_v2",
        "protocol": "reference",
        "base_model": "Qwen/Qwen3-0.6B",
        "learning_rate": 1e-5,
        "alpha": 16,
    }
    assert {k: train["config"][k] for k in expected} == expected
    assert not (out / "runs/base-qwen3-1.7b/train.json").exists()


def test_eval_record_holds_the_raw_numbers(imported):
    out, _ = imported
    name = "Qwen3-0.6B_base.json"
    record = read_record(out / "runs/base-qwen3-0.6b/eval-squad_v2.json")
    squad = raw(name)["datasets"][TASK_KEYS["squad_v2"]]
    assert record["protocol"] == "reference" and record["metrics"]["corrected"] is None
    assert record["metrics"]["reference"]["format_success_rate"] == squad["format_success_rate"]
    for key in ("EM", "F1", "HasAns_EM", "HasAns_F1", "NoAns_Accuracy", "AvNA_Accuracy"):
        assert record["metrics"]["reference"][key] == squad["metrics"][key]
    assert record["metrics"]["headline"] == {
        "name": "F1",
        "value": 10.07,
        "higher_is_better": True,
        "scoring": "reference",
    }
    model = record["model"]
    assert (model["base_model"], model["method"], model["trained"], model["dtype"]) == (
        "Qwen/Qwen3-0.6B",
        "base",
        False,
        None,
    )
    assert "dtype_note" in model
    memory = record["memory"]
    assert (memory["device"], memory["peak_reserved_gb"], memory["peak_allocated_gb"]) == ("cuda", 1.486, 1.329)
    assert "evaluation" in record["memory"]["label"]

    math_record = read_record(out / "runs/openmath-full-s0/eval-openmath.json")
    math_raw = raw("Qwen3-0.6B-openmath_SFT_NoPeft_NoQuant.json")["datasets"][TASK_KEYS["openmath"]]
    assert math_record["metrics"]["reference"]["avg_abs_diff"] == math_raw["metrics"]["avg_abs_diff"]
    assert math_record["metrics"]["headline"]["higher_is_better"] is False
    assert math_record["parse_rate"] == pytest.approx(math_raw["format_success_rate"] / 100)
    assert math_record["meta"]["source"]["commit"] != SOURCE_COMMIT  # the earlier version of this one file
    seconds = np.array(math_raw["latency_seconds"]["per_prompt"])
    tokens = np.array(math_raw["tokens_generated"]["per_prompt"])
    latency = math_record["latency"]
    assert latency["n"] == 200 and latency["batch_size"] == 1
    held, held_tokens = math_raw["latency_seconds"], math_raw["tokens_generated"]
    assert latency["mean_s"] == held["mean"] == 0.0466  # as published; the per-prompt values give 0.046618
    assert (latency["median_s"], latency["std_s"], latency["sum_s"]) == (held["median"], held["std"], held["sum"])
    assert (latency["tokens_mean"], latency["tokens_median"], latency["tokens_sum"]) == (
        held_tokens["mean"],
        held_tokens["median"],
        held_tokens["sum"],
    )
    assert latency["p90_s"] == pytest.approx(np.percentile(seconds, 90))  # not in the file: computed
    assert latency["s_per_token"] == pytest.approx(held["sum"] / held_tokens["sum"])
    assert latency["hit_max_new_tokens"] == pytest.approx(np.mean(tokens >= 1000))
    slope, overhead = np.polyfit(tokens, seconds, 1)
    assert latency["s_per_token_fit"] == pytest.approx(slope) and latency["overhead_s_fit"] == pytest.approx(overhead)
    assert latency["passes"] == 1 and latency["pass_means_s"] == [held["mean"]] and latency["timing_noise_rel"] is None


def test_published_latency_is_taken_as_the_file_holds_it(imported):
    """SQuAD-trained LoRA r256 on ARC: the file (and the published table) say 0.2933; the mean
    of its 4-decimal per-prompt values is 0.29325 (0.2932 when rounded)."""
    out, _ = imported
    name = "Qwen3-0.6B-squad_SFT_LoRa256_NoQuant.json"
    record = read_record(out / "runs/squad_v2-lora-r256-s0/eval-arc.json")
    assert record["latency"]["mean_s"] == 0.2933
    assert round(float(np.mean(raw_latency(name, "arc"))), 4) == 0.2932
    for file in sorted(RAW.glob("*.json")):
        folder = parse_name(file.name)["folder"]
        for task, key in TASK_KEYS.items():
            dataset = raw(file.name)["datasets"][key]
            latency = read_record(out / "runs" / folder / f"eval-{task}.json")["latency"]
            for ours, theirs in (("mean_s", "mean"), ("median_s", "median"), ("std_s", "std"), ("sum_s", "sum")):
                assert latency[ours] == dataset["latency_seconds"][theirs], (file.name, task, ours)
            for ours, theirs in (("tokens_mean", "mean"), ("tokens_median", "median"), ("tokens_sum", "sum")):
                assert latency[ours] == dataset["tokens_generated"][theirs], (file.name, task, ours)


def test_counts_are_imported_and_match_the_published_percentages(imported):
    out, _ = imported
    metrics = {"arc": "arc_accuracy", "openmath": "openmath_accuracy", "squad_v2": "squad_em"}
    for file in sorted(RAW.glob("*.json")):
        folder = parse_name(file.name)["folder"]
        for task, key in TASK_KEYS.items():
            dataset = raw(file.name)["datasets"][key]
            record = read_record(out / "runs" / folder / f"eval-{task}.json")
            counts = record["counts"]
            assert counts == {
                "correct": dataset["correct"],
                "incorrect": dataset["incorrect"],
                "n": dataset["total_samples"],
                "metric": metrics[task],
            }
            published = dataset["metrics"]["EM"] if task == "squad_v2" else dataset["accuracy"]
            assert 100 * counts["correct"] / counts["n"] == pytest.approx(published, abs=0.005)
            assert record["metrics"]["reference"]["format_success_rate"] == dataset["format_success_rate"]
            if task != "squad_v2":
                assert record["metrics"]["reference"]["accuracy"] == dataset["accuracy"]


def test_counts_that_contradict_the_published_accuracy_are_an_error_naming_the_file(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    data = raw("Qwen3-0.6B_base.json")
    squad = data["datasets"][TASK_KEYS["squad_v2"]]
    squad["correct"], squad["incorrect"] = squad["correct"] + 1, squad["incorrect"] - 1
    (source / "Qwen3-0.6B_base.json").write_text(json.dumps(data))
    with pytest.raises(ResultError, match=r"Qwen3-0\.6B_base\.json.*test-squad_v2.*EM"):
        import_reference(source=source, out=tmp_path / "out")


def test_imported_squad_items_carry_passage_clusters(imported):
    out, _ = imported
    subset = pd.read_parquet(resolve_path("data/reference-study/test-squad_v2.parquet"))
    items = pd.read_parquet(out / "runs/base-qwen3-0.6b/items-squad_v2.parquet")
    assert len(items) == len(subset) == 200
    assert subset["context"].iloc[0] == subset["context"].iloc[9]  # one passage, two questions
    assert items["cluster"].iloc[0] == items["cluster"].iloc[9]
    assert items["cluster"].iloc[0] != items["cluster"].iloc[1]
    assert items["cluster"].nunique() == subset["context"].nunique()
    arc = pd.read_parquet(out / "runs/base-qwen3-0.6b/items-arc.parquet")
    assert arc["cluster"].tolist() == [str(i) for i in arc["id"]]
    assert np.array_equal(arc["latency_s_pass1"], arc["latency_s"])


def test_items_carry_per_item_latency_and_nothing_invented(imported):
    out, _ = imported
    items = pd.read_parquet(out / "runs/squad_v2-dora-r256-s0/items-arc.parquet")
    per_prompt = raw_latency("Qwen3-0.6B-squad_SFT_DoRa256_NoQuant.json", "arc")
    assert len(items) == 200 and items["id"].tolist() == list(range(200))
    assert np.allclose(items["latency_s"], per_prompt) and np.allclose(items["seconds"], per_prompt)
    assert items["latency_tokens"].notna().all() and (items["tokens_generated"] == items["latency_tokens"]).all()
    assert items["score"].isna().all() and items["ref_score"].isna().all()
    assert "reply" not in items.columns and "prompt" not in items.columns


def test_rerun_is_idempotent_and_never_overwrites_foreign_records(imported, tmp_path):
    out, written = imported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    again = import_reference(out=copy)
    after = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert [p.relative_to(copy) for p in again] == [p.relative_to(out) for p in written]
    assert before.keys() == after.keys()
    assert all(before[k] == after[k] for k in before if k.suffix == ".json")
    assert not list(copy.rglob("*.tmp"))

    foreign = copy / "runs/base-qwen3-0.6b/eval-arc.json"
    write_json(foreign, {"kind": "eval", "status": "ok", "task": "arc", "meta": {}})
    with pytest.raises(ResultError, match="not imported"):
        import_reference(out=copy)


def test_malformed_raw_file_is_an_error_naming_it(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    data = raw("Qwen3-0.6B_base.json")
    del data["datasets"]["test-ai2_arc.parquet"]["metrics"]
    (source / "Qwen3-0.6B_base.json").write_text(json.dumps(data))
    with pytest.raises(ResultError, match=r"Qwen3-0\.6B_base\.json.*metrics"):
        import_reference(source=source, out=tmp_path / "out")
    with pytest.raises(ResultError, match="no reference result files"):
        import_reference(source=tmp_path / "empty", out=tmp_path / "out")


def test_table1_has_all_sixteen_models_with_raw_values(table):
    others = {c for task in TASKS if task not in ("arc", "openmath", "squad_v2") for c in task_columns(task)}
    assert list(table.columns) == [*(c for c in TABLE1_COLUMNS if c not in others), "status"]
    assert len(table) == 16 and (table["status"] == "ok").all()
    assert table["block"].tolist() == ["Trained on OpenMath"] * 7 + ["Trained on SQuAD v2"] * 7 + ["Base models"] * 2
    trained = table[table["block"] == "Trained on OpenMath"]
    assert trained["method"].tolist() == ["Full FT", "LoRA", "LoRA", "DoRA", "DoRA", "VeRA", "VeRA"]
    assert trained["rank"].tolist()[1:] == [256, 512, 256, 512, 512, 1024] and pd.isna(trained["rank"].iloc[0])
    assert table["base"].tolist()[-2:] == ["Qwen3-0.6B", "Qwen3-1.7B"]
    assert table[["train_res_gb", "train_all_gb"]].isna().all().all()  # not published

    base = row(table, "Base models", "—")
    assert base["arc_f1"] == 0.4932 and base["openmath_absdiff"] == 24834.379745 and base["squad_f1"] == 10.07
    assert base["eval_res_gb"] == 1.486 and base["eval_all_gb"] == 1.329
    assert base["arc_latency_s"] == raw("Qwen3-0.6B_base.json")["datasets"][TASK_KEYS["arc"]]["latency_seconds"]["mean"]

    dora = row(table, "Trained on OpenMath", "DoRA", 256)
    name = "Qwen3-0.6B-openmath_SFT_DoRa256_NoQuant.json"
    datasets = raw(name)["datasets"]
    assert dora["arc_f1"] == datasets[TASK_KEYS["arc"]]["metrics"]["macro_f1"] == 0.5056
    assert dora["openmath_absdiff"] == datasets[TASK_KEYS["openmath"]]["metrics"]["avg_abs_diff"]
    assert dora["squad_f1"] == datasets[TASK_KEYS["squad_v2"]]["metrics"]["F1"]
    assert (dora["eval_res_gb"], dora["eval_all_gb"]) == (2.754, 2.523)
    for task, column in (("arc", "arc_latency_s"), ("openmath", "openmath_latency_s"), ("squad_v2", "squad_latency_s")):
        assert dora[column] == datasets[TASK_KEYS[task]]["latency_seconds"]["mean"]

    full = row(table, "Trained on SQuAD v2", "Full FT")
    assert full["squad_f1"] == 27.95 and full["eval_res_gb"] == 1.428
    big = row(table, "Base models", "—", base="Qwen3-1.7B")
    assert big["openmath_absdiff"] == 742.251114 and big["eval_res_gb"] == 3.871


def test_table1_best_and_html(table):
    best = table1_best(table)
    assert best.shape == table.shape and not best[["block", "base", "method", "rank"]].any().any()
    openmath_block = table["block"] == "Trained on OpenMath"
    winner = table.loc[best["openmath_absdiff"] & openmath_block]
    assert winner["method"].tolist() == ["Full FT"]
    assert table.loc[best["arc_f1"] & openmath_block, "method"].tolist() == ["VeRA", "VeRA"]  # tied
    base_block = table["block"] == "Base models"
    assert table.loc[best["squad_f1"] & base_block, "base"].tolist() == ["Qwen3-1.7B"]
    assert table.loc[best["eval_res_gb"] & base_block, "base"].tolist() == ["Qwen3-0.6B"]
    assert not best["train_res_gb"].any()
    page = table1_html(table, caption="Table 1")
    assert page.count('class="block"') == 3 and "Trained on SQuAD v2" in page
    assert "<b>16,540.00</b>" in page and "<b>1.428</b>" in page and "<b>0.7986</b>" in page
    assert "Train Res." in page and "<script" not in page


def test_every_cited_docs_page_exists():
    """The protocols are documented in the repository: every `docs/....md` that the code or
    the parameters cite resolves, and no citation points outside the repository."""
    root = resolve_path(".")
    cited: dict[str, list[str]] = {}
    for folder in ("lib", "params"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".yml") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            assert "STUDY.md" not in text, f"{path.relative_to(root)} cites STUDY.md, which is not in the repository"
            for match in re.findall(r"docs/[\w./-]+?\.md", text):
                cited.setdefault(match, []).append(str(path.relative_to(root)))
    assert "docs/protocols.md" in cited
    missing = {page: files for page, files in cited.items() if not (root / page).is_file()}
    assert not missing, f"cited docs pages that do not exist: {missing}"
