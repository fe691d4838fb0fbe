"""The notebooks run through papermill with parameters, as users run them."""

from __future__ import annotations

import json

import papermill as pm
import pytest

from peftlab.config import SCHEMA, repo_root

NOTEBOOKS = repo_root() / "notebooks"


@pytest.mark.parametrize("name, extra", [("train.ipynb", set()), ("evaluate.ipynb", {"run_dir"})])
def test_parameters_cell_covers_the_whole_vocabulary(name, extra):
    params = pm.inspect_notebook(str(NOTEBOOKS / name))
    assert set(params) == set(SCHEMA) | extra


@pytest.mark.parametrize("name", ["train.ipynb", "evaluate.ipynb"])
def test_committed_notebooks_have_no_outputs(name):
    notebook = json.loads((NOTEBOOKS / name).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None
        if cell["cell_type"] == "code":
            assert "def " not in cell["source"] and "class " not in cell["source"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora", "dora", "vera"])
def test_train_then_evaluate_notebooks_on_the_tiny_model(method, tmp_path):
    run = tmp_path / f"arc-{method}"
    common = dict(base_model="tiny", max_length=512)
    pm.execute_notebook(str(NOTEBOOKS / "train.ipynb"), str(tmp_path / "train.ipynb"), cwd=str(NOTEBOOKS),
                        parameters=dict(common, method=method, rank=4, n_train=8, batch_size=4, train_task="arc",
                                        out_dir=str(run)), progress_bar=False)
    record = json.loads((run / "train.json").read_text())
    assert record["status"] == "ok" and record["config"]["method"] == method
    pm.execute_notebook(str(NOTEBOOKS / "evaluate.ipynb"), str(tmp_path / "evaluate.ipynb"), cwd=str(NOTEBOOKS),
                        parameters=dict(common, run_dir=str(run), out_dir=str(run), eval_tasks=["arc", "squad_v2"],
                                        n_eval=4, max_new_tokens=8, n_latency=2), progress_bar=False)
    assert json.loads((run / "eval-arc.json").read_text())["model"]["method"] == method
    assert (run / "items-squad_v2.parquet").is_file()


def test_bad_parameter_fails_the_notebook_before_loading_anything(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="'method'"):
        pm.execute_notebook(str(NOTEBOOKS / "train.ipynb"), str(tmp_path / "bad.ipynb"), cwd=str(NOTEBOOKS),
                            parameters=dict(base_model="tiny", method="qlora", out_dir=str(tmp_path / "r")),
                            progress_bar=False)
    assert not (tmp_path / "r").exists()
