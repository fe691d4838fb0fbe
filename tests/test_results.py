"""The records module's atomic writes: a file or directory is whole or absent (or still the
old one), never partly written, whatever happens while it is written."""

from __future__ import annotations

import os
import stat

import pytest

from peftlab.core.files import atomic_dir, atomic_file, read_record, write_json


def _fill(text: str, fail: bool = False):
    def build(directory):
        (directory / "weights.bin").write_text(text)
        if fail:
            raise KeyboardInterrupt  # as a Ctrl-C or a failing save halfway through

    return build


def test_an_interrupted_file_write_keeps_the_old_file(tmp_path):
    path = write_json(tmp_path / "train.json", {"kind": "train", "status": "ok", "meta": {}})

    def half_write(tmp):
        tmp.write_text('{"kind": "tr')
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_file(path, half_write)
    assert read_record(path)["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


@pytest.mark.parametrize("replace", [False, True])
def test_an_interrupted_directory_build_keeps_the_old_directory(tmp_path, replace):
    final = atomic_dir(tmp_path / "model", _fill("old"))
    with pytest.raises(KeyboardInterrupt):
        atomic_dir(final, _fill("new", fail=True), replace=replace)
    assert (final / "weights.bin").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_run_replaces_its_own_directory(tmp_path):
    final = atomic_dir(tmp_path / "model", _fill("old"), replace=True)
    (final / "stale.bin").write_text("from the old run")
    atomic_dir(final, _fill("new"), replace=True)
    assert sorted(p.name for p in final.iterdir()) == ["weights.bin"]
    assert (final / "weights.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_shared_cache_keeps_the_copy_that_was_finished_first(tmp_path):
    final = tmp_path / "cache" / "tokenizer"

    def build_while_another_process_finishes(directory):
        atomic_dir(final, _fill("first"))
        _fill("second")(directory)

    assert atomic_dir(final, build_while_another_process_finishes) == final
    assert (final / "weights.bin").read_text() == "first"
    assert sorted(p.name for p in final.parent.iterdir()) == ["tokenizer"]


def test_leftovers_of_a_killed_build_are_removed_when_a_run_replaces_its_directory(tmp_path):
    (tmp_path / ".model.0123abcd.tmp").mkdir()  # killed while building
    (tmp_path / ".model.4567cdef.old.tmp").mkdir()  # killed between the two renames
    (tmp_path / ".adapter.89abcdef.tmp").mkdir()  # another directory's: not this call's business
    atomic_dir(tmp_path / "model", _fill("new"), replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".adapter.89abcdef.tmp", "model"]


def test_a_built_directory_has_the_permissions_of_any_other_output(tmp_path):
    """Not mkdtemp's owner-only 0700: people sharing a study's outputs can read the models."""
    umask = os.umask(0o022)
    try:
        final = atomic_dir(tmp_path / "model", _fill("x"), replace=True)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
