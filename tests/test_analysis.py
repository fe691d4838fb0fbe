"""Table 1, the nine questions and the protocol comparison, on the imported reference results
(figures checked against numbers computed by hand from the raw files) and on small hand-made studies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from peftlab import scoring
from peftlab.analysis import (
    QUESTIONS,
    answer_questions,
    answers_table,
    compare_protocols,
    load_study,
    question_docs,
    table1,
    table1_html,
)
from peftlab.config import resolve_path
from peftlab.reference import import_reference
from peftlab.results import ResultError, write_json, write_parquet

RAW = resolve_path("data/reference-results")
KEYS = {"arc": "test-ai2_arc.parquet", "openmath": "test-OpenMathInstruct-2.parquet",
        "squad_v2": "test-squad_v2.parquet"}
METRIC = {"arc": ("macro_f1", True), "openmath": ("avg_abs_diff", False), "squad_v2": ("F1", True)}
ANSWER_KEYS = {"id", "question", "figures", "answer", "reference_answer", "agrees"}


# --------------------------------------------------------------------------------------
# The imported reference study
# --------------------------------------------------------------------------------------


def raw_models() -> pd.DataFrame:
    """Every (file, task) of the raw reference results, by hand from the JSON."""
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
            rank = int(tag[len(tag.rstrip("0123456789")):]) if method != "full" else None
        for task, key in KEYS.items():
            dataset = data["datasets"][key]
            rows.append({"file": path.name, "base": base, "method": method, "rank": rank, "train_task": train_task,
                         "task": task, "efficacy": dataset["metrics"][METRIC[task][0]],
                         "latency": dataset["latency_seconds"]["mean"],  # as published
                         "memory": data["hardware"]["peak_vram_reserved_gb"]})
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
        assert isinstance(answer["figures"], pd.DataFrame) and isinstance(answer["answer"], str) and answer["answer"]
        assert answer["agrees"] in (True, False, None)
        assert answer["reference_answer"] == next(r for i, _, r in QUESTIONS if i == qid)
    assert set(question_docs()) == set(answers) and all(question_docs().values())
    table = answers_table(list(answers.values()))
    assert table["id"].tolist() == list(answers)


def test_q1_balance_by_hand(reference):
    _, answers = reference
    q1 = answers["Q1"]
    raw = raw_models()
    for train_task in ("openmath", "squad_v2"):
        dom = raw[(raw["train_task"] == train_task) & (raw["task"] == train_task)].copy()
        higher = METRIC[train_task][1]
        eff = dom["efficacy"] / dom["efficacy"].max() if higher else dom["efficacy"].min() / dom["efficacy"]
        lat = dom["latency"].min() / dom["latency"]
        dom["balance"] = (eff + lat) / 2  # no training memory in the raw files: efficiency = latency
        winner = dom.loc[dom["balance"].idxmax()]
        figures = q1["figures"][q1["figures"]["train_task"] == train_task]
        best = figures[figures["best"]].iloc[0]
        assert best["method"] == "Full FT" and winner["method"] == "full"
        assert best["balance"] == pytest.approx(winner["balance"])
        assert sorted(figures["balance"]) == pytest.approx(sorted(dom["balance"]))
        assert figures["train_res_gb"].isna().all()
    full_squad = raw[(raw["method"] == "full") & (raw["train_task"] == "squad_v2") & (raw["task"] == "squad_v2")]
    assert q1["figures"].loc[q1["figures"]["best"], "balance"].min() < 1.0  # SQuAD full FT is not the fastest
    assert full_squad["efficacy"].iloc[0] == 27.95
    assert q1["agrees"] is True and q1["conclusion"] == "full"
    assert "no per-item scores: no interval" in set(q1["figures"]["note"].dropna())


def test_q2_figures_by_hand(reference):
    _, answers = reference
    q2 = answers["Q2"]
    raw = raw_models()
    figures = q2["figures"].set_index(["train_task", "against"])
    for train_task, higher in (("openmath", False), ("squad_v2", True)):
        dom = raw[(raw["train_task"] == train_task) & (raw["task"] == train_task)]
        adapters = dom[dom["method"].isin(["lora", "dora", "vera"])]
        best = adapters["efficacy"].max() if higher else adapters["efficacy"].min()
        full = dom.loc[dom["method"] == "full", "efficacy"].iloc[0]
        big = raw[(raw["base"] == "Qwen3-1.7B") & (raw["task"] == train_task)]["efficacy"].iloc[0]
        assert figures.loc[(train_task, "full FT"), "adapter_efficacy"] == best
        assert figures.loc[(train_task, "full FT"), "diff"] == pytest.approx(best - full)
        assert figures.loc[(train_task, "larger base"), "diff"] == pytest.approx(best - big)
        assert (figures.loc[train_task, "outcome"] == "falls short").all()
        assert figures.loc[train_task, "ci_low"].isna().all()  # no per-item scores were published
    assert q2["conclusion"] == "no, neither" and q2["agrees"] is True


def test_q5_cheapest_configuration_by_hand(reference):
    _, answers = reference
    q5 = answers["Q5"]
    raw = raw_models()
    sums = raw.groupby("file")["latency"].sum()
    memory = raw.groupby("file")["memory"].first()
    assert sums.idxmin() == memory.idxmin() == "Qwen3-0.6B-openmath_SFT_NoPeft_NoQuant.json"
    fastest = q5["figures"][q5["figures"]["fastest"]].iloc[0]
    assert fastest["config"] == "Qwen3-0.6B Full FT (OpenMath)"
    assert fastest["latency_sum_s"] == pytest.approx(sums.min())
    assert q5["figures"].loc[q5["figures"]["least_memory"], "eval_res_gb"].iloc[0] == memory.min() == 1.428
    assert q5["figures"]["latency_sum_s"].tolist() == pytest.approx(sorted(sums.tolist()))
    assert q5["agrees"] is True
    # per-item latency was published, so latency differences do get intervals
    assert q5["comparisons"]["ci_low"].notna().all()


def key(r: pd.Series) -> tuple:
    rank, train_task = r["rank"], r["train_task"]
    return (r["base"], r["method"], None if pd.isna(rank) else int(rank),
            None if not isinstance(train_task, str) else train_task)


def test_q9_pareto_fronts_by_hand(reference):
    _, answers = reference
    q9 = answers["Q9"]
    raw = raw_models()
    for task in ("arc", "openmath", "squad_v2"):
        rows = raw[raw["task"] == task].reset_index(drop=True)
        sign = 1 if METRIC[task][1] else -1
        front = set()
        for i, r in rows.iterrows():
            dominated = False
            for j, o in rows.iterrows():
                ge = (sign * o.efficacy >= sign * r.efficacy and o.latency <= r.latency and o.memory <= r.memory)
                gt = (sign * o.efficacy > sign * r.efficacy or o.latency < r.latency or o.memory < r.memory)
                dominated |= i != j and ge and gt
            if not dominated:
                front.add(key(r))
        figures = q9["figures"][(q9["figures"]["task"] == task) & q9["figures"]["pareto"]]
        assert {key(r) for _, r in figures.rename(columns={"method_key": "method", "method": "label"}).iterrows()} \
            == front
        assert ("Qwen3-1.7B", "base", None, None) in front
    fronts = q9["figures"][q9["figures"]["pareto"]]
    assert "Qwen3-1.7B untuned" in set(fronts["config"])
    assert "Qwen3-0.6B DoRA r512 (SQuAD v2)" in set(fronts[fronts["task"] == "squad_v2"]["config"])
    assert q9["agrees"] is True


def test_questions_without_data_say_why(reference):
    _, answers = reference
    q6 = answers["Q6"]
    assert q6["agrees"] is None and "training memory" in q6["answer"]
    q8 = answers["Q8"]
    assert q8["agrees"] is True and len(q8["figures"]) == 12
    assert (q8["figures"]["verdict"] == "full FT better").all()
    assert "no per-item scores: no interval" in q8["answer"]


def test_compare_protocols(reference):
    _, answers = reference
    a = list(answers.values())
    b = [dict(x) for x in a]
    b[7] = {**b[7], "conclusion": "no", "agrees": False, "answer": "No."}
    frame = compare_protocols(a, b, labels=("reference", "own"))
    assert frame["id"].tolist() == [q[0] for q in QUESTIONS]
    assert {"answer_reference", "answer_own", "agrees_reference", "agrees_own", "answers_agree",
            "agreement_changed"} <= set(frame)
    q8 = frame.set_index("id").loc["Q8"]
    assert q8["answers_agree"] is False and q8["agreement_changed"] is True
    q6 = frame.set_index("id").loc["Q6"]
    assert q6["agreement_changed"] is None  # undecided in both
    same = compare_protocols(a, a)
    assert same["answers_agree"].dropna().all() and not same["agreement_changed"].dropna().any()


# --------------------------------------------------------------------------------------
# Hand-made studies
# --------------------------------------------------------------------------------------

N = 40
CPU_EVAL = {"device": "cpu", "peak_rss_gb": 0.5, "label": "process peak RSS over the phase"}
CPU_TRAIN = {"device": "cpu", "peak_rss_gb": 1.25, "label": "process peak RSS over the phase"}


def golds(task: str) -> list:
    if task == "arc":
        return ["ABCD"[i % 4] for i in range(N)]
    if task == "openmath":
        return [float(i + 1) for i in range(N)]
    return [[f"answer {i}"] for i in range(N)]


def replies(task: str, correct: np.ndarray) -> list[str]:
    gold = golds(task)
    out = []
    for i, ok in enumerate(correct):
        if task == "arc":
            answer = gold[i] if ok else "ABCD"[(i + 1) % 4]
        elif task == "openmath":
            answer = f"{gold[i]:g}" if ok else f"{gold[i] + 3:g}"
        else:
            answer = gold[i][0] if ok else "something else"
        out.append(f"\\boxed{{{answer}}}")
    return out


def identity(name: str, method: str, rank, train_task, seed) -> dict:
    # as the evaluator records it: a trained model is its merged checkpoint (the base is in train.json)
    base_model = "tiny" if method == "base" else f"/study/runs/{name}/model"
    return {"label": name, "base_model": base_model, "trained": method != "base", "run": None if method == "base" else name,
            "method": method, "rank": rank, "train_task": train_task, "seed": seed, "dtype": "float32",
            "device": "cpu", "n_params": 1000}


def write_model(out, name, *, method="base", rank=None, train_task=None, seed=None, correct=None,
                latency=0.1, failed=False, tasks=("arc", "openmath", "squad_v2"), protocol="corrected"):
    """A model's records as the project writes them: items, eval record per task, train record."""
    run = out / "runs" / name
    ident = identity(name, method, rank, train_task, seed)
    if method != "base":
        train = {"kind": "train", "status": "failed" if failed else "ok",
                 "config": {"base_model": "tiny", "method": method, "rank": rank, "train_task": train_task,
                            "seed": seed, "protocol": protocol},
                 "memory": None if failed else CPU_TRAIN, "timings": {"train_s": 2.0}, "tokens_per_s": 50.0,
                 "final_loss": 1.5, "trainable_params": 10, "total_params": 1000, "meta": {}}
        if failed:
            train["error"] = {"type": "RuntimeError", "message": "out of memory", "phase": "train"}
        write_json(run / "train.json", train)
    for task in tasks:
        if failed:
            write_json(run / f"eval-{task}.json", {
                "kind": "eval", "status": "failed", "task": task, "model": ident, "config": {},
                "error": {"type": "RuntimeError", "message": f"training run {name} failed", "phase": "upstream"},
                "meta": {}})
            continue
        ok = np.asarray(correct[task] if isinstance(correct, dict) else correct, dtype=bool)
        gold, reply = golds(task), replies(task, ok)
        scored = scoring.score_items(task, reply, gold)
        items = pd.DataFrame({"id": [f"{task}-{i}" for i in range(N)], "task": task, "reply": reply,
                              "gold": [g if task == "squad_v2" else str(g) for g in gold],
                              "tokens_generated": 5, "seconds": latency})
        items = pd.concat([items, scored], axis=1)
        items["latency_s"] = latency + 0.001 * (np.arange(N) % 3)
        items["latency_tokens"] = pd.array([5] * N, dtype="Int64")
        metrics = scoring.summarize(task, items)
        write_parquet(run / f"items-{task}.parquet", items)
        write_json(run / f"eval-{task}.json", {
            "kind": "eval", "status": "ok", "task": task, "protocol": protocol, "model": ident,
            "config": {"protocol": protocol}, "config_hash": "h", "n_items": N, "metrics": metrics,
            "parse_rate": metrics["corrected"]["parse_rate"],
            "latency": {"n": N, "batch_size": 1, "mean_s": float(items["latency_s"].mean()),
                        "median_s": float(items["latency_s"].median()), "p90_s": float(items["latency_s"].quantile(.9)),
                        "tokens_mean": 5.0, "tokens_median": 5.0, "s_per_token": latency / 5},
            "memory": CPU_EVAL, "meta": {}})


def mask(n_right: int, offset: int = 0) -> np.ndarray:
    out = np.zeros(N, dtype=bool)
    out[[(offset + i) % N for i in range(n_right)]] = True
    return out


@pytest.fixture
def study(tmp_path):
    """Untuned base; squad-trained full FT (all right), LoRA (2 seeds, mostly wrong), DoRA (one item
    fewer than full FT: a tie), VeRA (training failed)."""
    out = tmp_path / "handmade"
    write_model(out, "base-tiny", correct=mask(10), latency=0.3)
    write_model(out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0,
                correct={"arc": mask(30), "openmath": mask(20), "squad_v2": mask(N)}, latency=0.1)
    write_model(out, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0,
                correct=mask(8), latency=0.2)
    write_model(out, "squad_v2-lora-r8-s1", method="lora", rank=8, train_task="squad_v2", seed=1,
                correct=mask(12, offset=5), latency=0.22)
    write_model(out, "squad_v2-dora-r8-s0", method="dora", rank=8, train_task="squad_v2", seed=0,
                correct={"arc": mask(10), "openmath": mask(10), "squad_v2": mask(N - 1)}, latency=0.2)
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
        "Trained on SQuAD v2", "Full FT", "tiny-Qwen3", "float32")
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
    assert list(table.columns[:14]) == ["block", "base", "method", "rank", "train_res_gb", "train_all_gb",
                                        "eval_res_gb", "eval_all_gb", "arc_f1", "arc_latency_s",
                                        "openmath_absdiff", "openmath_latency_s", "squad_f1", "squad_latency_s"]
    assert "squad_f1_std" in table.columns and "n_seeds" in table.columns and table.columns[-1] == "status"
    assert table["method"].tolist() == ["Full FT", "LoRA", "DoRA", "VeRA", "—"]
    rows = table.set_index("method")
    vera = rows.loc["VeRA"]
    assert vera["status"] == "failed" and pd.isna(vera["squad_f1"]) and pd.isna(vera["train_res_gb"])
    lora = rows.loc["LoRA"]
    seed0, seed1 = 100 * 8 / N, 100 * 12 / N
    assert lora["n_seeds"] == 2 and lora["squad_f1"] == pytest.approx((seed0 + seed1) / 2)
    assert lora["squad_f1_std"] == pytest.approx(np.std([seed0, seed1], ddof=1))
    assert lora["squad_latency_s"] == pytest.approx(np.mean([0.2, 0.22]) + 0.001 * np.mean(np.arange(N) % 3))
    full = rows.loc["Full FT"]
    assert full["n_seeds"] == 1 and pd.isna(full["squad_f1_std"]) and full["status"] == "ok"
    assert full["eval_res_gb"] == 0.5 and pd.isna(full["eval_all_gb"])  # CPU: RSS as resident, no "all"
    assert full["train_res_gb"] == 1.25 and pd.isna(full["train_all_gb"])
    assert pd.isna(rows.loc["—", "train_res_gb"])
    page = table1_html(table)
    assert "±" in page and "VeRA (failed)" in page


def test_paired_interval_tie_and_clear_win(study):
    answers = {a["id"]: a for a in answer_questions(load_study(study), n_boot=300)}
    q8 = answers["Q8"]["figures"].set_index("adapter")
    win = q8.loc["tiny-Qwen3 LoRA r8 (SQuAD v2)"]
    assert win["verdict"] == "full FT better" and win["ci_low"] > 0
    assert win["diff"] == pytest.approx(100 - (100 * 8 / N + 100 * 12 / N) / 2)
    tie = q8.loc["tiny-Qwen3 DoRA r8 (SQuAD v2)"]
    assert tie["verdict"] == "tie" and tie["ci_low"] <= 0 <= tie["ci_high"] and tie["diff"] == pytest.approx(2.5)
    assert answers["Q8"]["agrees"] is False and answers["Q8"]["conclusion"] == "no"
    assert "1 ties" in answers["Q8"]["answer"]

    # macro-F1 (ARC) and mean abs diff (OpenMath) differences get intervals from the items too
    q4 = answers["Q4"]["figures"]
    assert q4["ci_low"].notna().all() and set(q4["task"]) == {"arc", "openmath"}
    full_arc = q4[(q4["config"] == "tiny-Qwen3 Full FT (SQuAD v2)") & (q4["task"] == "arc")].iloc[0]
    assert full_arc["direction"] == "gain" and full_arc["ci_low"] > 0
    # the failed VeRA run takes part in no comparison
    assert not answers["Q8"]["figures"]["adapter"].str.contains("VeRA").any()


def test_training_memory_caps_and_rank_questions(study):
    answers = {a["id"]: a for a in answer_questions(load_study(study), n_boot=100)}
    q6 = answers["Q6"]
    assert len(q6["figures"]) >= 1 and q6["figures"]["cap_gb"].eq(1.25).all()
    assert q6["figures"]["winner"].iloc[0] == "tiny-Qwen3 Full FT (SQuAD v2)"
    assert q6["agrees"] is False  # full FT wins even the hardest cap here
    q3 = answers["Q3"]
    assert q3["agrees"] is None and "rank" in q3["answer"]  # one rank per method: nothing to compare
    q5 = answers["Q5"]
    assert q5["figures"].iloc[0]["config"] == "tiny-Qwen3 Full FT (SQuAD v2)"


def test_item_metrics_match_the_recorded_metrics():
    """The per-item metrics behind the intervals reproduce each scoring's own summary."""
    from peftlab.analysis import _macro_f1, _mean_v, _prepare

    rng = np.random.default_rng(3)
    for task, key in (("arc", "macro_f1"), ("openmath", None)):
        reply = replies(task, rng.random(N) < 0.5)
        if task == "arc":  # some unparsable replies, which the two scorings treat differently
            reply = [r if i % 7 else "no box" for i, r in enumerate(reply)]
        gold = [str(g) for g in golds(task)]
        items = pd.concat([pd.DataFrame({"id": range(N), "reply": reply, "gold": gold}),
                           scoring.score_items(task, reply, gold)], axis=1)
        summary = scoring.summarize(task, items, rounded_reference=False)
        for name in ("corrected", "reference"):
            prepared = _prepare(items, task, name, "efficacy")
            if task == "arc":
                value = _macro_f1(drop_unparsed=name == "reference")(prepared)
                assert value == pytest.approx(summary[name][key])
            else:
                value = _mean_v(prepared)
                expected = summary[name]["mean_abs_diff" if name == "corrected" else "avg_abs_diff"]
                assert value == pytest.approx(expected)


def test_reference_protocol_runs_read_the_reference_scoring(tmp_path):
    out = tmp_path / "ref-run"
    write_model(out, "base-tiny", correct=mask(10), protocol="reference")
    write_model(out, "openmath-full-s0", method="full", train_task="openmath", seed=0, correct=mask(36),
                protocol="reference")
    write_model(out, "openmath-lora-r8-s0", method="lora", rank=8, train_task="openmath", seed=0, correct=mask(12),
                protocol="reference")
    records = load_study(out)
    evals = records.evals
    assert set(evals["scoring"]) == {"reference"} and set(evals["efficacy_metric"]) == {"macro_f1", "avg_abs_diff",
                                                                                        "F1"}
    squad = evals[(evals["model"] == "base-tiny") & (evals["task"] == "squad_v2")].iloc[0]
    assert squad["efficacy"] == records.eval_records[("base-tiny", "squad_v2")]["metrics"]["reference"]["F1"]
    answers = {a["id"]: a for a in answer_questions(records, n_boot=200)}
    q8 = answers["Q8"]["figures"].iloc[0]
    assert q8["verdict"] == "full FT better" and q8["ci_high"] < 0  # lower abs diff: full FT minus LoRA < 0
    q4 = answers["Q4"]["figures"]
    assert q4["ci_low"].notna().all()  # reference-scored items (ref_parsed, ref_score) give intervals
