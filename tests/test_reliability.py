"""Bad input, faults and interruptions: clear errors, failed records, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.core.files import ResultError, read_record
from peftlab.run.evaluate import run_evaluation
from peftlab.run.train import NonFiniteLossError, run_training
from peftlab.tasks.data import DataError


def test_a_missing_local_model_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError, match="'base_model'.*'./models/nope'.*existing checkpoint directory"):
        resolve_config(overrides={"base_model": "./models/nope", "out_dir": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()


def test_an_eval_task_without_data_fails_before_the_model_loads(tmp_path, tiny_config, monkeypatch):
    (tmp_path / "mydata" / "arc").mkdir(parents=True)  # arc only: squad_v2 has no data
    (tmp_path / "mydata" / "arc" / "test.jsonl").write_text(
        json.dumps(
            {"id": "a", "question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "A"}
        )
    )
    import peftlab.run.evaluate as evaluate

    def no_model(**kwargs):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(evaluate, "load_model", no_model)
    config = tiny_config(
        data_source=str(tmp_path / "mydata"), eval_tasks=["arc", "squad_v2"], n_eval=1, out_dir=str(tmp_path / "out")
    )
    with pytest.raises(DataError, match="no folder 'squad_v2'"):
        run_evaluation(config=config)
    assert not (tmp_path / "out").exists()


def test_non_finite_loss_stops_the_run_with_a_failed_record_naming_the_step(tiny_config):
    config = tiny_config(method="lora", n_train=16, batch_size=2, fault="nan_loss@3")
    with pytest.raises(NonFiniteLossError, match="optimizer step 3"):
        run_training(config=config)
    record = read_record(Path(config["out_dir"]) / "train.json")
    assert record["status"] == "failed" and record["error"]["phase"] == "train"
    assert "nan" in record["error"]["message"] and "step 3" in record["error"]["message"]
    assert not (Path(config["out_dir"]) / "model").exists()


def test_out_of_memory_in_training_is_recorded_with_phase_and_memory(tiny_config):
    config = tiny_config(method="full", n_train=16, batch_size=2, fault="oom@train:2")
    with pytest.raises(Exception, match="out of memory at optimizer step 2"):
        run_training(config=config)
    record = read_record(Path(config["out_dir"]) / "train.json")
    assert record["status"] == "failed" and record["error"]["phase"] == "train"
    assert record["error"]["memory_so_far"]["peak_rss_gb"] > 0


def test_out_of_memory_in_evaluation_is_recorded(tiny_config):
    config = tiny_config(eval_tasks=["arc"], fault="oom@evaluate")
    with pytest.raises(Exception, match="out of memory while evaluating arc"):
        run_evaluation(config=config)
    record = read_record(Path(config["out_dir"]) / "eval-arc.json")
    assert record["status"] == "failed" and record["error"]["phase"] == "evaluate"
    assert "memory_so_far" in record["error"]
    # the same config without the fault redoes it: a failed record is never taken as finished
    assert run_evaluation(config=dict(config, fault=None))["arc"]["status"] == "ok"


def test_over_long_rows_are_skipped_and_counted(tiny_config):
    # The tiny tokenizer makes these 8 rows 423 to 608 tokens long.
    record = run_training(config=tiny_config(train_task="squad_v2", n_train=8, max_length=500))
    assert record["n_rows_too_long"] == 4 and record["n_rows"] == 4
    with pytest.raises(ConfigError, match="every one of the 8 training rows is longer than 16"):
        run_training(config=tiny_config(train_task="squad_v2", n_train=8, max_length=16, force=True))


def test_cpu_runs_are_deterministic(tmp_path, tiny_config):
    results = []
    for attempt in ("a", "b"):
        config = tiny_config(method="vera", n_train=8, eval_tasks=["squad_v2"], out_dir=str(tmp_path / attempt))
        train = run_training(config=config)
        run_evaluation(config=config, run_dir=config["out_dir"])
        items = pd.read_parquet(tmp_path / attempt / "items-squad_v2.parquet")
        results.append(([p["loss"] for p in train["loss_curve"]], list(items["reply"]), list(items["score"])))
    assert results[0] == results[1]
    assert train["meta"]["determinism"]["nondeterministic_because"] == []


def test_truncated_result_is_detected_and_the_run_redone(tiny_config):
    config = tiny_config(n_train=4)
    path = Path(config["out_dir"]) / "train.json"
    run_training(config=config)
    path.write_text(path.read_text()[:200])  # as if the disk filled up mid-write
    with pytest.raises(ResultError, match="corrupted or truncated"):
        read_record(path)
    assert run_training(config=config)["status"] == "ok"
    assert read_record(path)["status"] == "ok"


def test_an_evaluation_never_overwrites_another_configs_result(tiny_config):
    config = tiny_config(eval_tasks=["arc"], n_eval=2)
    run_evaluation(config=config)
    with pytest.raises(ConfigError, match="already holds a finished evaluation of another configuration"):
        run_evaluation(config=dict(config, n_eval=3))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_leaves_no_finished_looking_result_and_reruns_cleanly(sig, tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        from peftlab.config import resolve_config
        from peftlab.run.train import run_training
        run_training(config=resolve_config(overrides=dict(base_model="tiny", n_train=16, batch_size=1, epochs=50,
                                                          max_length=512, out_dir={str(out)!r})))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=dict(os.environ, TQDM_DISABLE="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (out / ".trainer").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # mid-training
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert not (out / "train.json").exists() and not (out / "model").exists()
    config = resolve_config(
        overrides=dict(base_model="tiny", n_train=4, batch_size=4, max_length=512, out_dir=str(out))
    )
    assert run_training(config=config)["status"] == "ok"
