"""Files appear whole or not at all."""

import os

import pytest

from recbole_mamba.files import atomic_open, atomic_path


def test_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target, "w") as f:
        f.write("first")
        assert not target.exists()  # nothing at the target while writing
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "first"
    assert os.listdir(target.parent) == ["out.txt"]  # no temporary left behind


def test_atomic_path_removes_its_temporary_on_failure(tmp_path):
    target = tmp_path / "lib.so"
    with pytest.raises(KeyError):
        with atomic_path(target, suffix=".so.tmp") as tmp:
            assert tmp.endswith(".so.tmp") and os.path.dirname(tmp) == str(tmp_path)
            raise KeyError("compiler failed")
    assert os.listdir(tmp_path) == []


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    with atomic_open(tmp_path / "table.md") as f:
        f.write("| a |")
    (tmp_path / "plain.md").write_text("| a |")
    mode = (tmp_path / "table.md").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.md").stat().st_mode & 0o777
    assert mode != 0o600 or os.umask(os.umask(0)) == 0o177  # not mkstemp's private mode
