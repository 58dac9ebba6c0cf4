"""`build_tiny_sam3`'s output folder: made when it can be, refused in one line when it cannot or
when it holds someone else's files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vidlake.errors import UsageError
from vidlake.model.tiny import build_tiny_sam3, is_tiny_sam3


def test_a_folder_that_cannot_be_made_is_a_usage_error_naming_why(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(UsageError, match=f"^cannot create {a_file}: it is a file$"):
        build_tiny_sam3(a_file)
    with pytest.raises(UsageError, match=f"^cannot create {a_file}/sub: {a_file} is a file$"):
        build_tiny_sam3(a_file / "sub")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="gone: it is a broken symbolic link$"):
        build_tiny_sam3(tmp_path / "gone")
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs is Linux's")
def test_a_folder_under_proc_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="^cannot create /proc/vidlake-tiny: /proc does not allow"):
        build_tiny_sam3("/proc/vidlake-tiny")


def test_a_uri_is_refused_rather_than_made_a_local_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="looks like a URI; this takes a local folder"):
        build_tiny_sam3(Path("s3://bucket/tiny"))  # Path makes it s3:/bucket/tiny
    assert not list(tmp_path.iterdir())


def test_a_folder_of_other_files_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"a user's video")
    (tmp_path / "config.json").write_text('{"model_type": "sam3_video"}')  # not a tiny one
    with pytest.raises(UsageError, match="is not empty and holds no tiny model"):
        build_tiny_sam3(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "config.json"]


def test_an_empty_folder_or_a_tiny_model_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    assert not is_tiny_sam3(folder)
    build_tiny_sam3(folder, seed=0)
    assert is_tiny_sam3(folder)
    first = (folder / "model.safetensors").read_bytes()
    build_tiny_sam3(folder, seed=1)  # a tiny model is rewritten in place
    assert (folder / "model.safetensors").read_bytes() != first
