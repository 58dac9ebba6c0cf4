"""load_segmenter dispatch, the tiny checkpoint builder, and the import-time promise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vidlake.errors import UsageError
from vidlake.model import load_segmenter
from vidlake.records import Masklet

PLUGIN = """
import numpy as np
from vidlake.records import Masklet

class FixedSegmenter:
    model_id = "plugin:fixed"

    def __init__(self, device="cpu", label="x"):
        self.device = device
        self.label = label

    def segment(self, frames, concepts):
        return [Masklet(self.label, 0, np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                        np.zeros(0, np.float32), [])]

class NotASegmenter:
    pass
"""


def test_importing_vidlake_model_does_not_import_torch():
    code = "import sys, vidlake.model; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_plugin_spec_imports_and_builds_the_class(tmp_path, monkeypatch):
    (tmp_path / "vidlake_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    segmenter = load_segmenter("vidlake_test_plugin:FixedSegmenter", device="cuda:3", label="y")
    assert segmenter.model_id == "plugin:fixed"
    assert segmenter.device == "cuda:3"
    [masklet] = segmenter.segment(np.zeros((1, 4, 4, 3), np.uint8), ["y"])
    assert isinstance(masklet, Masklet) and masklet.concept == "y"


def test_plugin_spec_errors_are_usage_errors(tmp_path, monkeypatch):
    (tmp_path / "vidlake_test_plugin2.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="cannot import"):
        load_segmenter("vidlake_no_such_module:Thing")
    with pytest.raises(UsageError, match="has no 'Missing'"):
        load_segmenter("vidlake_test_plugin2:Missing")
    with pytest.raises(UsageError, match="not a ConceptSegmenter"):
        load_segmenter("vidlake_test_plugin2:NotASegmenter")


def test_synthetic_color_spec_gives_the_color_segmenter():
    segmenter_module = pytest.importorskip("vidlake.synthetic.segmenter")
    segmenter = load_segmenter("synthetic:color")
    assert isinstance(segmenter, segmenter_module.ColorSegmenter)
    assert segmenter.model_id == "synthetic:color"


def test_tiny_checkpoint_holds_model_processor_and_tokenizer(tiny_sam3_dir):
    from transformers import Sam3VideoConfig, Sam3VideoProcessor

    names = {p.name for p in tiny_sam3_dir.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "vocab.json"} <= names
    assert {"merges.txt"} <= names
    config = Sam3VideoConfig.from_pretrained(tiny_sam3_dir)
    assert config.image_size == 112
    assert config.tracker_config.memory_encoder_output_channels == 64
    processor = Sam3VideoProcessor.from_pretrained(tiny_sam3_dir)
    tokenizer = processor.tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Red umbrella").input_ids)
    assert tokens == ["<|startoftext|>", "red</w>", "umbrella</w>", "<|endoftext|>"]
    # A word outside the small vocabulary still tokenizes, byte by byte, without unknowns.
    ids = tokenizer("xylophone").input_ids
    assert len(ids) > 3 and tokenizer.unk_token_id not in ids[1:-1]


def test_tiny_checkpoint_is_reproducible_from_its_seed(tmp_path):
    from vidlake.model.tiny import build_tiny_sam3

    a = build_tiny_sam3(tmp_path / "a", seed=0)
    b = build_tiny_sam3(tmp_path / "b", seed=0)
    c = build_tiny_sam3(tmp_path / "c", seed=1)
    weights = [(d / "model.safetensors").read_bytes() for d in (a, b, c)]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]
