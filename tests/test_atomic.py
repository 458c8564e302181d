"""The one write-then-rename helper: a reader never sees a half-written file."""

import json
import os

import pytest

from jax_basenji.atomic import atomic_open, atomic_path, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"r": 1})
    with pytest.raises(TypeError):
        write_json(str(path), {"r": object()})  # fails half-way through json.dump
    assert json.loads(path.read_text()) == {"r": 1}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_the_temporary_keeps_the_extension_and_lands_on_the_destination(tmp_path):
    path = tmp_path / "sub" / "plot.png"
    with atomic_path(str(path)) as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path / "sub")
        assert not path.exists()
        open(tmp, "w").write("x")
    assert path.read_text() == "x" and os.listdir(tmp_path / "sub") == ["plot.png"]


def test_existing_outputs_are_refused_without_overwrite(tmp_path):
    path = tmp_path / "preds.npy"
    path.write_text("old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with atomic_open(str(path), overwrite=False) as f:
            f.write("new")
    assert path.read_text() == "old"


def test_outputs_get_the_umask_mode_not_mkstemps_0600(tmp_path, monkeypatch):
    """Outputs on a shared cluster must be readable by the group, as a plain open() would make them."""
    from jax_basenji import atomic

    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    with atomic_open(str(tmp_path / "out.txt")) as f:
        f.write("x")
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
