"""The transformers internals vidlake's SAM 3 layer replaces or calls: one test each that fails
by name when its upstream source changes (vidlake.model.upstream), and the load-time check."""

from __future__ import annotations

import importlib
import logging

import pytest

from vidlake.model import upstream


@pytest.mark.parametrize("internal", upstream.INTERNALS, ids=lambda i: i.name.split(":")[1])
def test_upstream_source_is_the_tested_one(internal):
    found = upstream.source_hash(internal.name)
    assert found is not None, f"{internal.name} is gone; {internal.used_by} needs it"
    assert found == internal.source_sha, (
        f"{internal.name} changed upstream (sha {found}, tested {internal.source_sha}): "
        f"re-read it against {internal.used_by}, then update vidlake.model.upstream"
    )


def test_every_internal_is_checked_for_its_parameters():
    assert upstream.problems() == []


def test_a_reshaped_internal_turns_the_batched_passes_off(tiny_sam3_dir, monkeypatch, caplog):
    """A transformers whose tracker internals moved: the backend loads, says so once, and runs
    transformers' own passes."""
    from vidlake.model.sam3 import Sam3Segmenter

    tracker = importlib.import_module(
        "transformers.models.sam3_tracker_video.modeling_sam3_tracker_video"
    )
    monkeypatch.delattr(tracker.Sam3TrackerVideoModel, "_get_object_pointers")
    with caplog.at_level(logging.WARNING, logger="vidlake.model.sam3"):
        segmenter = Sam3Segmenter(
            str(tiny_sam3_dir), device="cpu", batch_objects=True, batch_concepts=True
        )
    assert not segmenter.batch_objects and not segmenter.batch_concepts
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "_get_object_pointers is gone" in warnings[0]
    assert "running transformers' per-object and per-prompt passes" in warnings[0]
