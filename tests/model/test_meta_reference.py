"""vidlake's SAM 3 against Meta's own (package `sam3`, the reference), on the same weights.

A small Meta video model (112 px, width 128) with random weights calibrated so that decisions
happen (bench/meta_reference.py `calibrate`), converted by `vidlake.model.convert`, loaded by
`load_segmenter` and run by `Sam3Segmenter.segment` with every prompt in one session; Meta's
model runs one session per prompt at its own settings. Every object must match (greedily by
mean mask IoU over common frames), at mean IoU >= 0.98, and Meta's decisions must have
happened. bench/fidelity_meta.py runs more clips and frames; figures in bench/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("sam3", reason="Meta's sam3 is not installed (requirements-reference.txt)")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from meta_reference import run_fidelity, synthetic_clip  # noqa: E402

PROMPTS = ("red square", "green box")
N_FRAMES = 10  # past Meta's 8-frame unmatched limit, so hotstart removes tracks


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory):
    return run_fidelity(
        [synthetic_clip(seed=0, n_frames=N_FRAMES)],
        PROMPTS,
        tmp_path_factory.mktemp("meta_converted") / "model",
    )


def test_meta_decided_at_its_thresholds(fidelity):
    events = fidelity.events
    assert events.detections_over_05 > events.detections_over_07 > 0, events.line()
    assert events.removed_by_nms > 0, events.line()
    assert events.new_objects > 0 and events.removed_by_hotstart > 0, events.line()


def test_every_object_matches_meta(fidelity):
    (report,) = fidelity.reports
    assert report.n_reference > 0, report.line()
    assert not report.unmatched_reference and not report.unmatched_ours, report.line()
    assert report.frames_differing == 0, report.line()
    assert report.mean_iou >= 0.98, report.line()


def test_without_meta_parity_the_detector_departs(tmp_path):
    """The departure meta_parity fixes is real: without it, transformers' detector scores a text
    prompt differently (no geometry CLS token) and the objects differ."""
    run = run_fidelity(
        [synthetic_clip(seed=0, n_frames=3)], PROMPTS[:1], tmp_path / "model", parity=False
    )
    (report,) = run.reports
    assert report.unmatched_reference or report.unmatched_ours or report.mean_iou < 0.98


@pytest.mark.xfail(
    strict=True,
    reason="not yet equal where confident detections have empty masks: a track that starts "
    "invisible is tracked otherwise from its third frame; cause not found (bench/RESULTS.md, "
    "Fidelity to Meta's SAM 3)",
)
def test_every_object_matches_meta_with_high_confidence_weights(tmp_path):
    run = run_fidelity(
        [synthetic_clip(seed=0, n_frames=6)], PROMPTS[:1], tmp_path / "model", seed=1
    )
    (report,) = run.reports
    assert run.events.new_objects > run.reports[0].n_reference, run.events.line()
    assert not report.unmatched_reference and not report.unmatched_ours, report.line()
    assert report.mean_iou >= 0.98, report.line()
