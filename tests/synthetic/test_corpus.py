from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidlake.synthetic.corpus import (
    BACKGROUND,
    PALETTE,
    ShapeSpec,
    SyntheticVideo,
    VideoSpec,
    write_corpus,
)


def _by_name(corpus: list[SyntheticVideo]) -> dict[str, SyntheticVideo]:
    return {Path(v.uri).stem: v for v in corpus}


def test_default_corpus_has_the_designed_visibility(synthetic_corpus: list[SyntheticVideo]) -> None:
    videos = _by_name(synthetic_corpus)
    assert set(videos) == {"a_red_first_half", "b_no_red", "c_all_four"}
    a, b, c = videos["a_red_first_half"], videos["b_no_red"], videos["c_all_four"]
    assert a.visible_frames("red square").tolist() == list(range(a.n_frames // 2))
    assert a.visible_seconds("red square") == [(0.0, 4.0)]
    assert a.visible_seconds("blue circle") == [(0.0, 8.0)]
    assert len(b.visible_frames("red square")) == 0
    assert b.visible_seconds("red square") == []
    star_b = b.visible_seconds("yellow star")
    assert len(star_b) == 1 and 1.0 < star_b[0][0] < 2.5 and star_b[0][1] == 6.0
    star_c = c.visible_seconds("yellow star")
    assert len(star_c) == 1 and star_c[0][0] == 0.0 and 1.0 < star_c[0][1] < 3.0
    assert set(c.concepts) == set(PALETTE)
    assert all(Path(v.uri).stat().st_size > 1000 for v in synthetic_corpus)


def test_mask_is_exactly_what_render_drew(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = _by_name(synthetic_corpus)["c_all_four"]
    for frame_index in (0, 17, video.n_frames - 1):
        frame = video.render(frame_index)
        covered = np.zeros(frame.shape[:2], bool)
        for concept in video.concepts:
            mask = video.mask(concept, frame_index)
            drawn = (frame == PALETTE[concept]).all(axis=-1)
            np.testing.assert_array_equal(mask, drawn)
            covered |= mask
        assert (frame[~covered] == BACKGROUND).all()


def test_later_shape_hides_an_earlier_one_in_the_mask() -> None:
    video = SyntheticVideo(
        uri="unused.mp4",
        fps=10.0,
        n_frames=1,
        width=64,
        height=48,
        shapes=(
            ShapeSpec("red square", (32.0, 24.0), size=20),
            ShapeSpec("blue circle", (40.0, 24.0), size=12),
        ),
    )
    red, blue = video.mask("red square", 0), video.mask("blue circle", 0)
    assert blue.any() and not (red & blue).any()
    assert red.sum() + (blue & (np.abs(np.arange(64) - 32) < 10)[None, :]).sum() >= 19 * 19


def test_custom_spec_with_appearing_and_exiting_shape(tmp_path: Path) -> None:
    spec = VideoSpec(
        name="custom",
        duration_s=2.0,
        width=64,
        height=48,
        fps=10.0,
        shapes=(
            ShapeSpec("green triangle", (32.0, 24.0), size=16, appear_frame=5, disappear_frame=15),
            # Moves right 40 px/s from x=40: its left edge (x - 8) leaves the frame at t=0.8 s.
            ShapeSpec("blue circle", (40.0, 10.0), (40.0, 0.0), size=16),
        ),
    )
    (video,) = write_corpus(tmp_path, [spec])
    assert (video.n_frames, video.width, video.height) == (20, 64, 48)
    assert video.visible_frames("green triangle").tolist() == list(range(5, 15))
    assert video.visible_seconds("green triangle") == [(0.5, 1.5)]
    assert video.visible_frames("blue circle").tolist() == list(range(8))
    assert 0 < video.mask("blue circle", 7).sum() < video.mask("blue circle", 0).sum()
    assert Path(video.uri).exists()


def test_unknown_concept_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown concept"):
        ShapeSpec("purple hexagon", (0.0, 0.0))


def test_bad_inputs_are_written(bad_inputs: dict[str, Path]) -> None:
    assert set(bad_inputs) == {"empty", "text", "truncated", "zero_frames"}
    assert bad_inputs["empty"].stat().st_size == 0
    assert bad_inputs["text"].read_bytes().startswith(b"this is a text file")
    assert bad_inputs["truncated"].read_bytes()[4:8] == b"ftyp"
    assert bad_inputs["zero_frames"].stat().st_size > 0
    assert all(p.suffix == ".mp4" for p in bad_inputs.values())
