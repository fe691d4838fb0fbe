"""Every error the project raises on purpose is a PeftlabError, and keeps the built-in base
that callers catch it by; the `peftlab` command prints any of them as one line."""

from __future__ import annotations

import pytest

from peftlab.cli import main
from peftlab.core.errors import ConfigError, PeftlabError
from peftlab.core.files import ResultError
from peftlab.methods.registry import MethodError
from peftlab.models.loading import ModelLoadError
from peftlab.run.train import NonFiniteLossError
from peftlab.study.slots import SlotError
from peftlab.tasks.data import DataError


@pytest.mark.parametrize(
    "error, builtin",
    [
        (ConfigError, ValueError),
        (DataError, ValueError),
        (MethodError, ValueError),
        (ModelLoadError, RuntimeError),
        (ResultError, ValueError),
        (SlotError, ValueError),
        (NonFiniteLossError, RuntimeError),
    ],
)
def test_every_project_error_is_a_peftlab_error_and_keeps_its_builtin_base(error, builtin):
    assert issubclass(error, PeftlabError) and issubclass(error, builtin)
    with pytest.raises(PeftlabError):
        raise error("what is wrong; allowed: what is allowed")


def test_the_command_prints_any_project_error_as_one_line(capsys):
    """A GPU count that cannot work is a SlotError, raised before Snakemake starts."""
    assert main(["study", "smoke", "--gpus", "banana"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftlab study: error: GPUS='banana' is not allowed; allowed:"), err
    assert "Traceback" not in err
