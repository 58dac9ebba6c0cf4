"""The HTTP API in-process (FastAPI's TestClient): exact answers over the synthetic index."""

from __future__ import annotations

import io
from importlib import resources

import lance
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils

from vidlake.query.preview import concept_colors
from vidlake.serve.app import MAX_BODY_BYTES, MAX_LIMIT, build_app

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def client(served_index) -> TestClient:
    return TestClient(build_app(served_index.uri), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def locked(served_index) -> TestClient:
    return TestClient(build_app(served_index.uri, token=TOKEN), raise_server_exceptions=False)


def _clip_ids(body: dict) -> set[str]:
    return {h["clip_id"] for h in body["hits"]}


def test_search_returns_exactly_the_clips_showing_the_concept(client, served_index):
    r = client.get("/search", params={"q": "Red  Square", "limit": MAX_LIMIT})
    assert r.status_code == 200
    body = r.json()
    assert body["indexed"] and body["phrase"] == "red square"
    assert _clip_ids(body) == served_index.truth("red square")
    assert {h["video_name"] for h in body["hits"]} == {"a_red_first_half.mp4", "c_all_four.mp4"}
    scores = [h["max_score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    for hit in body["hits"]:
        assert hit["clip_start_s"] <= hit["start_s"] <= hit["end_s"] <= hit["clip_end_s"]
    assert len(client.get("/search", params={"q": "red square", "limit": 2}).json()["hits"]) == 2


def test_search_filters_co_occurrence_and_time(client, served_index):
    both = served_index.truth("red square") & served_index.truth("blue circle")
    r = client.get("/search", params={"q": "red square", "with": "blue circle", "limit": 100})
    assert _clip_ids(r.json()) == both
    r = client.get("/search", params={"q": "blue circle", "start_s": 5, "limit": 100})
    hits = r.json()["hits"]
    assert hits and all(h["end_s"] >= 5 for h in hits)
    assert _clip_ids(r.json()) < served_index.truth("blue circle")


def test_track_queries_and_stats(client):
    """The red square: 0-4 s in a_red_first_half and c_all_four (first and last sampled frames
    0 and 3.75 s at 4 fps); the blue circle from 0 s in both."""
    body = client.get("/search", params={"q": "red square", "min_duration": 3.5}).json()
    assert body["kind"] == "tracks"
    assert {(h["video_name"], h["start_s"], h["end_s"]) for h in body["hits"]} == {
        ("a_red_first_half.mp4", 0.0, 3.75),
        ("c_all_four.mp4", 0.0, 3.75),
    }
    params = [("q", "red square"), ("then", "blue circle"), ("within", 0.5), ("order", "time")]
    body = client.get("/search", params=params).json()
    assert body["kind"] == "sequences"
    assert [(h["video_name"], h["concepts"], h["starts_s"]) for h in body["hits"]] == [
        ("a_red_first_half.mp4", ["red square", "blue circle"], [0.0, 0.0]),
        ("c_all_four.mp4", ["red square", "blue circle"], [0.0, 0.0]),
    ]
    body = client.get("/search", params={"q": "red square", "region": "0.5,0,1,1"}).json()
    assert body["kind"] == "tracks" and body["hits"] == []
    body = client.get("/search", params={"q": "red square", "same_frame": "true"}).json()
    assert body["kind"] == "frames" and len(body["hits"]) == 2
    assert body["hits"][0]["times_s"] == [i / 4 for i in range(16)]
    stats = client.get("/stats", params={"q": "red square"}).json()
    assert stats["totals"] == {"videos": 2, "screen_time_s": 7.5, "tracks": 2, "max_at_once": 1}
    assert {v["video_name"] for v in stats["videos"]} == {"a_red_first_half.mp4", "c_all_four.mp4"}
    r = client.get("/stats", params={"q": "green triangle"})
    assert r.status_code == 400 and "not an indexed concept" in r.json()["detail"]


def test_repeated_video_globs_are_all_kept(client, served_index):
    def videos(*globs: str) -> set[str]:
        params = [("q", "blue circle"), ("limit", MAX_LIMIT), *(("video", g) for g in globs)]
        r = client.get("/search", params=params)
        assert r.status_code == 200, r.text
        return {h["video_name"] for h in r.json()["hits"]}

    assert videos("a_red*") == {"a_red_first_half.mp4"}
    assert videos("a_red*", "c_all*") == {"a_red_first_half.mp4", "c_all_four.mp4"}
    assert client.get("/search", params={"q": "red", "video": "x" * 201}).status_code == 422


def test_phrase_not_indexed_gives_candidates_not_hits(client):
    body = client.get("/search", params={"q": "green triangle"}).json()
    assert not body["indexed"]
    assert {c["concept"] for c in body["candidates"]} == {"red square", "blue circle"}
    assert body["hits"] and all(h["match"] == "candidate" for h in body["hits"])


def test_concepts_count_the_clips_of_each_concept(client, served_index):
    body = client.get("/concepts").json()
    counts = {c["concept"]: c["n_clips"] for c in body["concepts"]}
    assert counts == {c: len(served_index.truth(c)) for c in ("red square", "blue circle")}


def test_clip_masklets_thumbnail_and_preview(client, served_index):
    clip_id = sorted(served_index.truth("red square") & served_index.truth("blue circle"))[0]
    body = client.get(f"/clips/{clip_id}").json()
    clip = body["clip"]
    assert clip["clip_id"] == clip_id and clip["video_name"].endswith(".mp4")
    assert {m["concept"] for m in body["masklets"]} == {"red square", "blue circle"}
    for m in body["masklets"]:
        assert clip["start_s"] <= m["first_s"] <= m["last_s"] <= clip["end_s"]
        assert m["frames"] and m["score"] == pytest.approx(1.0)
        for frame in m["frames"]:
            x0, y0, x1, y1 = frame["box"]
            assert 0 <= x0 < x1 <= clip["width"] and 0 <= y0 < y1 <= clip["height"]
            assert m["first_s"] <= frame["time_s"] <= m["last_s"]

    assert all("mask" not in f for m in body["masklets"] for f in m["frames"])

    # masks=1 adds each frame's COCO RLE: the synthetic video's drawn shape, near exactly.
    clips = lance.dataset(f"{served_index.uri}/clips.lance").to_table(
        columns=["frame_indices"], filter=f"clip_id = '{clip_id}'"
    )
    frame_indices = clips.column("frame_indices")[0].as_py()
    video = served_index.videos[clip["video_uri"]]
    with_masks = client.get(f"/clips/{clip_id}", params={"masks": 1})
    assert with_masks.status_code == 200, with_masks.text
    for m in with_masks.json()["masklets"]:
        for frame in m["frames"]:
            rle = frame["mask"]
            assert rle["size"] == [clip["height"], clip["width"]]
            assert isinstance(rle["counts"], str)
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            truth = video.mask(m["concept"], frame_indices[frame["frame"]])
            overlap = (mask.astype(bool) & truth).sum() / (mask.astype(bool) | truth).sum()
            assert overlap > 0.8, (m["concept"], frame["frame"], overlap)

    thumb = client.get(f"/clips/{clip_id}/thumbnail.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (clip["width"], clip["height"])

    gif = client.get(f"/clips/{clip_id}/preview.gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    image = Image.open(io.BytesIO(gif.content))
    assert image.n_frames == clip["n_frames"]
    # Both objects are drawn: their boxes' outlines are in their concept's colour.
    pixels = set(image.convert("RGB").get_flattened_data())
    colours = concept_colors(["red square", "blue circle"])
    assert len(set(colours.values())) == 2
    for concept in ("red square", "blue circle"):
        colour = colours[concept]
        assert any(max(abs(a - b) for a, b in zip(p, colour, strict=True)) <= 8 for p in pixels)


def test_health_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/search",
        "/concepts",
        "/clips/{clip_id}",
        "/clips/{clip_id}/preview.gif",
        "/clips/{clip_id}/thumbnail.jpg",
        "/healthz",
        "/verify",
    ):
        assert path in paths


@pytest.mark.parametrize(
    "url, status",
    [
        ("/search", 422),  # no q
        ("/search?q=", 422),
        ("/search?q=red+square&min_score=abc", 422),
        ("/search?q=red+square&limit=ten", 422),
        ("/search?q=red+square&order=random", 422),
        ("/search?q=red+square&start_s=-1", 422),
        ("/search?q=red+square&colour=red", 400),  # unknown parameter
        ("/search?q=%21%21%21", 400),  # no words
        ("/search?q=" + "a" * 201, 422),
        ("/search?q=red+square&within=2", 400),  # no `then`
        ("/search?q=red+square&region=0,0,2,1", 400),
        ("/search?q=red+square&min_duration=-1", 400),
        ("/search?q=red+square&start_s=5&end_s=1", 400),
        ("/clips/0123456789abcdef", 404),  # well-formed, not in the index
        ("/clips/0123456789abcdef/thumbnail.jpg", 404),
        ("/clips/0123456789abcdef/preview.gif", 404),
        ("/clips/0123456789ABCDEF", 400),
        ("/clips/nope", 400),
        ("/clips/0123456789abcdef?x=1", 400),
    ],
)
def test_bad_input_is_a_4xx_with_a_json_body(client, url, status):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "params, detail",
    [
        ({"within": 2}, "within needs then, the phrase that follows"),
        ({"min_duration": -1}, "min_duration must be >= 0 seconds, got -1"),
        (
            {"region": "0,0,2,1"},
            "region 0,0,2,1 is outside the frame: each value must be from 0 to 1 "
            "(fractions of the width and height)",
        ),
        (
            {"then": "green dragon", "within": 1},
            "then 'green dragon' is not an indexed concept (nearest: blue circle, red square)",
        ),
        ({"start_s": 5, "end_s": 1}, "start_s 5.0 is after end_s 1.0"),
        ({"with": ""}, "with '' has no words to search for"),
        ({"with": ["blue circle", "?!"]}, "with '?!' has no words to search for"),
    ],
)
def test_a_400_names_the_http_parameters(client, params, detail):
    # Query checks the same, named as its Python arguments (with_concepts, between)
    r = client.get("/search", params={"q": "red square", **params})
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == detail


@pytest.mark.parametrize(
    "path",
    [
        "/clips/../../../../etc/passwd",
        "/clips/..%2F..%2F..%2Fetc%2Fpasswd",
        "/clips/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail.jpg",
        "/clips/....//....//etc/passwd/preview.gif",
        "/clips/0123456789abcdef%00/thumbnail.jpg",
        "/clips/%2Fetc%2Fpasswd",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/index.html/../../app.py",
        "/videos.lance/_versions",
    ],
)
def test_path_traversal_reads_no_file(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "root:" not in r.text and "build_app" not in r.text


@pytest.mark.parametrize("name", ["min_score", "min_presence", "start_s", "end_s"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e309"])
def test_non_finite_numbers_are_refused_by_name(client, name, value):
    r = client.get("/search", params={"q": "red square", name: value})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [
        {"loc": ["query", name], "msg": "Input should be a finite number", "type": "finite_number"}
    ]


def test_page_and_health_answer_head_requests(client):
    for path in ("/", "/healthz", "/static/favicon.svg"):
        r = client.head(path)
        assert r.status_code == 200 and not r.content, path


def test_limit_over_the_bound_is_refused(client):
    r = client.get("/search", params={"q": "red square", "limit": MAX_LIMIT + 1})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_token_is_needed_on_every_api_request(locked):
    for path in ("/search?q=red+square", "/concepts", "/healthz", "/openapi.json"):
        assert locked.get(path).status_code == 401
        r = locked.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert locked.get(path, headers={"Authorization": TOKEN}).status_code == 401
        assert locked.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # The scheme is case-insensitive (RFC 7235), the token is not.
        assert locked.get(path, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert locked.get(path, headers={"Authorization": f"BEARER {TOKEN}"}).status_code == 200
        r = locked.get(path, headers={"Authorization": f"bearer {TOKEN.upper()}"})
        assert r.status_code == 401
    assert locked.post("/verify", json={"phrase": "x"}).status_code == 401
    # The page itself (static, no index data) loads without it, and asks for the token.
    page = locked.get("/")
    assert page.status_code == 200 and 'id="token-form"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_request_bodies_are_bounded(client):
    big = b'{"phrase": "' + b"a" * MAX_BODY_BYTES + b'"}'
    r = client.post("/verify", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    r = client.post("/verify", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_verify_is_refused_without_a_verifier_and_validates_its_body(client):
    assert client.post("/verify", json={"phrase": "green triangle"}).status_code == 403
    for body in (
        {},
        {"phrase": ""},
        {"phrase": "x", "max_clips": 10_000},
        {"phrase": "x", "clip_ids": ["../../etc/passwd"]},
        {"phrase": "x", "path": "/etc/passwd"},
    ):
        r = client.post("/verify", json=body)
        assert r.status_code == 422, body


def test_verify_adds_hits_that_search_then_finds(writable_index):
    from vidlake.serve.verifier import ClipSegmenter, LocalVerifier

    verifier = LocalVerifier(ClipSegmenter("synthetic:color", writable_index.uri))
    client = TestClient(build_app(writable_index.uri, verifier=verifier))
    everything = client.get("/search", params={"q": "blue circle", "limit": 1000}).json()
    others = client.get("/search", params={"q": "red square", "limit": 1000}).json()
    candidates = sorted(_clip_ids(everything) | _clip_ids(others))
    r = client.post("/verify", json={"phrase": "Green Triangle", "clip_ids": candidates})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = writable_index.truth("green triangle") & set(candidates)
    assert body["model_id"] == "synthetic:color" and not body["indexed"] and body["recorded"]
    assert body["n_clips_checked"] == len(candidates)
    assert expected and body["n_clips_found"] == len(expected)
    after = client.get("/search", params={"q": "green triangle", "limit": 1000}).json()
    assert after["indexed"] and after["verified_on"] == len(candidates)
    assert _clip_ids(after) == expected
    # Again: clips with hits already are skipped (verify.clip_rows), nothing is duplicated.
    again = client.post("/verify", json={"phrase": "green triangle", "clip_ids": candidates})
    assert again.json()["n_clips_checked"] == len(candidates) - len(expected)
    assert again.json()["n_clips_found"] == 0
    assert len(client.get("/search", params={"q": "green triangle"}).json()["hits"]) == len(
        expected
    )
    # A phrase of the vocabulary needs no verification.
    assert client.post("/verify", json={"phrase": "red square"}).json()["indexed"]


def test_a_server_sees_hits_verified_elsewhere(writable_index):
    """Verification appends to masklets, concept_hits and concepts, never to videos: another
    replica (or `vidlake query --verify`) must still move this server's snapshot on."""
    import time

    from vidlake.serve.verifier import ClipSegmenter, LocalVerifier

    verifier = LocalVerifier(ClipSegmenter("synthetic:color", writable_index.uri))
    writer = TestClient(build_app(writable_index.uri, verifier=verifier))
    reader = TestClient(build_app(writable_index.uri, refresh_s=0.05))
    assert not reader.get("/search", params={"q": "green triangle"}).json()["indexed"]
    clips = sorted(writable_index.truth("red square") | writable_index.truth("blue circle"))
    r = writer.post("/verify", json={"phrase": "green triangle", "clip_ids": clips})
    assert r.status_code == 200 and r.json()["recorded"], r.text
    # A phrase the snapshot does not know makes it check for a newer one at once.
    body = reader.get("/search", params={"q": "green triangle", "limit": 1000}).json()
    assert body["indexed"] and body["verified_on"] == len(clips)
    assert _clip_ids(body) == writable_index.truth("green triangle") & set(clips)

    # Any other request moves it on in the background, within refresh_s.
    other = TestClient(build_app(writable_index.uri, refresh_s=0.05))
    writer.post("/verify", json={"phrase": "yellow star", "clip_ids": clips})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = {c["concept"] for c in other.get("/concepts").json()["concepts"]}
        if "yellow star" in listed:
            break
        time.sleep(0.1)
    assert "yellow star" in listed


def test_verify_of_unknown_clips_is_a_404_and_records_nothing(writable_index):
    from vidlake.serve.verifier import ClipSegmenter, LocalVerifier

    verifier = LocalVerifier(ClipSegmenter("synthetic:color", writable_index.uri))
    client = TestClient(build_app(writable_index.uri, verifier=verifier))
    known = sorted(writable_index.truth("red square"))[0]
    r = client.post("/verify", json={"phrase": "red", "clip_ids": ["0000000000000000", known]})
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "no clip 0000000000000000 in this index"
    # No clip to check: the phrase stays unverified, its nearest concepts still answer it.
    r = client.post("/verify", json={"phrase": "red", "clip_ids": []})
    assert r.status_code == 200, r.text
    assert r.json()["n_clips_checked"] == 0 and not r.json()["recorded"]
    after = client.get("/search", params={"q": "red"}).json()
    assert not after["indexed"] and after["candidates"] and after["hits"]


def test_page_files_are_package_data():
    static = resources.files("vidlake.serve").joinpath("static")
    names = {p.name for p in static.iterdir()}
    assert names >= {"index.html", "app.js", "masks.js", "app.css", "favicon.svg"}


@pytest.mark.parametrize(
    ("replicas", "verify", "cpus", "gpus", "embedded", "expected"),
    [
        (1, True, 2, 0, True, (1.0, 1.0)),  # fits: whole CPUs
        (2, True, 2, 0, True, (0.6666, 0.6666)),  # 3 wanted on 2: scaled to fit
        (3, False, 2, 0, True, (0.6666, 0.0)),
        (2, True, 2, 1, True, (1.0, 0.0)),  # the segmenter takes the GPU, no CPU
        (4, True, 2, 0, False, (1.0, 1.0)),  # a cluster's autoscaler adds nodes
    ],
)
def test_replica_cpus_fit_the_embedded_ray(replicas, verify, cpus, gpus, embedded, expected):
    from vidlake.serve.deployments import ServeConfig, replica_cpus

    config = ServeConfig(
        index_uri="idx", replicas=replicas, verify_model="synthetic:color" if verify else None
    )
    api, segmenter = replica_cpus(config, cpus, gpus, embedded)
    assert (api, segmenter) == expected
    assert not embedded or replicas * api + segmenter <= cpus


def test_candidates_get_the_filters_hits_get(client, served_index):
    def search(**params) -> list[dict]:
        r = client.get("/search", params={"q": "green triangle", "limit": MAX_LIMIT, **params})
        assert r.status_code == 200, r.text
        assert not r.json()["indexed"]
        return r.json()["hits"]

    everything = search()
    assert everything and {h["match"] for h in everything} == {"candidate"}
    assert search(min_count=2) == []
    by_time = search(order="time", video="c_all*")
    assert by_time and {h["video_name"] for h in by_time} == {"c_all_four.mp4"}
    assert [h["start_s"] for h in by_time] == sorted(h["start_s"] for h in by_time)
    both = served_index.truth("red square") & served_index.truth("blue circle")
    assert {h["clip_id"] for h in search(**{"with": "red square"})} == (
        served_index.truth("red square") | both
    )
    assert len(search(limit=2)) == 2


def test_a_with_phrase_nobody_indexed_is_a_400_naming_with(client):
    for q in ("red square", "green triangle"):
        r = client.get("/search", params={"q": q, "with": "Purple Thing"})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert detail.startswith("with 'purple thing' is not an indexed concept (nearest: "), detail


def test_a_phrase_not_indexed_says_how_to_index_it_and_hits_name_their_models(client, served_index):
    body = client.get("/search", params={"q": "green triangle"}).json()
    assert not body["indexed"] and body["add_command"].startswith("vidlake index ")
    assert "green triangle" in body["add_command"]
    indexed = client.get("/search", params={"q": "red square"}).json()
    assert indexed["add_command"] is None
    # One model indexed every video: one entry, counting the page's hits.
    assert list(indexed["models"].values()) == [len(indexed["hits"])]
