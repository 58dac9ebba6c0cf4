"""An index and its video in S3 (moto on 127.0.0.1): previews and POST /verify read the video
and write the index through the user's storage options, as `vidlake query` does."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vidlake.query.preview import concept_colors, write_preview
from vidlake.serve.app import build_app
from vidlake.synthetic.corpus import ShapeSpec, VideoSpec, write_video

# How a user writes them on the command line: object_store's aliases, no allow_http (it
# follows from the http:// endpoint), so every reader must resolve them before use.
USER_KEYS = {"aws_endpoint": "endpoint", "aws_access_key_id": "access_key_id",
             "aws_secret_access_key": "secret_access_key", "aws_region": "region"}  # fmt: skip


@pytest.fixture(scope="module")
def s3_index(moto_s3, tmp_path_factory):
    """(index URI, user options): a 2 s video with a red square and a green triangle, in S3,
    indexed into S3 for "red square" only (the triangle is left for POST /verify)."""
    import ray

    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import run_index

    spec = VideoSpec(
        name="s3_two_shapes",
        duration_s=2.0,
        shapes=(
            ShapeSpec("red square", (40.0, 40.0), (0.0, 0.0), 30),
            ShapeSpec("green triangle", (110.0, 70.0), (0.0, 0.0), 34),
        ),
    )
    video = write_video(spec, tmp_path_factory.mktemp("s3_video") / "two_shapes.mp4")
    bucket = moto_s3.bucket()
    (uri,) = moto_s3.upload([video.uri], bucket, "videos")
    options = {USER_KEYS[k]: v for k, v in moto_s3.options.items() if k in USER_KEYS}
    index = f"s3://{bucket}/idx"
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        summary = run_index(
            IndexConfig(
                sources=(uri,),
                index_uri=index,
                concepts=("red square",),
                model="synthetic:color",
                clip_seconds=2,
                fps=4,
                max_side=None,
                storage_options=options,
            )
        )
    finally:
        ray.shutdown()
    assert summary.n_indexed == 1
    return index, options


def _client(index: str, options: dict, verifier=None) -> TestClient:
    app = build_app(index, verifier=verifier, storage_options=options, refresh_s=0)
    return TestClient(app, raise_server_exceptions=False)


def _red_clip(client: TestClient) -> str:
    hits = client.get("/search", params={"q": "red square"}).json()["hits"]
    assert hits
    return hits[0]["clip_id"]


def _has_colour(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    pixels = set(image.convert("RGB").get_flattened_data())
    return any(max(abs(a - b) for a, b in zip(p, colour, strict=True)) <= 8 for p in pixels)


def test_preview_of_a_clip_whose_video_is_in_s3(s3_index, tmp_path):
    import vidlake

    index, options = s3_index
    client = _client(index, options)
    clip_id = _red_clip(client)
    colour = concept_colors(["red square"])["red square"]

    r = client.get(f"/clips/{clip_id}/preview.gif")
    assert r.status_code == 200, r.text
    assert _has_colour(Image.open(io.BytesIO(r.content)), colour)

    # The Python API (and `vidlake preview`, which calls it) decodes the same way.
    out = write_preview(vidlake.open(index, options), clip_id, tmp_path / "p.png")
    assert _has_colour(Image.open(out), colour)


def test_verify_on_an_index_in_s3_adds_the_hits(s3_index):
    from vidlake.serve.verifier import ClipSegmenter, LocalVerifier

    index, options = s3_index
    verifier = LocalVerifier(ClipSegmenter("synthetic:color", index, storage_options=options))
    client = _client(index, options, verifier)
    clip_id = _red_clip(client)
    r = client.post("/verify", json={"phrase": "green triangle", "clip_ids": [clip_id]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_clips_checked"] == 1 and body["n_clips_found"] == 1 and body["recorded"]
    after = client.get("/search", params={"q": "green triangle"}).json()
    assert after["indexed"] and [h["clip_id"] for h in after["hits"]] == [clip_id]


def test_serve_resolves_storage_options_on_the_driver(monkeypatch):
    # Replicas on other nodes may lack the driver's AWS variables: the config they are
    # started with carries the options resolved where `vidlake serve` runs.
    from vidlake.serve.deployments import ServeConfig

    for name in ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "driver-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "driver-secret")
    config = ServeConfig("s3://bucket/index", storage_options={"endpoint": "http://127.0.0.1:9"})
    assert config.storage_options == {
        "aws_endpoint": "http://127.0.0.1:9",
        "aws_access_key_id": "driver-key",
        "aws_secret_access_key": "driver-secret",
        "allow_http": "true",
    }


def test_source_video_byte_ranges_from_s3(s3_index):
    """/videos/{id}/source reads a video in S3 by ranged GETs (fsspec), as a local one."""
    import fsspec

    from vidlake.store.object_store import fsspec_options

    index, options = s3_index
    client = _client(index, options)
    hit = client.get("/search", params={"q": "red square"}).json()["hits"][0]
    uri = hit["video_uri"]
    assert uri.startswith("s3://")
    with fsspec.open(uri, "rb", **fsspec_options(uri, options)) as f:
        data = f.read()
    url = client.get(f"/videos/{hit['video_id']}").json()["source_url"]
    r = client.get(url, headers={"Range": "bytes=1000-2999"})
    assert r.status_code == 206 and r.content == data[1000:3000]
    assert r.headers["content-range"] == f"bytes 1000-2999/{len(data)}"
    r = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
