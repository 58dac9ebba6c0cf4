"""The index job's Ray metrics, read as Prometheus scrapes them: from the node's metrics agent.

The agent of the module's local Ray (conftest's `ray_local`) exports on a port Ray picks
(`ray.nodes()[0]["MetricsExportPort"]`, on 127.0.0.1 here); workers report to it every
`metrics_report_interval_ms`, set to 200 ms for this module (Ray's default is 10 s) through
Ray's environment override, before `ray_local` starts Ray.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.request

import pytest
from prometheus_text import sample_sum

from vidlake.pipeline.index_job import run_index
from vidlake.pipeline.metrics import JobMetrics

CONCEPTS = ("red square", "blue circle")
SCRAPE_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def metrics_port(request):
    """The metrics export port of the module's local Ray, started with a fast report interval."""
    import ray

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_metrics_report_interval_ms", "200")
        request.getfixturevalue("ray_local")
    (node,) = ray.nodes()
    return int(node["MetricsExportPort"])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def scrape_until(port: int, done) -> str:
    """The agent's text once DONE(text) holds (workers report on an interval), or the last."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        text = scrape(port)
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_the_index_job_reports_its_progress_through_ray_metrics(
    metrics_port, synthetic_corpus, synthetic_config, bad_inputs, tmp_path
):
    before = scrape(metrics_port)
    config = synthetic_config(synthetic_corpus, str(tmp_path / "idx"), CONCEPTS)
    # A video that cannot be probed: a failed video, and a clip failed before the model.
    config = dataclasses.replace(config, sources=(*config.sources, str(bad_inputs["truncated"])))
    summary = run_index(config)
    assert summary.n_indexed == len(synthetic_corpus) and summary.n_failed == 1
    assert summary.n_clips and summary.n_frames and summary.n_commits

    def moved(text: str, name: str, **labels) -> float:
        return sample_sum(text, name, **labels) - sample_sum(before, name, **labels)

    expected = {
        ("ray_vidlake_index_videos_total", ("status", "indexed")): summary.n_indexed,
        ("ray_vidlake_index_videos_total", ("status", "failed")): 1,
        ("ray_vidlake_index_clips_total", ()): summary.n_clips,
        ("ray_vidlake_index_frames_total", ()): summary.n_frames,
        ("ray_vidlake_index_commit_seconds_count", ()): summary.n_commits,
        ("ray_vidlake_segment_clip_seconds_count", ()): summary.n_clips,
        ("ray_vidlake_segment_frames_total", ()): summary.n_frames,
        ("ray_vidlake_segment_clip_failures_total", ("stage", "decode")): 1,
    }

    def arrived(text: str) -> bool:
        return all(
            moved(text, name, **dict([label] if label else [])) == value
            for (name, label), value in expected.items()
        )

    text = scrape_until(metrics_port, arrived)
    got = {key: moved(text, key[0], **dict([key[1]] if key[1] else [])) for key in expected}
    assert got == expected
    # Seconds in the model: what the job's summary measured, summed over the actors.
    model_s = moved(text, "ray_vidlake_segment_model_seconds_total")
    assert model_s == pytest.approx(summary.model_s, rel=1e-6)
    # No run: the gauges are 0, or gone from the agent's export.
    assert sample_sum(text, "ray_vidlake_index_segment_actors") == 0
    assert sample_sum(text, "ray_vidlake_index_videos_remaining") == 0


def test_the_running_jobs_gauges_stay_exported_until_it_finishes(metrics_port):
    """The agent forgets a gauge two report intervals after its last report (2 s at least):
    JobMetrics sets its gauges again every second while a run lasts."""
    metrics = JobMetrics()
    metrics.start(n_actors=3, n_videos=5)
    try:
        time.sleep(3.5)  # past the agent's gauge TTL
        text = scrape_until(
            metrics_port, lambda t: sample_sum(t, "ray_vidlake_index_segment_actors") == 3
        )
        assert sample_sum(text, "ray_vidlake_index_segment_actors") == 3
        assert sample_sum(text, "ray_vidlake_index_videos_remaining") == 5
        time.sleep(2.5)  # and still there later
        text = scrape(metrics_port)
        assert sample_sum(text, "ray_vidlake_index_segment_actors") == 3
    finally:
        metrics.finish()
    text = scrape_until(
        metrics_port, lambda t: sample_sum(t, "ray_vidlake_index_segment_actors") == 0
    )
    assert sample_sum(text, "ray_vidlake_index_segment_actors") == 0
