"""The index job end to end on a real local Ray and real Lance tables, with the colour
segmenter (exact ground truth) standing in for SAM 3."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import vidlake
from vidlake.pipeline.index_job import run_index
from vidlake.store.tables import IndexStore

CONCEPTS = ("red square", "blue circle", "green triangle", "yellow star", "purple hexagon")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


PRELOADS: list[float] = []  # when the job started loading the text encoder (epoch seconds)


@pytest.fixture(scope="module")
def indexed(ray_local, synthetic_corpus, synthetic_config, tmp_path_factory):
    import time

    import vidlake.query.text

    preload = vidlake.query.text.preload_text_encoder

    def recorded():
        PRELOADS.append(time.time())
        return preload()

    index_uri = str(tmp_path_factory.mktemp("index") / "idx")
    config = synthetic_config(synthetic_corpus, index_uri, CONCEPTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vidlake.query.text, "preload_text_encoder", recorded)
        summary = run_index(config)
    return config, summary


def test_text_encoder_loads_once_the_first_clip_is_back(indexed):
    # Not at the start, where on a small machine it slowed the segment actors' start.
    _, summary = indexed
    assert len(PRELOADS) == 1
    assert summary.model_first_start < PRELOADS[0]


def test_every_video_indexed_with_rows_in_every_table(indexed, synthetic_corpus):
    config, summary = indexed
    assert summary.n_indexed == len(synthetic_corpus)
    assert summary.n_failed == 0
    counts = IndexStore.open(config.index_uri).counts()
    assert counts["videos"] == len(synthetic_corpus)
    assert all(counts[t] > 0 for t in ("clips", "masklets", "concept_hits", "runs"))


def test_summary_measures_the_time_spent_in_the_model(indexed):
    _, summary = indexed
    # Every clip's time in the segmenter is summed; the span from the first clip into the
    # model to the last out of it lies within the job's wall time.
    assert summary.n_actors == 1
    assert 0 < summary.model_s <= summary.segment_span_s + 1e-6
    assert summary.segment_span_s < summary.wall_s
    assert 0 < summary.model_busy < 1


def test_masklets_match_ground_truth_after_rle_round_trip(indexed, synthetic_corpus):
    config, _ = indexed
    store = IndexStore.open(config.index_uri)
    clips = {r["clip_id"]: r for r in store.dataset("clips").to_table().to_pylist()}
    by_uri = {v.uri: v for v in synthetic_corpus}
    masklets = store.dataset("masklets").to_table().to_pylist()
    assert masklets
    checked = 0
    for m in masklets:
        clip = clips[m["clip_id"]]
        video = by_uri[clip["video_uri"]]
        assert m["concept"] in video.concepts
        for fi, rle, box in zip(m["frame_idx"], m["masks"], m["boxes"], strict=True):
            got = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]}).astype(bool)
            truth = video.mask(m["concept"], clip["frame_indices"][fi])
            assert got.shape == truth.shape
            assert iou(got, truth) >= 0.9, (m["concept"], clip["video_uri"], fi)
            ys, xs = np.nonzero(truth)
            assert abs(box[0] - xs.min()) <= 2 and abs(box[3] - (ys.max() + 1)) <= 2
            checked += 1
    assert checked > 50


def expected_clips(store: IndexStore, video, concept: str) -> set[str]:
    """Clips of VIDEO with at least one sampled frame where CONCEPT is fully drawn."""
    clips = store.dataset("clips").to_table(filter=f"video_uri = '{video.uri}'").to_pylist()
    return {
        c["clip_id"]
        for c in clips
        if any(video.mask(concept, f).sum() > 50 for f in c["frame_indices"])
    }


def test_query_returns_exactly_the_clips_showing_the_concept(indexed, synthetic_corpus):
    config, _ = indexed
    store = IndexStore.open(config.index_uri)
    expected = set()
    for video in synthetic_corpus:
        expected |= expected_clips(store, video, "red square")
    hits = vidlake.open(config.index_uri).search("red square", limit=None)
    assert set(hits.column("clip_id").to_pylist()) == expected
    assert len(expected) > 0
    # The red square of the first video leaves at 4 s: no hit may start after it.
    first = [h for h in hits.to_pylist() if "a_red_first_half" in h["video_uri"]]
    assert first and max(h["start_s"] for h in first) < 4.0
    assert all(h["n_objects"] == 1 and h["max_score"] > 0.5 for h in hits.to_pylist())


def test_absent_concept_returns_nothing(indexed):
    config, _ = indexed
    engine = vidlake.open(config.index_uri)
    assert engine.search("purple hexagon").num_rows == 0
    assert engine.search("dog").num_rows == 0


def test_rerun_skips_indexed_videos_and_adds_no_rows(indexed):
    config, _ = indexed
    store = IndexStore.open(config.index_uri)
    before = store.counts()
    summary = run_index(config)
    assert summary.n_indexed == 0 and summary.n_skipped == before["videos"]
    after = store.counts()
    assert {k: after[k] for k in after if k != "runs"} == {
        k: before[k] for k in before if k != "runs"
    }
    assert after["runs"] == before["runs"] + 1


def test_each_shape_has_one_track_over_the_whole_video(indexed, synthetic_corpus):
    config, _ = indexed
    store = IndexStore.open(config.index_uri)
    masklets = store.dataset("masklets").to_table(columns=["video_id", "concept", "track_id"])
    clips = store.dataset("clips").to_table(columns=["video_id", "video_uri"]).to_pylist()
    uri_of = {c["video_id"]: c["video_uri"] for c in clips}
    tracks: dict[tuple[str, str], set[str]] = {}
    for row in masklets.to_pylist():
        tracks.setdefault((uri_of[row["video_id"]], row["concept"]), set()).add(row["track_id"])
    expected = {(v.uri, c) for v in synthetic_corpus for c in v.concepts}
    assert set(tracks) == expected
    # Every shape spans several clips (2 s clips over 4-8 s videos) yet keeps one id.
    assert {k: len(v) for k, v in tracks.items()} == dict.fromkeys(expected, 1)
    assert len({t for ids in tracks.values() for t in ids}) == len(expected)


def test_a_long_video_is_decoded_in_tasks_of_a_few_clips(
    ray_local, synthetic_corpus, synthetic_config
):
    """A video's decode tasks are separate blocks: one task per DECODE_CLIPS_PER_TASK clips,
    not one task holding every frame of the video (as when Ray Data packed them together)."""
    import math

    from vidlake.pipeline.index_job import DECODE_CLIPS_PER_TASK, decode_plan, list_sources

    # The synthetic config with 1 s clips and no overlap: more clips per video
    config = dataclasses.replace(
        synthetic_config(synthetic_corpus[:1], "unused", CONCEPTS), clip_seconds=1.0, overlap_s=0.0
    )
    sources, _ = list_sources(config)
    decoded = decode_plan(config, sources, None).materialize()
    rows = decoded.take_all()
    assert all(not r["error"] for r in rows)
    n_tasks = math.ceil(len(rows) / DECODE_CLIPS_PER_TASK)
    assert n_tasks >= 2
    assert decoded.num_blocks() == n_tasks
    assert sorted(r["clip_index"] for r in rows) == list(range(len(rows)))


def test_the_driver_gets_each_block_as_soon_as_it_is_written(ray_local, tmp_path):
    """stream_rows hands over a block without waiting for the next one (iter_rows waits)."""
    import ray

    from vidlake.pipeline.index_job import stream_rows

    def hold_until_flag(row: dict, flag: str) -> dict:
        """Row 0 passes at once; row 1 waits (up to 20 s) for the driver to have seen row 0.
        (Defined here: workers cannot import test modules, so Ray pickles it by value.)"""
        import os
        import time

        if row["i"] == 1:
            deadline = time.time() + 20
            while not os.path.exists(flag) and time.time() < deadline:
                time.sleep(0.05)
        return {**row, "flag_seen": os.path.exists(flag)}

    flag = tmp_path / "driver-saw-row-0"
    ds = ray.data.from_items([{"i": 0}, {"i": 1}], override_num_blocks=2).map(
        hold_until_flag, fn_kwargs={"flag": str(flag)}, num_cpus=0.25
    )
    rows = []
    for row in stream_rows(ds):
        if row["i"] == 0:
            flag.touch()
        rows.append(row)
    assert [r["i"] for r in rows] == [0, 1]
    assert rows[1]["flag_seen"], "row 0 reached the driver only after row 1 was produced"


def test_the_clip_total_is_estimated_from_the_videos_seen_then_exact():
    from vidlake.pipeline.index_job import ClipTotal

    total = ClipTotal(n_videos=4)
    assert total.total() == 0  # no clip in yet: unknown
    total.see("a", 6)
    assert total.total() == 24  # 6 seen + 3 unseen videos at 6 each
    total.see("a", 6)  # a video's later clips change nothing
    total.see("b", 2)
    assert total.total() == 8 + 2 * 4
    total.see("c", 1)
    total.see("d", 9)
    assert total.total() == 18  # every video seen: exact


def test_a_segmenter_that_cannot_load_ends_the_job_in_one_line(tmp_path, synthetic_corpus):
    """Raised in the segment actors, it used to be 300 lines of Ray tracebacks and exit 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "broken_plugin.py").write_text(
        "class Broken:\n"
        "    model_id = 'broken'\n"
        "    def __init__(self, **kwargs):\n"
        "        raise RuntimeError('weights: disk on fire')\n"
        "    def segment(self, frames, concepts):\n"
        "        return []\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "vidlake"), "index", synthetic_corpus[0].uri,
         "--index", str(tmp_path / "idx"), "-c", "red square", "--model", "broken_plugin:Broken"],
        capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    # Ray's own line about actor arguments (README) may precede it; nothing else does.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "core_worker" not in ln]
    assert lines == [
        "error: cannot load the segmenter broken_plugin:Broken: RuntimeError: weights: disk on fire"
    ]
    assert not proc.stdout.strip()


def test_an_address_no_cluster_answers_is_a_one_line_error(tmp_path, synthetic_corpus):
    """Ray retries it for minutes, printing a C++ warning every 40 s."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from vidlake.errors import UsageError
    from vidlake.pipeline.index_job import check_address

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_address(f"127.0.0.1:{port}")  # something answers: left to Ray
        check_address(f"ray://127.0.0.1:{port}")
    check_address("auto")
    with pytest.raises(UsageError, match=f"--address ray://127.0.0.1:{port}: no Ray cluster"):
        check_address(f"ray://127.0.0.1:{port}")  # closed now
    vidlake = str(Path(sys.executable).parent / "vidlake")
    for command in (
        ["index", synthetic_corpus[0].uri, "-c", "red square", "--model", "synthetic:color"],
        ["serve"],
    ):
        index = tmp_path / "idx" if command[0] == "index" else tmp_path / "served"
        if command[0] == "serve":
            IndexStore.create(str(index))
        proc = subprocess.run(
            [vidlake, *command, "--index", str(index), "--address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in lines[0]
    assert not (tmp_path / "idx").exists()  # checked before the index is created


def test_ctrl_c_keeps_the_finished_videos_and_records_the_run(
    ray_local, synthetic_corpus, synthetic_config, tmp_path
):
    from vidlake.store.maintenance import list_runs

    config = synthetic_config(synthetic_corpus, str(tmp_path / "idx"), CONCEPTS)

    def ctrl_c_after_the_first_video(phase, done, total):
        if phase == "videos" and done == 1:
            raise KeyboardInterrupt  # where the driver waits on the stream, as Ctrl-C lands

    with pytest.raises(KeyboardInterrupt):
        run_index(config, progress=ctrl_c_after_the_first_video)
    store = IndexStore.open(config.index_uri)
    run = list_runs(store).to_pylist()[0]
    assert run["status"] == "interrupted" and run["n_videos_indexed"] >= 1
    committed = store.dataset("videos").to_table(filter="status = 'indexed'").num_rows
    assert committed == run["n_videos_indexed"]  # queued videos were committed, not lost
    again = run_index(config)
    assert again.n_skipped == committed
    assert again.n_indexed == len(synthetic_corpus) - committed


def test_a_source_that_lists_videos_now_loses_its_failed_row(
    ray_local, synthetic_corpus, synthetic_config, tmp_path
):
    """A missing path or an empty folder is a failed placeholder row under the source as
    typed; once it lists videos they are indexed under their own ids, and the placeholder
    used to stay among the index's failures for good."""
    import dataclasses
    import shutil

    later, empty = tmp_path / "later.mp4", tmp_path / "empty"
    empty.mkdir()
    sources = (str(later), str(empty), synthetic_corpus[0].uri)
    config = dataclasses.replace(
        synthetic_config(synthetic_corpus, str(tmp_path / "idx"), CONCEPTS), sources=sources
    )

    def failed() -> set[str]:
        videos = IndexStore.open(config.index_uri).videos().to_pylist()
        return {v["uri"] for v in videos if v["status"] == "failed"}

    assert run_index(config).n_failed == 2
    assert failed() == {str(later), str(empty)}
    shutil.copy(synthetic_corpus[1].uri, later)
    shutil.copy(synthetic_corpus[2].uri, empty / "v.mp4")
    again = run_index(config)
    assert (again.n_failed, again.n_indexed, again.n_skipped) == (0, 2, 1)
    assert failed() == set()


def test_bad_inputs_are_not_retried_until_they_change(
    ray_local, synthetic_corpus, synthetic_config, bad_inputs, tmp_path
):
    """A file that is not a video fails once; reruns leave it (still listed among the
    failures) until its fingerprint changes, when it is tried again."""
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_corpus[0].uri, folder / "good.mp4")
    empty, text = folder / "empty.ts", folder / "text.mxf"
    shutil.copy(bad_inputs["empty"], empty)
    shutil.copy(bad_inputs["text"], text)
    config = dataclasses.replace(
        synthetic_config(synthetic_corpus, str(tmp_path / "idx"), CONCEPTS), sources=(str(folder),)
    )
    first = run_index(config)
    assert (first.n_indexed, first.n_failed) == (1, 2)
    assert {uri for uri, _ in first.failures} == {str(empty), str(text)}
    again = run_index(config)
    assert (again.n_indexed, again.n_failed, again.n_failed_unchanged) == (0, 0, 2)
    failed = vidlake.open(config.index_uri).info().failed
    assert {uri for uri, _ in failed} == {str(empty), str(text)}
    shutil.copy(synthetic_corpus[1].uri, text)  # now a video (named .mxf, an MP4 inside)
    changed = run_index(config)
    assert (changed.n_indexed, changed.n_failed, changed.n_failed_unchanged) == (1, 0, 1)
    assert [uri for uri, _ in vidlake.open(config.index_uri).info().failed] == [str(empty)]
