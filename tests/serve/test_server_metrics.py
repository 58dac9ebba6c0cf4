"""GET /metrics: the API's counters and gauges move with the requests it answers.

In-process (FastAPI's TestClient) over the session's served index; one app per module, as in
test_api.py, and a fresh app only where a test needs a verifier.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_text import has_sample, sample_sum

from vidlake.serve.app import build_app

TOKEN = "metrics-token"
REQUESTS = "vidlake_http_requests_total"
LATENCY_COUNT = "vidlake_http_request_duration_seconds_count"


@pytest.fixture(scope="module")
def client(served_index) -> TestClient:
    return TestClient(build_app(served_index.uri), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def locked(served_index) -> TestClient:
    return TestClient(build_app(served_index.uri, token=TOKEN), raise_server_exceptions=False)


def scrape(client: TestClient, **headers: str) -> str:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    return r.text


def test_requests_are_counted_by_route_template_method_and_status(client):
    before = scrape(client)
    assert client.get("/search", params={"q": "red square"}).status_code == 200
    assert client.get("/search", params={"q": "red square", "limit": 2}).status_code == 200
    assert client.get("/clips/0123456789abcdef").status_code == 404
    assert client.get("/clips/nope").status_code == 400
    assert client.head("/healthz").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    assert client.post("/search").status_code == 405  # a route, not this method
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)

    assert moved(REQUESTS, route="/search", method="GET", status="200") == 2
    assert moved(LATENCY_COUNT, route="/search", method="GET") == 2
    # The template, never the clip id: one series however many clips are asked for.
    assert moved(REQUESTS, route="/clips/{clip_id}", method="GET", status="404") == 1
    assert moved(REQUESTS, route="/clips/{clip_id}", method="GET", status="400") == 1
    assert moved(REQUESTS, route="/healthz", method="HEAD", status="200") == 1
    assert moved(REQUESTS, route="<unmatched>", method="GET", status="404") == 1
    assert moved(REQUESTS, route="/search", method="POST", status="405") == 1
    assert "0123456789abcdef" not in after
    # The scrape before this one counts too, as a request to /metrics.
    assert moved(REQUESTS, route="/metrics", method="GET", status="200") == 1
    assert moved("vidlake_http_server_errors_total") == 0
    # Outside Ray Serve the replica label is empty (Prometheus reads it as absent).
    assert 'replica=""' in after


def test_index_version_and_text_format(client, served_index):
    r = client.get("/metrics")
    # The 0.0.4 text format every Prometheus reads, unless OpenMetrics is asked for.
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    version = client.get("/healthz").json()["index_version"]
    assert version > 0
    assert sample_sum(r.text, "vidlake_index_version") == version
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    assert client.get("/metrics", params={"name[]": "x"}).status_code == 400


def test_metrics_need_the_token_and_refusals_are_counted(locked):
    assert locked.get("/metrics").status_code == 401
    assert locked.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    text = scrape(locked, Authorization=f"Bearer {TOKEN}")
    assert sample_sum(text, REQUESTS, route="/metrics", status="401") == 2
    assert locked.get("/").status_code == 200  # the page stays public; metrics do not


class BlockingVerifier:
    """A Verifier whose segmentation waits for `release`; `raises`: fails instead."""

    model_id = "synthetic:color"

    def __init__(self, raises: bool = False):
        self.raises = raises
        self.started = threading.Event()
        self.release = threading.Event()

    def segment_batches(self, phrase: str, batches: list[list[dict]]) -> list[dict]:
        if self.raises:
            raise RuntimeError("the segmenter is gone")
        self.started.set()
        assert self.release.wait(60)
        return []


def test_verify_queue_and_running_gauges(writable_index):
    verifier = BlockingVerifier()
    client = TestClient(build_app(writable_index.uri, verifier=verifier))
    clip = sorted(writable_index.truth("red square"))[0]
    body = {"phrase": "green triangle", "clip_ids": [clip]}
    results: list[int] = []

    def verify() -> None:
        results.append(client.post("/verify", json=body).status_code)

    first = threading.Thread(target=verify)
    first.start()
    assert verifier.started.wait(60)
    second = threading.Thread(target=verify)  # waits for the first: one at a time
    second.start()
    deadline = time.monotonic() + 30
    while sample_sum(scrape(client), "vidlake_verify_queue") != 1:
        assert time.monotonic() < deadline, "the second verification never queued"
        time.sleep(0.05)
    text = scrape(client)
    assert sample_sum(text, "vidlake_verify_running") == 1
    verifier.release.set()
    first.join(60)
    second.join(60)
    assert results == [200, 200]
    text = scrape(client)
    assert sample_sum(text, "vidlake_verify_queue") == 0
    assert sample_sum(text, "vidlake_verify_running") == 0
    assert sample_sum(text, REQUESTS, route="/verify", method="POST", status="200") == 2


def test_server_errors_are_counted(writable_index):
    client = TestClient(
        build_app(writable_index.uri, verifier=BlockingVerifier(raises=True)),
        raise_server_exceptions=False,
    )
    clip = sorted(writable_index.truth("red square"))[0]
    r = client.post("/verify", json={"phrase": "green triangle", "clip_ids": [clip]})
    assert r.status_code == 500
    text = scrape(client)
    assert sample_sum(text, "vidlake_http_server_errors_total", route="/verify") == 1
    assert sample_sum(text, REQUESTS, route="/verify", status="500") == 1
    assert sample_sum(text, "vidlake_verify_running") == 0  # released on the way out
    assert has_sample(text, LATENCY_COUNT)
