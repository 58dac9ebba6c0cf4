from __future__ import annotations

from pathlib import Path

import numpy as np

from vidlake.model.segmenter import ConceptSegmenter
from vidlake.operators.clips import plan_clips
from vidlake.operators.decode import decode_clip
from vidlake.operators.encode import decode_rle
from vidlake.operators.probe import probe_video
from vidlake.synthetic.corpus import PALETTE, SyntheticVideo
from vidlake.synthetic.segmenter import ColorSegmenter

ALL_CONCEPTS = [*PALETTE, "purple hexagon"]


def _by_name(corpus: list[SyntheticVideo]) -> dict[str, SyntheticVideo]:
    return {Path(v.uri).stem: v for v in corpus}


def test_is_a_concept_segmenter() -> None:
    segmenter = ColorSegmenter()
    assert isinstance(segmenter, ConceptSegmenter)
    assert segmenter.model_id == "synthetic:color"


def test_masklets_match_the_truth_on_decoded_clips(synthetic_corpus: list[SyntheticVideo]) -> None:
    segmenter = ColorSegmenter()
    for video in synthetic_corpus:
        for spec in plan_clips("vid", probe_video(video.uri), clip_seconds=4.0, fps=3.0):
            frames = decode_clip(spec)
            masklets = segmenter.segment(frames, ALL_CONCEPTS)
            found = {m.concept: m for m in masklets}
            assert len(found) == len(masklets)  # one object per concept per clip
            assert "purple hexagon" not in found
            for concept in PALETTE:
                truth = np.stack([video.mask(concept, int(i)) for i in spec.frame_indices])
                areas = truth.sum(axis=(1, 2))
                if concept not in found:
                    assert areas.max() < segmenter.min_pixels, (video.uri, concept)
                    continue
                masklet = found[concept]
                assert masklet.object_id == list(PALETTE).index(concept)
                assert masklet.presence == 1.0 and (masklet.scores == 1.0).all()
                assert set(np.flatnonzero(areas >= 50)) <= set(masklet.frame_idx.tolist())
                assert set(masklet.frame_idx.tolist()) <= set(np.flatnonzero(areas > 0))
                for k, t in enumerate(masklet.frame_idx):
                    mask = decode_rle(masklet.masks[k])
                    ys, xs = np.nonzero(mask)
                    assert masklet.boxes[k].tolist() == [
                        xs.min(),
                        ys.min(),
                        xs.max() + 1,
                        ys.max() + 1,
                    ]
                    if areas[t] >= 50:
                        iou = (mask & truth[t]).sum() / (mask | truth[t]).sum()
                        assert iou >= 0.9, (video.uri, concept, int(spec.frame_indices[t]), iou)


def test_absent_concept_gives_nothing(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = _by_name(synthetic_corpus)["b_no_red"]
    segmenter = ColorSegmenter()
    for spec in plan_clips("vid", probe_video(video.uri), clip_seconds=3.0, fps=4.0):
        frames = decode_clip(spec)
        assert segmenter.segment(frames, ["red square", "blue circle"]) == []
        assert [m.concept for m in segmenter.segment(frames, ["green triangle"])] == [
            "green triangle"
        ]


def test_red_square_only_in_the_first_half(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = _by_name(synthetic_corpus)["a_red_first_half"]
    segmenter = ColorSegmenter()
    seen_at: list[float] = []
    for spec in plan_clips("vid", probe_video(video.uri), clip_seconds=2.0, fps=2.0, overlap_s=0):
        for m in segmenter.segment(decode_clip(spec), ["red square"]):
            seen_at.extend(spec.times_s[m.frame_idx].tolist())
    assert seen_at and min(seen_at) == 0.0 and max(seen_at) < 4.0
    assert max(seen_at) == 3.5
