"""Checkpoint resolution and the one-line errors users see when a checkpoint cannot load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from vidlake.errors import CheckpointError
from vidlake.model import load_segmenter
from vidlake.model.checkpoint import COMPLETE_MARKER, load_error, resolve_checkpoint


def test_hub_id_passes_through():
    assert resolve_checkpoint("facebook/sam3") == "facebook/sam3"


def test_local_folder_resolves_to_its_absolute_path(tiny_sam3_dir):
    assert resolve_checkpoint(str(tiny_sam3_dir)) == str(tiny_sam3_dir.resolve())


def test_missing_local_folder_is_a_one_line_checkpoint_error(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(CheckpointError) as info:
        load_segmenter(str(missing), device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "does not exist" in message
    assert "vidlake model tiny" in message


def test_folder_without_config_names_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_checkpoint(str(tmp_path))


def test_folder_of_another_model_is_not_a_sam3_video_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a SAM 3 video checkpoint.*'bert'"):
        resolve_checkpoint(str(tmp_path))


def test_unreachable_hub_id_offline_says_how_to_fix(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as info:
        load_segmenter("vidlake-tests/no-such-model", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "vidlake-tests/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert "https://huggingface.co/facebook/sam3" in message


def test_gated_repo_error_says_accept_licence_and_log_in():
    from huggingface_hub.errors import GatedRepoError

    response = SimpleNamespace(headers={}, request=None, status_code=401)
    gated = GatedRepoError("401 Client Error. Access restricted.", response=response)
    try:
        raise OSError("You are trying to access a gated repo.\nMake sure ...") from gated
    except OSError as exc:
        error = load_error("facebook/sam3", exc)
    message = str(error)
    assert isinstance(error, CheckpointError)
    assert "\n" not in message
    assert "accept the licence at https://huggingface.co/facebook/sam3" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_uri_is_downloaded_once_into_the_cache(tiny_sam3_dir, tmp_path):
    source = tmp_path / "remote" / "sam3"
    shutil.copytree(tiny_sam3_dir, source)
    cache = tmp_path / "cache"

    first = Path(resolve_checkpoint(source.as_uri(), cache_dir=str(cache)))
    assert first.parent == cache
    assert (first / "config.json").read_bytes() == (source / "config.json").read_bytes()
    assert (first / "model.safetensors").is_file()
    assert (first / COMPLETE_MARKER).is_file()

    shutil.rmtree(source)  # a second resolve must not touch the "remote" store
    assert Path(resolve_checkpoint(source.as_uri(), cache_dir=str(cache))) == first


def test_uri_that_is_not_a_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        resolve_checkpoint((tmp_path / "nothing").as_uri(), cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("size", "words"),
    [
        (1000, "model.safetensors is truncated or not a safetensors file (1000 bytes)"),
        (100_000, "model.safetensors is truncated (100000 of "),
    ],
)
def test_truncated_weights_are_found_before_any_work(tiny_sam3_dir, tmp_path, size, words):
    from vidlake.model import check_model

    folder = tmp_path / "copy"
    shutil.copytree(tiny_sam3_dir, folder)
    check_model(str(folder))  # whole: passes
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(size)
    with pytest.raises(CheckpointError) as err:
        check_model(str(folder))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_missing_weights_and_shards_are_named(tiny_sam3_dir, tmp_path):
    from vidlake.model import check_model

    folder = tmp_path / "copy"
    shutil.copytree(tiny_sam3_dir, folder)
    weights = folder / "model.safetensors"
    shard = folder / "model-00001-of-00002.safetensors"
    weights.rename(shard)
    with pytest.raises(CheckpointError, match="has no weights"):
        check_model(str(folder))
    index = {"weight_map": {"a": shard.name, "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors is unreadable"):
        check_model(str(folder))
