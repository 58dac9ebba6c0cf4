"""`vidlake.model.convert`: Meta's SAM 3 state dict into transformers' Sam3VideoModel, and
`vidlake model convert` on bad input. Fidelity of the converted model: test_meta_reference.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidlake.errors import UsageError
from vidlake.model.convert import convert_sam3, load_meta_state_dict

VIDLAKE = str(Path(sys.executable).parent / "vidlake")


@pytest.fixture(scope="module")
def meta_state_dict() -> dict:
    """A small Meta SAM 3 video model's state dict, built with Meta's own constructors."""
    pytest.importorskip("sam3", reason="Meta's sam3 is not installed (requirements-reference.txt)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from meta_reference import build_meta_video_model, cpu_shim

    with cpu_shim():
        return build_meta_video_model().state_dict()


def test_every_tensor_lands_and_the_folder_loads(meta_state_dict, tmp_path):
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    out = convert_sam3(meta_state_dict, tmp_path / "model")
    model = Sam3VideoModel.from_pretrained(out)
    processor = Sam3VideoProcessor.from_pretrained(out)
    weights = model.state_dict()
    # Spot checks of the renames and reshapes (q/k/v split, class token dropped, transposed).
    meta_qkv = meta_state_dict["detector.backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight"]
    q = weights["detector_model.vision_encoder.backbone.layers.0.attention.q_proj.weight"]
    assert torch.equal(q, meta_qkv[: q.shape[0]])
    pos = meta_state_dict["detector.backbone.vision_backbone.trunk.pos_embed"]
    assert torch.equal(
        weights["detector_model.vision_encoder.backbone.embeddings.position_embeddings"], pos[:, 1:]
    )
    projection = meta_state_dict["detector.backbone.language_backbone.encoder.text_projection"]
    assert torch.equal(weights["detector_model.text_encoder.text_projection.weight"], projection.T)
    # The config follows the shapes and carries Meta's video settings.
    config = json.loads((out / "config.json").read_text())
    assert config["tracker_config"]["image_size"] == 112
    assert config["detector_config"]["detr_decoder_config"]["num_queries"] == 16
    assert (config["det_nms_thresh"], config["new_det_thresh"], config["hotstart_delay"]) == (
        0.1, 0.7, 15,
    )  # fmt: skip
    assert config["fill_hole_area"] == 16 and config["recondition_every_nth_frame"] == 16
    # Meta's tokenizer and the converted one agree on ids (CLIP BPE, 49408 tokens).
    ids = processor.tokenizer("red umbrella").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(processor.tokenizer) == 49408


def test_a_missing_or_unexpected_tensor_is_an_error_naming_it(meta_state_dict, tmp_path):
    partial = {k: v for k, v in meta_state_dict.items() if k != "tracker.no_obj_ptr"}
    with pytest.raises(UsageError, match="1 missing .tracker_model.no_object_pointer"):
        convert_sam3(partial, tmp_path / "partial")
    sizing = {k: v for k, v in meta_state_dict.items() if k != "tracker.maskmem_tpos_enc"}
    with pytest.raises(UsageError, match="lacks tracker.maskmem_tpos_enc"):
        convert_sam3(sizing, tmp_path / "sizing")
    # Nothing half-written is left behind.
    assert not any(tmp_path.iterdir())
    extra = {**meta_state_dict, "tracker.not_a_layer.weight": torch.zeros(1)}
    with pytest.raises(UsageError, match="unexpected.*tracker_model.not_a_layer.weight"):
        convert_sam3(extra, tmp_path / "extra")


def test_a_foreign_checkpoint_is_refused(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(UsageError, match="not a SAM 3 video checkpoint"):
        load_meta_state_dict(other)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_bad_input_is_one_line(tmp_path):
    def convert(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [VIDLAKE, "model", "convert", *args], capture_output=True, text=True, check=False
        )

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "video.mp4").write_bytes(b"")
    assert_one_line_error(convert(str(tmp_path / "sam3.pt"), "out"), "sam3.pt does not exist")
    assert_one_line_error(convert(str(text), "out"), "notes.txt is not a PyTorch checkpoint")
    assert_one_line_error(convert(str(text), str(busy)), "busy is not an empty folder")
