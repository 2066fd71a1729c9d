"""The output folder is written whole or not at all."""

from __future__ import annotations

import pytest

from auditor.errors import OutputError
from auditor.output import check_destination, write_atomically


def test_writes_all_files(tmp_path):
    out = write_atomically(tmp_path / "run", {"a.txt": b"1", "sub/b.txt": b"2"}, force=False)
    assert (out / "a.txt").read_bytes() == b"1" and (out / "sub" / "b.txt").read_bytes() == b"2"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_refuses_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="--force"):
        write_atomically(out, {"a.txt": b"1"}, force=False)
    assert (out / "keep.txt").read_text() == "precious"
    write_atomically(out, {"a.txt": b"1"}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_empty_existing_folder_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    write_atomically(tmp_path / "run", {"a.txt": b"1"}, force=False)
    assert (tmp_path / "run" / "a.txt").exists()


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_destination(tmp_path / "run", force=True)


def test_failure_midway_leaves_nothing(tmp_path):
    files = {"a.txt": b"1", "b.txt": None}  # writing None fails after a.txt was written
    with pytest.raises(TypeError):
        write_atomically(tmp_path / "run", files, force=False)
    assert list(tmp_path.iterdir()) == []
