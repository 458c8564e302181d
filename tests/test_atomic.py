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


def test_data_reach_the_disk_before_the_name_and_the_name_after(tmp_path, monkeypatch):
    """fsync of the file, then the rename, then fsync of its directory: after a power loss a
    progress record cannot point at rows that were never written."""
    from jax_basenji import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(
        f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("rename", b)), real_replace(a, b))[1])
    write_json(str(tmp_path / "progress.json"), {"done": 8})
    assert [e[0] for e in events] == ["fsync", "rename", "fsync"]
    assert os.path.basename(events[0][1]).startswith(".tmp-progress.json")
    assert events[2][1] == str(tmp_path)


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
