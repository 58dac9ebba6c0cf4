"""The Python API as the README shows it: `vidlake.index(...)` and `vidlake.open(...)`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import vidlake
from vidlake.errors import UsageError


def test_index_takes_the_cli_option_names_and_paths(synthetic_corpus, tmp_path):
    import ray

    folder = tmp_path / "videos"
    folder.mkdir()
    video = Path(synthetic_corpus[0].uri)  # a red square in its first half
    shutil.copy(video, folder / video.name)
    calls = []
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        summary = vidlake.index(
            folder, tmp_path / "idx", ["red square", "blue circle"], model="synthetic:color",
            clip_seconds=2, fps=2, overlap=0.5, max_side=0, actors=1,
            progress=lambda phase, done, total: calls.append((phase, done, total)),
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert summary.n_indexed == 1 and summary.n_failed == 0
    assert ("videos", 1, 1) in calls
    segment = [(done, total) for phase, done, total in calls if phase == "segment"]
    assert segment[-1] == (summary.n_clips, summary.n_clips) and summary.n_clips > 1
    assert all(done <= total for done, total in segment[1:])

    hits = vidlake.open(tmp_path / "idx").search("red square").to_pylist()
    assert hits and all(h["video_uri"] == str(folder / video.name) for h in hits)
    # max_side=0 kept the native size: the stored masks are the video's.
    masklets = vidlake.open(tmp_path / "idx").store.dataset("masklets").to_table().to_pylist()
    assert masklets[0]["masks"][0]["size"] == [
        synthetic_corpus[0].height,
        synthetic_corpus[0].width,
    ]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"concepts": None}, "concepts must be"),
        ({"fps": "6"}, "fps must be a number"),
        ({"clip_seconds": float("nan")}, "clip_seconds must be a finite number"),
        ({"actors": 1.5}, "^actors must be a whole number"),
        ({"storage_options": ["a=b"]}, "storage_options must be a dict"),
        ({"sources": [1]}, "sources must be paths"),
        ({"device": "tpu"}, "^device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"batch_objects": "yes"}, "batch_objects must be True, False or None"),
        ({"batch_concepts": True}, "^batch_concepts needs a SAM 3 model"),
        # tmp_path, the one source, is an empty folder: pruning on it could delete everything
        ({"prune": True}, "^prune needs every source listed"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_work(kwargs, words, tmp_path):
    args = {"sources": [str(tmp_path)], "index_uri": str(tmp_path / "idx"),
            "concepts": "red square", "model": "synthetic:color"} | kwargs  # fmt: skip
    with pytest.raises(UsageError, match=words):
        vidlake.index(**args)
    assert not (tmp_path / "idx").exists()


def test_exact_passes_mean_nothing_to_other_segmenters(tmp_path):
    from vidlake.config import IndexConfig

    config = IndexConfig(sources=(str(tmp_path),), index_uri=str(tmp_path / "idx"),
                         concepts=("red square",), model="synthetic:color",
                         batch_objects=False, batch_concepts=False)  # fmt: skip
    assert (config.batch_objects, config.batch_concepts) == (None, None)
    sam3 = IndexConfig(sources=(str(tmp_path),), index_uri=str(tmp_path / "idx"),
                       concepts=("red square",), batch_objects=False)  # fmt: skip
    assert (sam3.batch_objects, sam3.batch_concepts) == (False, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip_seconds": 1}, "overlap (default 1.0 s) must be less than clip_seconds 1 s; "
                              "pass e.g. overlap=0.5"),
        ({"clip_seconds": 4, "overlap": 5}, "overlap 5 s must be less than clip_seconds 4 s; "
                                            "pass e.g. overlap=2"),
        ({"overlap": -1}, "overlap must be >= 0, got -1"),
        ({"fps": float("nan")}, "fps must be a finite number, got nan"),
        ({"overlap": float("inf")}, "overlap must be a finite number, got inf"),
        ({"max_side": 8}, "max_side must be >= 16 (or 0: the native size), got 8"),
        ({"max_side": 2.0}, "max_side must be a whole number, got 2.0"),
        ({"actors_per_gpu": 0}, "actors_per_gpu must be in 1..16, got 0"),
        ({"actors": 0}, "actors must be >= 1, got 0"),
    ],
)  # fmt: skip
def test_option_errors_name_the_keywords(kwargs, message, tmp_path):
    """The API's messages name its keywords (the CLI's name its options: tests/jobs)."""
    with pytest.raises(UsageError) as caught:
        vidlake.index(str(tmp_path), tmp_path / "idx", "red square", model="synthetic:color",
                      **kwargs)  # fmt: skip
    assert str(caught.value) == message


def test_an_empty_folder_as_the_only_source_is_a_usage_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "._clip.mp4").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: skipped
    with pytest.raises(UsageError) as caught:
        vidlake.index(empty, tmp_path / "idx", "red square", model="synthetic:color")
    assert str(caught.value) == f"no video files under {empty} (1 hidden file skipped)"
    assert not (tmp_path / "idx").exists()


def test_prune_with_an_empty_folder_among_the_sources_is_a_usage_error(tmp_path, synthetic_corpus):
    # An empty folder may be an unmounted disk: pruning would delete every video indexed there.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=f"needs every source listed, and {empty} cannot be"):
        vidlake.index([empty, synthetic_corpus[0].uri], tmp_path / "idx", "red square",
                      model="synthetic:color", prune=True)  # fmt: skip
    assert not (tmp_path / "idx").exists()
