"""SAM 3's NMS, hole filling and sprinkle removal: vidlake's kernel against Meta's own CPU
algorithms (package `sam3`), and always on in the backend."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch

from vidlake.errors import UsageError
from vidlake.model import quality

VIDEO = importlib.import_module("transformers.models.sam3_video.modeling_sam3_video")


def random_masks(seed: int, n: int, size: int = 48) -> torch.Tensor:
    """(n, size, size) bool: blobs (thresholded smoothed noise), with holes and specks."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size // 4, size // 4, generator=g)
    smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear")
    specks = torch.rand(n, 1, size, size, generator=g) < 0.02
    return ((smooth > 0.3) ^ specks)[:, 0]


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_meta_generic_nms_cpu(seed):
    nms = pytest.importorskip("sam3.perflib.nms")
    masks = random_masks(seed, 24)
    ious = VIDEO.mask_iou(masks, masks)
    scores = torch.rand(24, generator=torch.Generator().manual_seed(seed))
    for threshold in (0.1, 0.3, 0.7):
        ours = quality.CvUtils.generic_nms(ious, scores, threshold)
        meta = nms.generic_nms_cpu(ious, scores, threshold)
        assert ours.tolist() == meta.tolist()
    assert 0 < len(quality.CvUtils.generic_nms(ious, scores, 0.1)) < 24  # decisions happen


@pytest.mark.parametrize("seed", range(5))
def test_connected_components_equal_meta_cpu(seed):
    cc = pytest.importorskip("sam3.perflib.connected_components")
    masks = random_masks(seed, 6).to(torch.uint8)[:, None]
    labels, counts = quality.CvUtils.cc_2d(masks, get_counts=True)
    meta_labels, meta_counts = cc.connected_components_cpu(masks)
    assert counts.dtype == torch.int32 and counts.shape == masks.shape
    assert torch.equal(counts.long(), meta_counts.long())
    # Same partition into components (numbering differs: ours is unique over the batch).
    for b in range(len(masks)):
        ours, theirs = labels[b, 0].numpy(), meta_labels[b, 0].numpy()
        pairs = {(int(a), int(c)) for a, c in zip(ours.ravel(), theirs.ravel(), strict=True)}
        assert len({a for a, _ in pairs}) == len(pairs) == len({c for _, c in pairs})


def test_eight_connectivity():
    mask = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    mask[0, 0, 1, 1] = mask[0, 0, 2, 2] = 1  # diagonal neighbours: one component
    mask[0, 0, 4, 0] = 1
    _, counts = quality.CvUtils.cc_2d(mask)
    assert counts[0, 0, 1, 1] == counts[0, 0, 2, 2] == 2 and counts[0, 0, 4, 0] == 1


def test_fill_holes_equals_meta_postprocessing():
    """transformers' fill_holes_in_mask_scores through vidlake's kernel equals Meta's own
    `fill_holes_in_mask_scores` (sam3.model.sam3_tracker_utils) on the same logits."""
    utils = pytest.importorskip("sam3.model.sam3_tracker_utils")
    quality.install()
    g = torch.Generator().manual_seed(3)
    logits = torch.nn.functional.interpolate(
        torch.randn(8, 1, 12, 12, generator=g), size=(48, 48), mode="bilinear"
    ) + 0.3 * torch.randn(8, 1, 48, 48, generator=g)
    ours = VIDEO.fill_holes_in_mask_scores(logits.clone(), max_area=16)
    meta = utils.fill_holes_in_mask_scores(logits.clone(), max_area=16)
    assert torch.equal(ours, meta)
    assert ((logits <= 0) & (ours > 0)).any() and ((logits > 0) & (ours <= 0)).any()


def test_check_fails_when_a_step_is_bypassed(monkeypatch):
    quality.install()
    quality.check()
    monkeypatch.setattr(VIDEO, "fill_holes_in_mask_scores", lambda mask, *a, **k: mask)
    with pytest.raises(UsageError, match="hole filling and sprinkle removal did not run"):
        quality.check()


def test_install_refuses_a_transformers_without_the_hook(monkeypatch):
    monkeypatch.delattr(VIDEO, "cv_utils_kernel")
    with pytest.raises(UsageError, match="cv_utils_kernel is gone"):
        quality.install()


def test_backend_runs_nms_and_warns_on_skips(tiny_segmenter, clip_frames, concepts, caplog):
    """Loading the backend installs the steps: NMS drops detections on the tiny model, and the
    module's warnings are not silenced (only the per-frame object-cap notice is)."""
    from vidlake.model.events import count_events

    assert isinstance(VIDEO.cv_utils_kernel, quality.CvUtils)
    with count_events(tiny_segmenter.model) as events:
        tiny_segmenter.segment(clip_frames, concepts)
    assert events["nms_dropped"] > 0
    upstream_logger = logging.getLogger(VIDEO.__name__)
    assert upstream_logger.getEffectiveLevel() <= logging.WARNING
    with caplog.at_level(logging.WARNING, logger=VIDEO.__name__):
        upstream_logger.warning("hitting self.max_num_objects=8 with new_det_num=3")
        upstream_logger.warning("NMS post-processing will be skipped")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["NMS post-processing will be skipped"]
