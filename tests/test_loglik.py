"""Log-likelihood multiple choice: lm-evaluation-harness as the oracle, batching, ARC option parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from peftlab.core.paths import repo_root
from peftlab.models.loading import load_model
from peftlab.run.loglik import multiple_choice_loglik
from peftlab.tasks.arc import LOGLIK_PROMPT, arc_hf, arc_options


def _hf_rows(name: str) -> list[dict]:
    path = repo_root() / "data" / "hf" / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# 20 shipped items: the first 18 of ARC-Easy validation (numeric labels at 8, five options at 17) and two
# ARC-Challenge test items whose options are not ASCII ("32° F"), where characters and bytes differ.
ORACLE_ITEMS = _hf_rows("arc_easy_validation.jsonl")[:18] + [_hf_rows("arc_challenge_test.jsonl")[i] for i in (12, 23)]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer, _ = load_model(base_model="tiny", device="cpu")
    return model, tokenizer


def _requests(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Our side: project rows (options folded into the question) split back and prompted."""
    contexts, choices = [], []
    for n, record in enumerate(records):
        stem, options = arc_options(arc_hf(record, "test", n))
        contexts.append(LOGLIK_PROMPT.format(question=stem))
        choices.append(options)
    return contexts, choices


def test_matches_lm_eval_harness(tiny, tmp_path):
    pytest.importorskip("lm_eval")
    import yaml
    from lm_eval import tasks as lm_tasks
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = tiny
    # lm-eval's own arc_easy task definition, reading the shipped rows instead of the Hub (offline).
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in ORACLE_ITEMS))
    config = yaml.safe_load((Path(lm_tasks.__file__).parent / "arc" / "arc_easy.yaml").read_text())
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {"validation": str(data)}, "cache_dir": str(tmp_path / "cache")},
        training_split=None,
        test_split=None,
        metric_list=[*config["metric_list"], {"metric": "acc_bytes", "aggregation": "mean", "higher_is_better": True}],
    )
    task = ConfigurableTask(config=config)
    docs = list(task.validation_docs())
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    requests = [
        task.construct_requests(doc, task.fewshot_context(doc, num_fewshot=0), metadata=("arc_easy", n, 1))
        for n, doc in enumerate(docs)
    ]
    answers = lm.loglikelihood([r for doc_requests in requests for r in doc_requests], disable_tqdm=True)

    contexts, choices = _requests(ORACLE_ITEMS)
    ours = multiple_choice_loglik(model, tokenizer, contexts, choices, batch_size=5, progress=False)

    ours_acc, ours_norm, theirs_acc, theirs_norm = [], [], [], []
    for doc, doc_requests, mine, context, options in zip(docs, requests, ours, contexts, choices):
        # The same strings: prompt and " option" continuations.
        assert [r.args for r in doc_requests] == [(context, " " + option) for option in options]
        theirs = [answers.pop(0) for _ in doc_requests]
        lls = np.array([ll for ll, _ in theirs])
        np.testing.assert_allclose(mine["loglik"], lls, rtol=0, atol=1e-4)
        # lm-eval's process_results: acc = argmax ll; acc_norm = argmax ll / len(option) in characters
        # (no delimiter space); acc_bytes = the same per UTF-8 byte.
        assert mine["choice"] == np.argmax(lls)
        assert mine["choice_norm"] == np.argmax(lls / np.array([len(option) for option in options]))
        assert mine["choice_bytes"] == np.argmax(lls / np.array([len(option.encode()) for option in options]))
        scored = task.process_results(doc, theirs)
        gold = task.doc_to_target(doc)
        assert scored["acc"] == float(mine["choice"] == gold)
        assert scored["acc_norm"] == float(mine["choice_norm"] == gold)
        assert scored["acc_bytes"] == float(mine["choice_bytes"] == gold)
        ours_acc.append(mine["choice"] == gold)
        ours_norm.append(mine["choice_norm"] == gold)
        theirs_acc.append(scored["acc"])
        theirs_norm.append(scored["acc_norm"])
    assert not answers
    assert np.mean(ours_acc) == np.mean(theirs_acc) and np.mean(ours_norm) == np.mean(theirs_norm)


def test_matches_lm_eval_at_token_boundaries(tiny):
    """Trailing context spaces move to the continuation; the split comes from the whole text's encoding."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = tiny
    contexts = ["Question: what?\nAnswer: ", "Q: ", "Question: x\nAnswer:", "Answer: in"]
    choices = [["tele", "phone"], [" two", "three"], ["\n\nyes", "no"], ["side", " out"]]
    ours = multiple_choice_loglik(model, tokenizer, contexts, choices, batch_size=3, progress=False, delimiter="")
    requests = [
        Instance("loglikelihood", {}, (c, o), n) for c, options in zip(contexts, choices) for n, o in enumerate(options)
    ]
    theirs = [ll for ll, _ in HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8).loglikelihood(requests)]
    np.testing.assert_allclose([ll for r in ours for ll in r["loglik"]], theirs, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="adds no token"):  # "th" + "e" is one token: nothing left to score
        multiple_choice_loglik(model, tokenizer, ["Answer: th"], [["e"]], progress=False, delimiter="")


def test_batching_does_not_change_the_scores(tiny):
    model, tokenizer = tiny
    contexts, choices = _requests(ORACLE_ITEMS[:8])
    one = multiple_choice_loglik(model, tokenizer, contexts, choices, batch_size=1, progress=False)
    seven = multiple_choice_loglik(model, tokenizer, contexts, choices, batch_size=7, progress=False)
    for a, b in zip(one, seven):
        np.testing.assert_allclose(a["loglik"], b["loglik"], rtol=0, atol=1e-5)
        assert (a["choice"], a["choice_norm"]) == (b["choice"], b["choice_norm"])
    assert all(len(r["loglik"]) == len(options) for r, options in zip(one, choices))


def test_the_model_is_left_as_it_was(tiny):
    model, tokenizer = tiny
    model.train()
    try:
        first = multiple_choice_loglik(model, tokenizer, ["Question: 1+1?\nAnswer:"], [["2", "3"]], progress=False)
        assert model.training  # scored in eval mode, then handed back in training mode
    finally:
        model.eval()
    assert not torch.is_inference_mode_enabled()
    assert first == multiple_choice_loglik(model, tokenizer, ["Question: 1+1?\nAnswer:"], [["2", "3"]], progress=False)


def test_arc_options_five_options_and_numeric_labels():
    five = {
        "id": "x",
        "question": "Dr. A. Smith asked: which is a gas? A. ice B. steam C. rock D. wood E. salt",
        "labels": ["A", "B", "C", "D", "E"],
        "answer": "B",
    }
    assert arc_options(five) == ("Dr. A. Smith asked: which is a gas?", ["ice", "steam", "rock", "wood", "salt"])
    numeric = {
        "id": "y",
        "question": "Which is true? 1. Ice is cold. 2. Fire is cold. 3. Rock is soft. 4. Air is solid.",
        "labels": ["1", "2", "3", "4"],
        "answer": "1",
    }
    assert arc_options(numeric) == (
        "Which is true?",
        ["Ice is cold.", "Fire is cold.", "Rock is soft.", "Air is solid."],
    )
    assert arc_options({"stem": "S", "options": ("a", "b"), "question": "ignored A. x", "labels": ["A"]}) == (
        "S",
        ["a", "b"],
    )
    with pytest.raises(ValueError, match="no option marker 'D. '"):
        arc_options({"id": "z", "question": "Q? A. a B. b C. c", "labels": ["A", "B", "C", "D"]})


def test_arc_options_recovers_every_shipped_item():
    for name in ("arc_easy_validation.jsonl", "arc_challenge_test.jsonl"):
        for n, record in enumerate(_hf_rows(name)):
            assert arc_options(arc_hf(record, name, n)) == (record["question"], record["choices"]["text"]), record["id"]
