"""Table 1, the nine questions and the protocol comparison, on the imported reference results
(figures checked against numbers computed by hand from the raw files) and on small hand-made studies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from handmade import N, golds, mask, replies, write_model, write_squad_dora_r8
from peftlab.analysis.comparisons import Analysis, item_values
from peftlab.analysis.questions import (
    QUESTIONS,
    STATUSES,
    answer_questions,
    answers_table,
    compare_protocols,
    question_docs,
)
from peftlab.analysis.reference import import_reference
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1, table1_html
from peftlab.core.files import ResultError
from peftlab.core.paths import resolve_path
from peftlab.core.stats import cluster_bootstrap_diff
from peftlab.tasks import scoring

RAW = resolve_path("data/reference-results")
KEYS = {
    "arc": "test-ai2_arc.parquet",
    "openmath": "test-OpenMathInstruct-2.parquet",
    "squad_v2": "test-squad_v2.parquet",
}
ANSWER_KEYS = {
    "id",
    "question",
    "answer",
    "status",
    "agrees_with_reference",
    "reference_answer",
    "comparisons",
    "figures",
    "how",
}


# --------------------------------------------------------------------------------------
# The imported reference study
# --------------------------------------------------------------------------------------


def raw_models() -> pd.DataFrame:
    """Every (file, task) of the raw reference results, by hand from the JSON: the proportion the
    questions use (ARC and OpenMath accuracy, SQuAD v2 exact match, over all 200 items)."""
    rows = []
    for path in sorted(RAW.glob("*.json")):
        data = json.loads(path.read_text())
        name = path.stem
        base = name.split("-openmath")[0].split("-squad")[0].split("_base")[0]
        if "_base" in name:
            method, rank, train_task = "base", None, None
        else:
            train_task = "openmath" if "-openmath_" in name else "squad_v2"
            tag = name.split("_SFT_")[1].split("_NoQuant")[0]
            method = {"NoPeft": "full", "LoRa": "lora", "DoRa": "dora", "VeRa": "vera"}[tag.rstrip("0123456789")]
            rank = int(tag[len(tag.rstrip("0123456789")) :]) if method != "full" else None
        for task, key in KEYS.items():
            dataset = data["datasets"][key]
            score = dataset["metrics"]["EM"] if task == "squad_v2" else dataset["accuracy"]
            rows.append(
                {
                    "file": path.name,
                    "base": base,
                    "method": method,
                    "rank": rank,
                    "train_task": train_task,
                    "task": task,
                    "score": score,
                    "latency": dataset["latency_seconds"]["mean"],  # as published
                    "memory": data["hardware"]["peak_vram_reserved_gb"],
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    import_reference(out=out)
    records = load_study(out)
    return records, {a["id"]: a for a in answer_questions(records, n_boot=200)}


def test_every_answer_has_the_required_keys(reference):
    _, answers = reference
    assert list(answers) == [q[0] for q in QUESTIONS]
    for qid, answer in answers.items():
        assert ANSWER_KEYS <= set(answer), qid
        assert isinstance(answer["comparisons"], pd.DataFrame) and isinstance(answer["answer"], str)
        assert answer["status"] in STATUSES and answer["agrees_with_reference"] in (True, False, None)
        assert answer["reference_answer"] == next(r for i, _, r in QUESTIONS if i == qid)
    assert set(question_docs()) == set(answers) and all(question_docs().values())
    assert answers_table(list(answers.values()))["id"].tolist() == list(answers)


def test_reference_comparisons_come_from_the_published_counts(reference):
    _, answers = reference
    raw = raw_models().set_index(["file", "task"])
    q8 = answers["Q8"]["comparisons"]
    quality = q8[q8["metric"] != "latency_s"]
    assert set(quality["metric"]) == {"openmath_accuracy", "squad_em"} and (quality["n"] == 200).all()
    assert quality["method"].str.startswith("counts").all()
    full = quality[
        (quality["a"] == "Qwen3-0.6B Full FT (OpenMath)") & (quality["b"] == "Qwen3-0.6B VeRA r1024 (OpenMath)")
    ].iloc[0]
    by_hand = (
        raw.loc[("Qwen3-0.6B-openmath_SFT_NoPeft_NoQuant.json", "openmath"), "score"]
        - raw.loc[("Qwen3-0.6B-openmath_SFT_VeRa1024_NoQuant.json", "openmath"), "score"]
    )
    assert full["diff"] == pytest.approx(by_hand) and full["verdict"] == "b better"
    # the study's "full FT dominates" read AbsDiff over 7 % of the replies; over all items it does not
    assert answers["Q8"]["agrees_with_reference"] is False


def test_q1_balance_by_hand(reference):
    _, answers = reference
    q1 = answers["Q1"]
    raw = raw_models()
    for train_task in ("openmath", "squad_v2"):
        dom = raw[(raw["train_task"] == train_task) & (raw["task"] == train_task)].copy()
        dom["balance"] = (dom["score"] / dom["score"].max() + dom["latency"].min() / dom["latency"]) / 2
        figures = q1["figures"][q1["figures"]["train_task"] == train_task]
        assert sorted(figures["balance"]) == pytest.approx(sorted(dom["balance"]))
        assert figures["train_res_gb"].isna().all()  # not published: efficiency = latency only
    squad = q1["figures"][(q1["figures"]["train_task"] == "squad_v2") & q1["figures"]["best_set"]]
    assert squad["method"].tolist() == ["Full FT"]


def test_q2_best_adapter_by_hand(reference):
    _, answers = reference
    comps = answers["Q2"]["comparisons"]
    raw = raw_models()
    for train_task in ("openmath", "squad_v2"):
        dom = raw[(raw["train_task"] == train_task) & (raw["task"] == train_task)]
        adapters = dom[dom["method"].isin(["lora", "dora", "vera"])]
        full = dom.loc[dom["method"] == "full", "score"].iloc[0]
        vs_full = comps[(comps["against"] == "full FT") & (comps["task"] == train_task)].iloc[0]
        assert vs_full["a_value"] == pytest.approx(adapters["score"].max())
        assert vs_full["diff"] == pytest.approx(adapters["score"].max() - full)
    larger = comps[comps["against"] == "larger base"]
    assert len(larger) == 6 and (larger["b"] == "Qwen3-1.7B untuned").all() and (larger["verdict"] == "b better").all()


def test_q5_cheapest_configuration_by_hand(reference):
    _, answers = reference
    q5 = answers["Q5"]
    raw = raw_models()
    memory = raw.groupby("file")["memory"].first()
    assert memory.min() == 1.428
    figures = q5["figures"].set_index("config")
    assert figures.loc["Qwen3-0.6B Full FT (OpenMath)", "cheapest"]
    fastest = raw[raw["task"] == "arc"].sort_values("latency").iloc[0]
    assert fastest["file"] == "Qwen3-0.6B-openmath_SFT_NoPeft_NoQuant.json"
    assert q5["agrees_with_reference"] is True


def test_q9_pareto_fronts_by_hand(reference):
    _, answers = reference
    q9 = answers["Q9"]["figures"]
    raw = raw_models()
    for task in ("arc", "openmath", "squad_v2"):
        rows = raw[raw["task"] == task].reset_index(drop=True)
        front = set()
        for i, r in rows.iterrows():
            dominated = False
            for j, o in rows.iterrows():
                ge = o.score >= r.score and o.latency <= r.latency and o.memory <= r.memory
                gt = o.score > r.score or o.latency < r.latency or o.memory < r.memory
                dominated |= i != j and ge and gt
            if not dominated:
                front.add((r["method"], r["rank"] if not pd.isna(r["rank"]) else None, r["train_task"], r["base"]))
        got = q9[(q9["task"] == task) & (q9["front"] == "non-dominated")]
        assert len(got) == len(front)
    assert "Qwen3-1.7B untuned" in set(q9[q9["front"] == "non-dominated"]["config"])


def test_questions_without_data_say_why(reference):
    _, answers = reference
    q6 = answers["Q6"]
    assert q6["status"] == "not answerable" and q6["agrees_with_reference"] is None
    assert "training memory" in q6["answer"].lower()


def test_compare_protocols(reference):
    _, answers = reference
    a = list(answers.values())
    b = [dict(x) for x in a]
    b[7] = {**b[7], "agrees_with_reference": not a[7]["agrees_with_reference"], "answer": "Yes."}
    frame = compare_protocols(a, b, labels=("reference", "own")).set_index("id")
    assert list(frame.index) == [q[0] for q in QUESTIONS]
    assert {"answer_reference", "answer_own", "status_reference", "agrees_own", "agreement_changed"} <= set(frame)
    assert frame.loc["Q8", "agreement_changed"] is True
    assert frame.loc["Q6", "agreement_changed"] is None  # not answerable in both
    assert not compare_protocols(a, a)["agreement_changed"].dropna().any()


# --------------------------------------------------------------------------------------
# Hand-made studies
# --------------------------------------------------------------------------------------


@pytest.fixture
def study(tmp_path):
    """Untuned base; squad-trained full FT (all right), LoRA (2 seeds, mostly wrong), DoRA (one item
    fewer than full FT: a tie), VeRA (training failed)."""
    out = tmp_path / "handmade"
    write_model(out, "base-tiny", correct=mask(10), latency=0.3)
    write_model(
        out,
        "squad_v2-full-s0",
        method="full",
        train_task="squad_v2",
        seed=0,
        correct={"arc": mask(30), "openmath": mask(20), "squad_v2": mask(N)},
        latency=0.1,
    )
    write_model(
        out, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, correct=mask(8), latency=0.2
    )
    write_model(
        out,
        "squad_v2-lora-r8-s1",
        method="lora",
        rank=8,
        train_task="squad_v2",
        seed=1,
        correct=mask(12, offset=5),
        latency=0.22,
    )
    write_squad_dora_r8(out)
    write_model(out, "squad_v2-vera-r8-s0", method="vera", rank=8, train_task="squad_v2", seed=0, failed=True)
    return out


def test_truncated_record_is_an_error_naming_the_file(study):
    path = study / "runs/squad_v2-lora-r8-s0/eval-squad_v2.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(ResultError, match="squad_v2-lora-r8-s0/eval-squad_v2.json"):
        load_study(study)
    with pytest.raises(ResultError, match="no study results"):
        load_study(study / "nowhere")


def test_truncated_items_file_is_an_error_naming_it(study):
    records = load_study(study)
    path = study / "runs/squad_v2-full-s0/items-arc.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ResultError, match="items-arc.parquet"):
        records.items("squad_v2-full-s0", "arc")


def test_evals_and_trains_tables(study):
    records = load_study(study)
    evals = records.evals
    assert len(evals) == 6 * 3 and set(evals["memory_kind"].dropna()) == {"cpu-rss"}
    ok = evals[evals["status"] == "ok"]
    assert (ok["eval_res_gb"] == 0.5).all() and ok["eval_all_gb"].isna().all()
    full = ok[(ok["model"] == "squad_v2-full-s0") & (ok["task"] == "squad_v2")].iloc[0]
    assert full["efficacy"] == pytest.approx(100.0)  # SQuAD F1 in percent
    assert (full["block"], full["method"], full["base"], full["dtype"]) == (
        "Trained on SQuAD v2",
        "Full FT",
        "tiny-Qwen3",
        "float32",
    )
    arc = ok[(ok["model"] == "base-tiny") & (ok["task"] == "arc")].iloc[0]
    assert 0 <= arc["efficacy"] <= 1 and arc["block"] == "Base models" and arc["method"] == "—"
    failed = evals[evals["model"] == "squad_v2-vera-r8-s0"]
    assert (failed["status"] == "failed").all() and failed["efficacy"].isna().all()
    assert failed["error"].str.contains("failed").all()
    trains = records.trains.set_index("model")
    assert trains.loc["squad_v2-full-s0", "train_res_gb"] == 1.25
    assert np.isnan(trains.loc["squad_v2-full-s0", "train_all_gb"])
    assert trains.loc["squad_v2-full-s0", "memory_kind"] == "cpu-rss"
    assert trains.loc["squad_v2-vera-r8-s0", "status"] == "failed"
    assert "out of memory" in trains.loc["squad_v2-vera-r8-s0", "error"]
    assert records.items("squad_v2-full-s0", "arc") is not None
    assert records.items("squad_v2-vera-r8-s0", "arc") is None


def test_table1_failed_run_seeds_and_cpu_memory(study):
    table = table1(load_study(study))
    skill = ("flex", "format", "cut")
    assert list(table.columns[:29]) == [
        "block",
        "base",
        "method",
        "rank",
        "train_res_gb",
        "train_all_gb",
        "eval_res_gb",
        "eval_all_gb",
        "arc_f1",
        "arc_ll_acc",
        "arc_ll_acc_norm",
        *(f"arc_{c}" for c in skill),
        "arc_latency_s",
        "openmath_absdiff",
        "openmath_n_parsed",
        "openmath_n",
        "openmath_accuracy",
        "openmath_math_verify",
        *(f"openmath_{c}" for c in skill),
        "openmath_latency_s",
        "squad_f1",
        *(f"squad_{c}" for c in skill),
        "squad_latency_s",
    ]
    assert "squad_f1_std" in table.columns and "n_seeds" in table.columns and table.columns[-1] == "status"
    assert table["method"].tolist() == ["Full FT", "LoRA", "DoRA", "VeRA", "—"]
    rows = table.set_index("method")
    vera = rows.loc["VeRA"]
    assert vera["status"] == "failed" and pd.isna(vera["squad_f1"]) and pd.isna(vera["train_res_gb"])
    lora = rows.loc["LoRA"]
    seed0, seed1 = 100 * 8 / N, 100 * 12 / N
    assert lora["n_seeds"] == 2 and lora["squad_f1"] == pytest.approx((seed0 + seed1) / 2)
    assert lora["squad_f1_std"] == pytest.approx(np.std([seed0, seed1], ddof=1))
    assert lora["squad_latency_s"] == pytest.approx(np.mean([0.2, 0.22]))
    full = rows.loc["Full FT"]
    assert full["n_seeds"] == 1 and pd.isna(full["squad_f1_std"]) and full["status"] == "ok"
    assert full["eval_res_gb"] == 0.5 and pd.isna(full["eval_all_gb"])  # CPU: RSS as resident, no "all"
    assert full["train_res_gb"] == 1.25 and pd.isna(full["train_all_gb"])
    assert pd.isna(rows.loc["—", "train_res_gb"])
    page = table1_html(table)
    assert "±" in page and "VeRA (failed)" in page


def test_rank_question_needs_two_ranks(study):
    answers = {a["id"]: a for a in answer_questions(load_study(study), n_boot=100)}
    assert answers["Q3"]["status"] == "not answerable" and "rank" in answers["Q3"]["answer"]
    assert "tiny-Qwen3 VeRA r8 (SQuAD v2)" in answers["Q8"]["answer"] or "VeRA" in answers["Q1"]["answer"]
    q6 = answers["Q6"]["figures"]
    assert (q6["cap_gb"] == 1.25).all()  # every run peaked at 1.25 GB (CPU RSS)


def test_item_metrics_match_the_recorded_metrics():
    """The per-item data behind the comparisons reproduce each scoring's own summary, with unparsed
    replies (which the two scorings treat differently) and a fifth ARC option."""
    rng = np.random.default_rng(3)
    for task, measure, key in (
        ("arc", "arc_macro_f1", "macro_f1"),
        ("openmath", "openmath_accuracy", "accuracy"),
        ("squad_v2", "squad_f1", None),
    ):
        reply = replies(task, rng.random(N) < 0.5)
        reply = [r if i % 7 else "no box" for i, r in enumerate(reply)]
        gold = golds(task)
        if task == "arc":
            gold[3], reply[3] = "E", "\\boxed{E}"
            gold[5] = "E"
        items = pd.concat(
            [
                pd.DataFrame(
                    {"id": range(N), "reply": reply, "gold": gold if task == "squad_v2" else [str(g) for g in gold]}
                ),
                scoring.score_items(task, reply, gold),
            ],
            axis=1,
        )
        summary = scoring.summarize(task, items, rounded_reference=False)
        for name in ("corrected", "reference"):
            data = item_values(items, measure, name)
            if measure == "arc_macro_f1":
                codes = data[["g", "p"]].to_numpy()
                value = cluster_bootstrap_diff(
                    [codes],
                    [codes],
                    data["cluster"],
                    statistic="macro_f1",
                    n_classes=4 if name == "reference" else 5,
                    fixed_classes=name == "reference",
                    n_boot=2,
                )["a"]
                assert value == pytest.approx(summary[name][key])
            elif task == "openmath":
                expected = summary[name]["accuracy"] * (100 if name == "corrected" else 1)
                assert data["v"].mean() == pytest.approx(expected)
            elif name == "corrected":
                assert data["v"].mean() == pytest.approx(100 * summary[name]["f1"])


def test_reference_protocol_runs_read_the_reference_scoring(tmp_path):
    out = tmp_path / "ref-run"
    write_model(out, "base-tiny", correct=mask(10), protocol="reference")
    write_model(
        out, "openmath-full-s0", method="full", train_task="openmath", seed=0, correct=mask(36), protocol="reference"
    )
    write_model(
        out,
        "openmath-lora-r8-s0",
        method="lora",
        rank=8,
        train_task="openmath",
        seed=0,
        correct=mask(12),
        protocol="reference",
    )
    records = load_study(out)
    evals = records.evals
    assert set(evals["scoring"]) == {"reference"} and set(evals["efficacy_metric"]) == {
        "macro_f1",
        "avg_abs_diff",
        "F1",
    }
    squad = evals[(evals["model"] == "base-tiny") & (evals["task"] == "squad_v2")].iloc[0]
    assert squad["efficacy"] == records.eval_records[("base-tiny", "squad_v2")]["metrics"]["reference"]["F1"]
    an = Analysis(records, n_boot=200)
    c = an.adjust([an.compare("tiny-Qwen3 Full FT (OpenMath)", "tiny-Qwen3 LoRA r8 (OpenMath)", "openmath")], "t")
    assert c["metric"].iloc[0] == "openmath_accuracy" and c["method"].iloc[0] == "cluster bootstrap"
    assert c["verdict"].iloc[0] == "a better" and c["diff"].iloc[0] == pytest.approx(100 * (36 - 12) / N)
