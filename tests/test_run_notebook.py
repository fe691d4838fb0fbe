"""The workflow's notebook runner: papermill's command line, without the slow IRI checker."""

from __future__ import annotations

import subprocess
import sys

import nbformat


def test_runner_executes_a_parameterised_notebook_like_papermill(tmp_path):
    source = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    parameters = nbformat.v4.new_code_cell("rows = 1")
    parameters.metadata["tags"] = ["parameters"]
    source.cells = [
        parameters,
        nbformat.v4.new_code_cell("print('rows', rows * 2)"),
    ]
    nbformat.write(source, tmp_path / "in.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "peftlab.study.run_notebook", str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb")]
        + ["-p", "rows", "21"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "rows 42" in executed.cells[-1].outputs[0]["text"]


def test_a_failing_notebook_fails_the_runner(tmp_path):
    source = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    source.cells = [nbformat.v4.new_code_cell("raise ValueError('bad rows')")]
    nbformat.write(source, tmp_path / "in.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "peftlab.study.run_notebook", str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "bad rows" in done.stderr + done.stdout
