"""Incremental, resumable and concurrent index jobs on real processes, Ray and Lance tables.

Each kill test SIGKILLs a real `vidlake index` (its driver and the embedded Ray it started)
at some point of its run, reruns it, and compares the result with an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import psutil
import pytest

from vidlake.errors import counted
from vidlake.store.tables import IndexStore, table_uri

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
CONCEPTS = "red square,blue circle,green triangle,yellow star"
ARGS = ["--concepts", CONCEPTS, "--model", "synthetic:color", "--clip-seconds", "2",
        "--fps", "3", "--overlap", "0.5", "--max-side", "0"]  # fmt: skip


def index_cmd(sources: list[str], index: str, *extra: str) -> list[str]:
    return [VIDLAKE, "index", *sources, "--index", index, *ARGS, *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def snapshot(index: str) -> dict[str, list]:
    """The index's content with run-specific fields (times, run ids) left out, sorted."""
    store = IndexStore.open(index)
    videos = store.dataset("videos").to_table(
        columns=["video_id", "uri", "status", "n_clips", "n_masklets", "fingerprint"]
    )
    clips = store.dataset("clips").to_table(
        columns=["clip_id", "video_id", "clip_index", "start_s", "end_s", "frame_indices"]
    )
    masklets = store.dataset("masklets").to_table(
        columns=["masklet_id", "clip_id", "track_id", "concept", "frame_idx", "boxes", "masks"]
    )
    hits = store.dataset("concept_hits").to_table(
        columns=["concept", "clip_id", "n_objects", "max_score", "start_s", "end_s"]
    )

    def rows(table, key):
        return sorted((tuple(map(repr, r.values())) for r in table.to_pylist()), key=key)

    return {
        "videos": rows(videos, key=lambda r: r),
        "clips": rows(clips, key=lambda r: r),
        "masklets": rows(masklets, key=lambda r: r),
        "hits": rows(hits, key=lambda r: r),
    }


def assert_no_duplicates(index: str) -> None:
    store = IndexStore.open(index)
    for table, key in [("videos", "video_id"), ("clips", "clip_id"), ("masklets", "masklet_id")]:
        ids = store.dataset(table).to_table(columns=[key]).column(key).to_pylist()
        assert len(ids) == len(set(ids)), f"duplicate {key} in {table}"


def indexed_count(index: str) -> int:
    try:
        ds = lance.dataset(table_uri(str(Path(index).resolve()), "videos"))
    except (ValueError, OSError):
        return 0
    return ds.count_rows(filter="status = 'indexed'")


@pytest.fixture(scope="module")
def corpus(synthetic_corpus, tmp_path_factory) -> Path:
    """Six videos: the synthetic corpus twice, under other names."""
    folder = tmp_path_factory.mktemp("resume_corpus")
    for copy in range(2):
        for video in synthetic_corpus:
            shutil.copy(video.uri, folder / f"{copy}_{Path(video.uri).name}")
    return folder


@pytest.fixture(scope="module")
def reference_index(corpus, tmp_path_factory) -> str:
    """The corpus indexed by one uninterrupted run (tests that write to it work on a copy)."""
    index = str(tmp_path_factory.mktemp("reference") / "idx")
    proc = run(index_cmd([str(corpus)], index))
    assert proc.returncode == 0, proc.stderr
    return index


@pytest.fixture(scope="module")
def reference(reference_index) -> dict:
    """What the uninterrupted run wrote (see snapshot)."""
    return snapshot(reference_index)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILLs the job's whole session: its driver and the embedded Ray it started."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the job ended before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.05)


@pytest.mark.parametrize("kill_point", ["startup", "after_first_video", "after_half"])
def test_killed_driver_then_rerun_equals_an_uninterrupted_run(
    kill_point, corpus, reference, tmp_path
):
    index = str(tmp_path / "idx")
    proc = subprocess.Popen(
        index_cmd([str(corpus)], index),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    if kill_point == "startup":
        wait_for(lambda: (Path(index) / "videos.lance").exists(), proc)
    elif kill_point == "after_first_video":
        wait_for(lambda: indexed_count(index) >= 1, proc)
    else:
        wait_for(lambda: indexed_count(index) >= 3, proc)
    kill_tree(proc)
    done_before = indexed_count(index)
    # Nothing half-written is visible to a query between the kill and the rerun.
    if done_before:
        import vidlake

        hits = vidlake.open(index).search("red square", limit=None).to_pylist()
        store = IndexStore.open(index)
        committed = set(store.indexed_video_ids().to_pylist())
        assert all(h["video_id"] in committed for h in hits)

    rerun = run(index_cmd([str(corpus)], index))
    assert rerun.returncode == 0, rerun.stderr
    # Only what was not committed is redone.
    assert f"indexed {counted(6 - done_before, 'video')}," in rerun.stdout, rerun.stdout
    assert f"skipped {done_before} already indexed" in rerun.stdout
    assert_no_duplicates(index)
    assert snapshot(index) == reference


def test_killed_segment_actor_is_replaced_and_the_job_completes(corpus, reference, tmp_path):
    index = str(tmp_path / "idx")
    proc = subprocess.Popen(
        index_cmd([str(corpus)], index),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip

    def segment_workers() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "SegmentStage" in cmd and p.pid != proc.pid:
                found.append(p)
        return found

    wait_for(lambda: indexed_count(index) >= 1 and segment_workers(), proc)
    for worker in segment_workers():
        worker.kill()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "indexed 6 videos" in out
    assert_no_duplicates(index)
    assert snapshot(index) == reference


def test_rerun_indexes_changed_and_new_videos_and_prunes_deleted(synthetic_corpus, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    a, b, c = (Path(v.uri) for v in synthetic_corpus)
    shutil.copy(a, folder / "a.mp4")
    shutil.copy(b, folder / "b.mp4")
    index = str(tmp_path / "idx")
    assert run(index_cmd([str(folder)], index)).returncode == 0
    first = IndexStore.open(index).videos(columns=["uri", "n_clips"]).to_pylist()
    assert len(first) == 2

    shutil.copy(c, folder / "a.mp4")  # a.mp4 changed: now 4 s of other shapes
    (folder / "b.mp4").unlink()  # b.mp4 deleted
    shutil.copy(b, folder / "new.mp4")  # a new video
    proc = run(index_cmd([str(folder)], index, "--prune"))
    assert proc.returncode == 0, proc.stderr
    assert "indexed 2 videos" in proc.stdout and "pruned 1" in proc.stdout

    store = IndexStore.open(index)
    videos = {Path(r["uri"]).name: r for r in store.videos().to_pylist()}
    assert set(videos) == {"a.mp4", "new.mp4"}
    assert_no_duplicates(index)
    # a.mp4's rows are those of its new content: c_all_four has a yellow star, a had none.
    clips = store.dataset("clips").to_table(filter=f"video_id = '{videos['a.mp4']['video_id']}'")
    assert clips.num_rows == videos["a.mp4"]["n_clips"] < first[0]["n_clips"]
    import vidlake

    star = vidlake.open(index).search("yellow star", limit=None).column("video_uri").to_pylist()
    assert any(u.endswith("a.mp4") for u in star)

    # A misspelt (or unmounted) source with --prune: nothing is pruned, nothing indexed.
    before = snapshot(index)
    gone = run(index_cmd([str(folder), str(tmp_path / "vidz")], index, "--prune"))
    assert gone.returncode == 2, gone.stdout + gone.stderr
    lines = gone.stderr.strip().splitlines()
    assert len(lines) == 1 and "--prune" in lines[0] and "vidz" in lines[0], gone.stderr
    assert snapshot(index) == before


def test_a_manifest_line_naming_no_file_fails_alone(synthetic_corpus, tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{synthetic_corpus[0].uri}\nnot_here.mp4\n")
    index = str(tmp_path / "idx")
    proc = run(index_cmd([str(manifest)], index))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "indexed 1 video, failed 1" in proc.stdout
    videos = {Path(r["uri"]).name: r for r in IndexStore.open(index).videos().to_pylist()}
    assert videos[Path(synthetic_corpus[0].uri).name]["status"] == "indexed"
    assert videos["not_here.mp4"]["status"] == "failed"
    assert "not_here.mp4" in videos["not_here.mp4"]["error"]


def test_a_rerun_with_other_clip_settings_redoes_the_videos(corpus, reference_index, tmp_path):
    # A copy of the reference stands for a first run: copying is far cheaper than indexing.
    index = str(tmp_path / "idx")
    shutil.copytree(reference_index, index)
    video = str(corpus / "0_a_red_first_half.mp4")
    clips = IndexStore.open(index).dataset("clips").count_rows()

    same = run(index_cmd([video], index))
    assert "indexed 0 videos" in same.stdout and "skipped 1" in same.stdout, same.stdout
    # ARGS say --clip-seconds 2; the last one given wins.
    longer = run(index_cmd([video], index, "--clip-seconds", "4"))
    assert longer.returncode == 0, longer.stderr
    assert "indexed 1 video," in longer.stdout and "skipped 0" in longer.stdout, longer.stdout
    assert_no_duplicates(index)
    assert IndexStore.open(index).dataset("clips").count_rows() < clips


def test_two_jobs_on_disjoint_corpora_write_one_index_at_once(corpus, reference, tmp_path):
    halves = [tmp_path / "h0", tmp_path / "h1"]
    for h in halves:
        h.mkdir()
    for i, video in enumerate(sorted(corpus.iterdir())):
        shutil.copy(video, halves[i % 2] / video.name)
    index = str(tmp_path / "idx")
    procs = [
        subprocess.Popen(
            index_cmd([str(h)], index), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for h in halves
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err[-3000:]
        assert "indexed 3 videos" in out
    assert_no_duplicates(index)
    got = snapshot(index)
    assert len(got["videos"]) == 6
    # Same content as one job over the whole corpus, up to the videos' folder names.
    assert len(got["masklets"]) == len(reference["masklets"])
    assert len(got["clips"]) == len(reference["clips"])
