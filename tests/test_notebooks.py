"""The notebooks run through papermill with parameters, as users run them."""

from __future__ import annotations

import ast
import importlib.util
import json

import nbformat
import papermill as pm
import pytest

from peftlab.config import (
    EVAL_IDENTITY_KEYS,
    EVAL_NOTEBOOK_KEYS,
    EVAL_ONLY_KEYS,
    SCHEMA,
    TEST_HOOKS,
    TRAIN_NOTEBOOK_KEYS,
    load_defaults,
    notebook_parameters,
    notebook_parameters_cell,
)
from peftlab.core.errors import ConfigError
from peftlab.core.paths import repo_root

NOTEBOOKS = repo_root() / "notebooks"
COMMITTED = [NOTEBOOKS / "train.ipynb", NOTEBOOKS / "evaluate.ipynb", repo_root() / "report" / "report.ipynb"]
# Each notebook's parameters: train.ipynb every run key of params/defaults.yaml, evaluate.ipynb the
# keys an evaluation reads and the run it evaluates.
PARAMETERS = {"train.ipynb": (TRAIN_NOTEBOOK_KEYS, set()), "evaluate.ipynb": (EVAL_NOTEBOOK_KEYS, {"run_dir"})}
# A valid value other than the default for every run key (out_dir: the test's folder): papermill passes it,
# the config must hold it.
NOT_DEFAULTS = dict(
    base_model="tiny",
    dtype="float32",
    device="cpu",
    protocol="reference",
    method="dora",
    rank=4,
    alpha=8.0,
    dropout=0.05,
    target_modules=["q_proj", "v_proj"],
    vera_d_initial=0.2,
    learning_rate=1e-4,
    epochs=2.0,
    batch_size=2,
    grad_accum=2,
    max_length=256,
    warmup_ratio=0.1,
    weight_decay=0.01,
    max_grad_norm=0.5,
    gradient_checkpointing=True,
    group_by_length=False,
    padding_free=False,
    mixed_precision="no",
    lm_head_positions="all",
    dropout_masks="bernoulli",
    seed=3,
    train_task="arc",
    n_train=8,
    data_source="hf",
    eval_tasks=["arc"],
    n_eval=4,
    max_new_tokens=8,
    eval_batch_size=2,
    eval_backend="transformers",
    n_latency=1,
    latency_repeats=3,
    force=True,
    report_to="tensorboard" if importlib.util.find_spec("tensorboard") else "none",
    fault="nan_loss@1",
)


def test_train_notebook_parameters_are_the_training_keys_of_the_defaults_file():
    params = pm.inspect_notebook(str(NOTEBOOKS / "train.ipynb"))
    assert set(params) == set(TRAIN_NOTEBOOK_KEYS) == set(load_defaults()) - set(EVAL_ONLY_KEYS) - set(TEST_HOOKS)
    assert not [key for key in params if key.startswith("lr_")]  # learning_rate: null is the method's default
    assert not set(params) & (set(EVAL_ONLY_KEYS) | set(TEST_HOOKS))


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_parameters_cells_mirror_the_defaults_file_section_by_section(name):
    """Each parameters cell is params/defaults.yaml's sections, keys and comments for its keys
    (scripts/notebook-parameters.py rewrites the cells after a change there)."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    assert cell.source == notebook_parameters_cell(name).rstrip("\n")
    defaults = (repo_root() / "params" / "defaults.yaml").read_text().splitlines()
    lines = cell.source.splitlines()
    for above, line in zip(lines, lines[1:]):
        if line.startswith("# ---") and "the model evaluated" not in line:
            assert line in defaults  # the defaults file's own section headers
        elif not line.startswith("#") and " = " in line and line.split(" = ")[0] != "run_dir":
            key = line.split(" = ")[0]
            (entry,) = [d for d in defaults if d.startswith(f"{key}:")]
            assert above == "# " + entry.split(" #", 1)[1].strip()  # its comment, word for word, above it


def test_a_test_hook_passes_through_papermill_without_a_parameters_cell_line():
    values = {key: load_defaults()[key] for key in TRAIN_NOTEBOOK_KEYS}
    assert notebook_parameters(values | {"fault": "nan_loss@1"}, TRAIN_NOTEBOOK_KEYS)["fault"] == "nan_loss@1"
    assert "fault" not in notebook_parameters(values, TRAIN_NOTEBOOK_KEYS)
    with pytest.raises(ConfigError, match=r"does not use the run key\(s\) n_eval"):
        notebook_parameters(values | {"n_eval": 3}, TRAIN_NOTEBOOK_KEYS)


def test_evaluate_notebook_parameters_are_the_evaluation_keys_and_run_dir():
    params = pm.inspect_notebook(str(NOTEBOOKS / "evaluate.ipynb"))
    assert set(params) == set(EVAL_NOTEBOOK_KEYS) | {"run_dir"}
    assert set(EVAL_IDENTITY_KEYS) <= set(EVAL_NOTEBOOK_KEYS) <= set(SCHEMA)


@pytest.mark.parametrize("name", PARAMETERS)
def test_parameters_cell_defaults_are_the_defaults_file(name):
    defaults = load_defaults()
    params = pm.inspect_notebook(str(NOTEBOOKS / name))
    keys, _ = PARAMETERS[name]
    # out_dir: the notebooks write to a folder named after their default run, not outputs/adhoc/run
    assert {key: ast.literal_eval(params[key]["default"]) for key in keys if key != "out_dir"} == {
        key: defaults[key] for key in keys if key != "out_dir"
    }


@pytest.mark.parametrize("name", PARAMETERS)
def test_papermill_sets_every_listed_key_in_the_config(name, tmp_path):
    """Each parameter the cell lists, passed by papermill, reaches the resolved config (the notebook runs
    up to its config cell, then writes the config out)."""
    keys, extra = PARAMETERS[name]
    assert set(NOT_DEFAULTS) | {"out_dir"} == set(SCHEMA), "give every run key a non-default value in NOT_DEFAULTS"
    not_defaults = NOT_DEFAULTS | {"out_dir": str(tmp_path / "run")}
    values = {key: not_defaults[key] for key in keys}
    defaults = load_defaults()
    assert not [key for key in keys if key != "report_to" and values[key] == defaults[key]]
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    last = next(i for i, cell in enumerate(notebook.cells) if "resolve_config(" in cell.source)
    dump = tmp_path / "config.json"
    notebook.cells = notebook.cells[: last + 1] + [
        nbformat.v4.new_code_cell(f"import json, pathlib\npathlib.Path({str(dump)!r}).write_text(json.dumps(config))")
    ]
    nbformat.write(notebook, tmp_path / name)
    pm.execute_notebook(
        str(tmp_path / name),
        str(tmp_path / f"out-{name}"),
        cwd=str(NOTEBOOKS),
        parameters=values | {key: "" for key in extra},
        progress_bar=False,
    )
    config = json.loads(dump.read_text())
    assert {key: config[key] for key in keys} == values


def test_notebook_parameters_refuse_a_missing_key_and_a_run_key_the_notebook_does_not_use():
    values = {key: load_defaults()[key] for key in EVAL_NOTEBOOK_KEYS}
    namespace = values | {"run_dir": "", "__name__": "__main__", "In": []}
    assert notebook_parameters(namespace, EVAL_NOTEBOOK_KEYS) == values
    with pytest.raises(ConfigError, match="parameters cell does not set n_eval"):
        notebook_parameters({k: v for k, v in namespace.items() if k != "n_eval"}, EVAL_NOTEBOOK_KEYS)
    with pytest.raises(ConfigError, match=r"does not use the run key\(s\) method, rank"):
        notebook_parameters(namespace | {"method": "full", "rank": 8}, EVAL_NOTEBOOK_KEYS)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: path.name)
def test_committed_notebooks_have_no_outputs(path):
    notebook = json.loads(path.read_text())
    assert "papermill" not in notebook["metadata"] and "widgets" not in notebook["metadata"]
    for cell in notebook["cells"]:
        assert "execution" not in cell["metadata"] and "papermill" not in cell["metadata"]
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            assert not cell["outputs"] and cell["execution_count"] is None
            assert "def " not in source and "class " not in source


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora", "dora", "vera"])
def test_train_then_evaluate_notebooks_on_the_tiny_model(method, tmp_path):
    run = tmp_path / f"arc-{method}"
    pm.execute_notebook(
        str(NOTEBOOKS / "train.ipynb"),
        str(tmp_path / "train.ipynb"),
        cwd=str(NOTEBOOKS),
        parameters=dict(
            base_model="tiny",
            max_length=512,
            method=method,
            rank=4,
            n_train=8,
            batch_size=4,
            train_task="arc",
            out_dir=str(run),
        ),
        progress_bar=False,
    )
    record = json.loads((run / "train.json").read_text())
    assert record["status"] == "ok" and record["config"]["method"] == method
    pm.execute_notebook(
        str(NOTEBOOKS / "evaluate.ipynb"),
        str(tmp_path / "evaluate.ipynb"),
        cwd=str(NOTEBOOKS),
        parameters=dict(
            base_model="tiny",
            run_dir=str(run),
            out_dir=str(run),
            eval_tasks=["arc", "squad_v2"],
            n_eval=4,
            max_new_tokens=8,
            n_latency=2,
        ),
        progress_bar=False,
    )
    evaluation = json.loads((run / "eval-arc.json").read_text())
    assert evaluation["model"]["method"] == method and evaluation["config"]["n_eval"] == 4
    assert (run / "items-squad_v2.parquet").is_file()


def test_bad_parameter_fails_the_notebook_before_loading_anything(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="'method'"):
        pm.execute_notebook(
            str(NOTEBOOKS / "train.ipynb"),
            str(tmp_path / "bad.ipynb"),
            cwd=str(NOTEBOOKS),
            parameters=dict(base_model="tiny", method="qlora", out_dir=str(tmp_path / "r")),
            progress_bar=False,
        )
    assert not (tmp_path / "r").exists()
