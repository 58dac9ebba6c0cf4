"""The index job on a multi-node Ray cluster (`ray.cluster_utils.Cluster`: a head and two
worker nodes as processes on this machine), including the loss of a worker node mid-job."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vidlake.config import IndexConfig
from vidlake.pipeline.index_job import run_index, segment_actor_resources
from vidlake.store.tables import IndexStore

CONCEPTS = ("red square", "blue circle", "green triangle", "yellow star")


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # The head runs no tasks: all work lands on the two workers, so removing one matters.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=2) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def config_for(sources: list[str], index: str, address: str) -> IndexConfig:
    return IndexConfig(
        sources=tuple(sources), index_uri=index, concepts=CONCEPTS, model="synthetic:color",
        clip_seconds=2.0, fps=3.0, overlap_s=0.5, max_side=None, address=address, num_actors=2,
    )  # fmt: skip


def test_losing_a_worker_node_mid_job_still_gives_the_full_index(
    cluster, synthetic_corpus, tmp_path
):
    c, workers = cluster
    folder = tmp_path / "videos"
    folder.mkdir()
    for copy in range(3):
        for video in synthetic_corpus:
            shutil.copy(video.uri, folder / f"{copy}_{Path(video.uri).name}")
    index = str(tmp_path / "idx")
    result: dict = {}

    def job() -> None:
        try:
            result["summary"] = run_index(config_for([str(folder)], index, c.address))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 300
    while not (Path(index) / "videos.lance").exists() or not _indexed(index):
        assert thread.is_alive(), result
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c.remove_node(workers[0])  # kills its raylet, its tasks and its actors
    thread.join(timeout=600)
    summary = result["summary"]
    assert summary.n_indexed == 9 and summary.n_failed == 0

    store = IndexStore.open(index)
    assert store.counts()["videos"] == 9
    for table, key in [("clips", "clip_id"), ("masklets", "masklet_id")]:
        ids = store.dataset(table).to_table(columns=[key]).column(key).to_pylist()
        assert len(ids) == len(set(ids))
    # Every video has all its clips: 2 s clips with 0.5 s overlap over 8, 6 and 4 s videos.
    n_clips = {r["uri"]: r["n_clips"] for r in store.videos().to_pylist()}
    per_video = store.dataset("clips").to_table(columns=["video_uri"]).column("video_uri")
    for uri, n in n_clips.items():
        assert per_video.to_pylist().count(uri) == n > 0


def _indexed(index: str) -> int:
    try:
        return len(IndexStore.open(index).indexed_video_ids())
    except Exception:  # noqa: BLE001 - the index may be mid-creation; poll again
        return 0


def test_cli_address_runs_the_job_on_an_existing_cluster(cluster, synthetic_corpus, tmp_path):
    import subprocess
    import sys

    import ray

    c, _ = cluster
    drivers_before = len(ray._private.state.jobs())
    index = str(tmp_path / "idx")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "vidlake"), "index", synthetic_corpus[2].uri,
         "--index", index, "--concepts", "red square", "--model", "synthetic:color",
         "--clip-seconds", "2", "--fps", "2", "--max-side", "0", "--address", c.address],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "indexed 1 video," in proc.stdout
    # The CLI's driver registered with this cluster's GCS instead of starting its own Ray.
    assert len(ray._private.state.jobs()) == drivers_before + 1


def test_segment_actors_share_each_gpu(synthetic_corpus, tmp_path):
    """--actors-per-gpu 2 on a node declaring one GPU (no real GPU needed: Ray schedules by the
    declared resource): two segment actors, each holding half of it, index the corpus."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=4, num_gpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address)
    try:
        config = replace(
            config_for([v.uri for v in synthetic_corpus], str(tmp_path / "idx"), c.address),
            num_actors=None, actors_per_gpu=2, device="cpu",
        )  # fmt: skip
        summary = run_index(config)
        actors = [a for a in list_actors(detail=True, limit=1000) if "SegmentStage" in a.class_name]
    finally:
        ray.shutdown()
        c.shutdown()
    assert summary.n_actors == 2
    assert summary.n_indexed == len(synthetic_corpus) and summary.n_failed == 0
    assert len(actors) == 2 and len({a.pid for a in actors}) == 2
    assert all(a.required_resources["GPU"] == 0.5 for a in actors)


def test_segment_actor_resources_split_each_gpu_without_oversubscribing_it():
    assert segment_actor_resources(0, 3) == ({"num_cpus": 0.5}, 1)
    resources, n_actors = segment_actor_resources(2, 3)
    assert n_actors == 6 and resources["num_cpus"] == 1
    assert 3 * resources["num_gpus"] <= 1 and resources["num_gpus"] > 0.333
    assert segment_actor_resources(4, 1) == ({"num_gpus": 1.0, "num_cpus": 1}, 4)
    # --device cuda on a cluster without GPUs yet (an autoscaler adds them): GPU-sized actors,
    # which is what makes the autoscaler add a GPU node.
    resources, n_actors = segment_actor_resources(0, 2, want_gpus=True)
    assert resources == {"num_gpus": 0.5, "num_cpus": 1} and n_actors == 2
