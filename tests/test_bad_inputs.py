"""Inputs that once ran silently (a smaller sample, a meaningless rank) or failed deep inside a
library: each is refused up front with one message naming the key or file, the value and what
is allowed, before any model loads and before Snakemake starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import papermill as pm
import pytest

import peftlab.run.train as train_module
from conftest import make_project_copy
from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.methods.registry import MethodError
from peftlab.study.plan import load_plan
from peftlab.tasks.data import DataError
from peftlab.tasks.registry import load_rows

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PEFTLAB = str(Path(sys.executable).parent / "peftlab")

OPENMATH_HF = {
    "problem": "What is 2 + 3?",
    "generated_solution": "2 + 3 = 5",
    "expected_answer": "5",
    "problem_source": "gsm8k",
}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if anything tries to load a model."""

    def refuse(**kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(train_module, "load_model", refuse)


# --- sample counts larger than the split -------------------------------------------------


def test_n_train_above_the_training_split_is_refused_naming_the_rows_available():
    with pytest.raises(ConfigError) as error:
        resolve_config(overrides={"base_model": "tiny", "n_train": 5000})
    message = str(error.value)
    for word in (
        "'n_train'",
        "5000",
        "1,000 rows",
        "openmath train split",
        "train-OpenMathInstruct-2.parquet",
        "from 1 to 1000",
        "or all",
    ):
        assert word in message


def test_n_eval_above_a_test_split_is_refused_naming_the_task_and_its_rows():
    with pytest.raises(ConfigError) as error:
        resolve_config(overrides={"n_eval": 5000, "eval_tasks": ["arc", "squad_v2"]})
    message = str(error.value)
    for word in ("'n_eval'", "5000", "200 rows", "arc test split", "from 1 to 200", "or all"):
        assert word in message
    # the shipped HF samples have other sizes, and the message follows them
    with pytest.raises(ConfigError, match=r"'n_eval'.*626 rows of the squad_v2 test split"):
        resolve_config(overrides={"data_source": "hf", "n_eval": 627, "eval_tasks": ["squad_v2"]})
    assert resolve_config(overrides={"data_source": "hf", "n_eval": 626, "eval_tasks": ["squad_v2"]})["n_eval"] == 626


def test_all_takes_every_row_explicitly():
    config = resolve_config(overrides={"n_train": "all", "n_eval": "all"})
    assert (config["n_train"], config["n_eval"]) == ("all", "all")
    assert len(load_rows(task="openmath", split="train", n=config["n_train"])) == 1000
    assert len(load_rows(task="arc", split="test", n=config["n_eval"])) == 200
    with pytest.raises(ConfigError, match=r"'n_train': 'most' is not allowed; allowed: an integer >= 1, or all"):
        resolve_config(overrides={"n_train": "most"})


def test_the_train_notebook_refuses_n_train_5000_before_loading(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match=r"'n_train': 5000 is more than the 1,000 rows"):
        pm.execute_notebook(
            str(NOTEBOOKS / "train.ipynb"),
            str(tmp_path / "out.ipynb"),
            cwd=str(NOTEBOOKS),
            parameters=dict(base_model="tiny", n_train=5000, out_dir=str(tmp_path / "run")),
            progress_bar=False,
        )
    assert not (tmp_path / "run").exists()


def test_a_split_whose_size_only_loading_tells_is_still_refused(tmp_path):
    # <task>/train-00000.jsonl: datasets decides which files form the split, so the count comes at load time
    folder = tmp_path / "mydata" / "openmath"
    folder.mkdir(parents=True)
    (folder / "train-00000.jsonl").write_text("\n".join(json.dumps(OPENMATH_HF) for _ in range(3)) + "\n")
    config = resolve_config(overrides={"data_source": str(tmp_path / "mydata"), "n_train": 5})
    with pytest.raises(DataError, match=r"'n_train': 5 is more than the 3 rows of the openmath train split"):
        load_rows(task="openmath", split="train", source=config["data_source"], n=config["n_train"])


# --- ranks the model's layers cannot use ------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_a_rank_above_the_layers_dimensions_is_refused_naming_the_layer(method, tiny_config, no_model):
    config = tiny_config(method=method, rank=4096)
    with pytest.raises(MethodError) as error:
        train_module.run_training(config=config)
    message = str(error.value)
    for word in ("'rank'", "4096", "self_attn.k_proj", "64 -> 32", "min(64, 32) = 32", "from 1 to 32"):
        assert word in message
    assert not Path(config["out_dir"], "train.json").exists()


def test_a_vera_rank_is_refused_by_the_rule_of_its_shared_bases(tiny_config, no_model):
    config = tiny_config(method="vera", rank=4096)
    with pytest.raises(MethodError) as error:
        train_module.run_training(config=config)
    message = str(error.value)
    for word in (
        "'rank'",
        "4096",
        "shared random bases",
        "A: r x 64",
        "B: 64 x r",
        "self_attn.k_proj",
        "64 x 32 = 2048",
        "from 1 to 2048",
    ):
        assert word in message


def test_the_largest_allowed_rank_still_trains(tiny_config):
    record = train_module.run_training(config=tiny_config(method="lora", rank=32, n_train=4))
    assert record["status"] == "ok" and record["config"]["rank"] == 32


# --- a broken line in a local JSON Lines file -----------------------------------------------


def test_a_broken_jsonl_line_names_the_file_and_the_line(tmp_path, tiny_config, no_model):
    folder = tmp_path / "mydata" / "openmath"
    folder.mkdir(parents=True)
    lines = [
        json.dumps(OPENMATH_HF),
        json.dumps(OPENMATH_HF),
        '{"problem": "3 + 4?", "expected_answer": 7,',
        json.dumps(OPENMATH_HF),
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    config = tiny_config(data_source=str(tmp_path / "mydata"), n_train=2, out_dir=str(tmp_path / "run"))
    with pytest.raises(DataError) as error:
        train_module.run_training(config=config)
    message = str(error.value)
    assert f"{folder / 'train.jsonl'}, line 3, column" in message and "not valid JSON" in message
    assert "An error occurred while generating the dataset" not in message


def test_a_line_that_is_not_a_record_is_named_too(tmp_path):
    folder = tmp_path / "mydata" / "openmath"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(json.dumps(OPENMATH_HF) + "\n[1, 2]\n")
    with pytest.raises(DataError, match=r"train.jsonl, line 2: expected a JSON object"):
        load_rows(task="openmath", split="train", source=str(tmp_path / "mydata"))


# --- study files ---------------------------------------------------------------------------

BROKEN_STUDY = """description: a study with a missing bracket
trained_base_models: [tiny]
methods: {lora: [4]
train_tasks: [arc]
"""


def test_a_malformed_study_file_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_STUDY)
    with pytest.raises(ConfigError) as error:
        load_plan(str(path))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"study file {path}, line 4, column 1: expected ',' or '}}'")
    assert "line 3, column 10" in message  # where the unclosed mapping starts


def _peftlab(*args: str, cwd: Path, root: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEFTLAB_ROOT=str(root)) if root else None
    return subprocess.run([PEFTLAB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("broken", BROKEN_STUDY, ["study file", "broken.yaml, line 4, column 1"]),
        (
            "unknown",
            "trained_base_models: [tiny]\nmethod: {lora: [4]}\ntrain_tasks: [arc]\n",
            ["study 'unknown': unknown key(s) ['method']", "methods"],
        ),
        (
            "toomany",
            "trained_base_models: [tiny]\nmethods: {lora: [4]}\ntrain_tasks: [arc]\noverrides: {n_train: 5000}\n",
            ["'n_train': 5000 is more than the 1,000 rows"],
        ),
        (
            "bigrank",
            "trained_base_models: [tiny]\nmethods: {lora: [4096]}\ntrain_tasks: [arc]\n",
            ["job arc-lora-r4096-s0", "'rank': 4096", "self_attn.k_proj"],
        ),
        (  # ranks given to a method that takes none would silently become one run
            "rankless",
            "trained_base_models: [tiny]\nmethods: {ia3: [8, 16]}\ntrain_tasks: [arc]\n",
            ["'methods.ia3': [8, 16] is not allowed", "[null] (ia3 takes no rank)"],
        ),
        (
            "norank",
            "trained_base_models: [tiny]\nmethods: {lora: [null]}\ntrain_tasks: [arc]\n",
            ["'methods.lora': [None] is not allowed", "lora takes a rank"],
        ),
    ],
)
def test_a_study_error_is_one_line_before_snakemake_starts(tmp_path, name, text, words):
    root = make_project_copy(tmp_path, {name: text})
    result = _peftlab("study", name, cwd=root, root=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftlab study: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (root / ".snakemake").exists()  # Snakemake never started
    assert not (root / "outputs").exists()


def test_peftlab_study_list_validates_and_lists_without_running(tmp_path):
    root = make_project_copy(tmp_path)
    result = _peftlab("study", "smoke", "--list", cwd=root, root=root)
    assert result.returncode == 0, result.stderr
    assert "study smoke: 2 train jobs, 6 evaluate jobs" in result.stdout and "arc-lora-r4-s0" in result.stdout
    assert not (root / ".snakemake").exists()


@pytest.mark.parametrize("mode", ["--list", "--dry-run"])
def test_peftlab_study_refuses_a_bad_gpus_value_when_listing_too(tmp_path, mode):
    root = make_project_copy(tmp_path)
    result = _peftlab("study", "smoke", mode, "--gpus", "banana", cwd=root, root=root)
    assert result.returncode == 2, result.stdout
    assert "GPUS='banana' is not allowed; allowed: a whole number >= 1" in result.stderr
    assert "train jobs" not in result.stdout and not (root / ".snakemake").exists()


# --- experiment tracking -----------------------------------------------------------------------


def test_report_to_allows_only_known_trackers():
    with pytest.raises(ConfigError, match=r"'report_to': 'wandb' is not allowed; allowed: none, tensorboard, trackio"):
        resolve_config(overrides={"report_to": "wandb"})
    try:
        import trackio  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"'report_to': 'trackio' needs the trackio package"):
            resolve_config(overrides={"report_to": "trackio"})


@pytest.mark.slow
def test_tensorboard_tracking_is_opt_in_and_outside_the_runs_identity(tiny_config):
    pytest.importorskip("tensorboard")
    plain = tiny_config(n_train=4, batch_size=2)
    tracked = dict(plain, report_to="tensorboard")
    record = train_module.run_training(config=tracked)
    events = list(Path(plain["out_dir"], "tensorboard").glob("events.out.tfevents.*"))
    assert record["status"] == "ok" and events and events[0].stat().st_size > 0
    # the same configuration without tracking is the same run: reused, not redone
    assert train_module.run_training(config=plain)["config_hash"] == record["config_hash"]
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ


# --- what a newcomer runs first ---------------------------------------------------------------


def test_the_evaluation_notebook_evaluates_what_the_training_notebook_trains_by_default():
    train = pm.inspect_notebook(str(NOTEBOOKS / "train.ipynb"))
    evaluate = pm.inspect_notebook(str(NOTEBOOKS / "evaluate.ipynb"))
    trained = train["out_dir"]["default"]
    assert evaluate["run_dir"]["default"] == trained
    assert trained.strip("'\"") == "outputs/adhoc/openmath-lora-r16-s0"


def test_evaluating_a_run_that_was_not_trained_says_what_to_do(tmp_path):
    from peftlab.run.evaluate import run_evaluation

    config = resolve_config(overrides={"base_model": "tiny", "out_dir": str(tmp_path / "eval")})
    with pytest.raises(ConfigError, match=r"run notebooks/train.ipynb .* or set run_dir to '' to evaluate the untuned"):
        run_evaluation(config=config, run_dir=str(tmp_path / "never-trained"))


@pytest.mark.slow
def test_make_lab_serves_the_repository_and_opens_the_notebooks(tmp_path):
    import socket
    import time
    import urllib.request

    root = Path(__file__).resolve().parents[1]
    command = (
        subprocess.run(["make", "-s", "-n", "lab"], cwd=root, capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert "jupyter lab" in command
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        f"{command} --no-browser --port {port} --IdentityProvider.token=t --ServerApp.ip=127.0.0.1",
        shell=True,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        listing = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=t", timeout=5) as answer:
                    listing = json.load(answer)
                break
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer"
        names = {item["name"] for item in listing["content"]}
        assert {"notebooks", "report", "params", "README.md"} <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token=t", timeout=10) as answer:
            assert answer.url.split("?")[0].endswith("/lab/tree/notebooks")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
