"""GET /videos/{id} and /videos/{id}/source in-process: byte ranges of the indexed source
video (206, 416), a video gone from its URI (404), the token or a signed URL, and /search's
pages."""

from __future__ import annotations

from pathlib import Path

import lance
import pytest
from fastapi.testclient import TestClient

from vidlake.serve.app import build_app
from vidlake.serve.media import SOURCE_URL_TTL_S, SourceSigner, parse_range

TOKEN = "video-token"


@pytest.fixture(scope="module")
def client(served_index) -> TestClient:
    return TestClient(build_app(served_index.uri, refresh_s=0), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def locked(served_index) -> TestClient:
    app = build_app(served_index.uri, token=TOKEN, refresh_s=0)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def video(client) -> dict:
    """The /videos/{id} body of the first red-square hit's video."""
    hit = client.get("/search", params={"q": "red square", "limit": 1}).json()["hits"][0]
    r = client.get(f"/videos/{hit['video_id']}")
    assert r.status_code == 200, r.text
    return r.json()


def test_video_names_its_source_and_where_its_bytes_are(video, served_index):
    synthetic = served_index.videos[video["video_uri"]]
    assert video["video_name"] == Path(video["video_uri"]).name
    assert (video["width"], video["height"], video["fps"]) == (
        synthetic.width,
        synthetic.height,
        synthetic.fps,
    )
    assert video["duration_s"] == pytest.approx(synthetic.n_frames / synthetic.fps, abs=0.1)
    # Without a token, the URL is not signed.
    assert video["source_url"] == f"/videos/{video['video_id']}/source"
    assert video["source_expires"] is None


def test_source_answers_byte_ranges_with_206(client, video):
    data = Path(video["video_uri"]).read_bytes()
    size = len(data)
    url = video["source_url"]
    for header, (first, last) in (
        ("bytes=10-99", (10, 99)),
        ("bytes=100-", (100, size - 1)),
        ("bytes=-50", (size - 50, size - 1)),
        (f"bytes=0-{size + 1000}", (0, size - 1)),  # cut to the end
    ):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == data[first : last + 1], header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-type"] == "video/mp4"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes" and "content-range" not in whole.headers
    # Several ranges or a malformed one: ignored (RFC 9110 lets a server), the whole file.
    for header in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3"):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 200 and r.content == data, header
    head = client.head(url, headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == "10"


def test_a_range_past_the_end_is_416(client, video):
    size = Path(video["video_uri"]).stat().st_size
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = client.get(video["source_url"], headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{size}"


def test_parse_range_edges():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("bytes = 2 - 3", 10) == (2, 3)


def test_only_indexed_videos_are_read(client):
    assert client.get("/videos/ffffffffffffffff/source").status_code == 404
    assert client.get("/videos/ffffffffffffffff").status_code == 404
    for path in (
        "/videos/..%2F..%2Fetc%2Fpasswd/source",
        "/videos/ABCDEF0123456789/source",
        "/videos/etc-passwd",
    ):
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert b"root:" not in r.content
    r = client.get("/videos/ffffffffffffffff/source", params={"path": "/etc/passwd"})
    assert r.status_code == 400


def test_a_video_gone_from_its_uri_is_a_404_naming_it(writable_index, tmp_path):
    videos = lance.dataset(f"{writable_index.uri}/videos.lance")
    video_id = videos.to_table(columns=["video_id"], filter="status = 'indexed'")[0][0].as_py()
    gone = tmp_path / "moved away.mp4"
    videos.update({"uri": f"'{gone}'"}, where=f"video_id = '{video_id}'")
    client = TestClient(build_app(writable_index.uri, refresh_s=0), raise_server_exceptions=False)
    r = client.get(f"/videos/{video_id}/source", headers={"Range": "bytes=0-9"})
    assert r.status_code == 404
    assert r.json()["detail"] == f"video {video_id} no longer exists at {gone}"


def test_the_source_needs_the_token_or_a_signed_url(locked, video):
    video_id = video["video_id"]
    path = f"/videos/{video_id}/source"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get(path, headers={"Range": "bytes=0-9"}).status_code == 401
    assert locked.get(f"/videos/{video_id}").status_code == 401
    assert locked.get(path, headers={**auth, "Range": "bytes=0-9"}).status_code == 206
    body = locked.get(f"/videos/{video_id}", headers=auth).json()
    signed = body["source_url"]
    assert signed.startswith(path + "?exp=") and body["source_expires"]
    assert TOKEN not in signed
    data = Path(video["video_uri"]).read_bytes()
    r = locked.get(signed, headers={"Range": "bytes=0-9"})  # no header: what <video> sends
    assert r.status_code == 206 and r.content == data[:10]
    # Tampered, for another video, signed by another token, or expired: refused.
    other = "0" * 16
    signer = SourceSigner(TOKEN)
    stale, _ = signer.url(video_id, now=0)
    for url in (
        signed[:-4] + ("0000" if not signed.endswith("0000") else "1111"),
        signed.replace(video_id, other),
        SourceSigner("another-token").url(video_id)[0],
        stale,
        signed + "&exp=1",
    ):
        assert locked.get(url).status_code == 401, url
    # Signed URLs admit that path only.
    assert locked.get(signed.replace("/source", "")).status_code == 401
    later, _ = signer.url(video_id, now=1e9)
    assert not signer.admits(path, later.split("?")[1].encode(), now=1e9 + SOURCE_URL_TTL_S + 1)


def test_search_pages_with_offset(client, served_index):
    everything = client.get("/search", params={"q": "blue circle", "limit": 1000}).json()
    assert everything["next_offset"] is None
    ids = [h["clip_id"] for h in everything["hits"]]
    assert len(ids) > 5 and set(ids) == served_index.truth("blue circle")
    pages, offset = [], 0
    while offset is not None:
        body = client.get(
            "/search", params={"q": "blue circle", "limit": 4, "offset": offset}
        ).json()
        pages.append([h["clip_id"] for h in body["hits"]])
        offset = body["next_offset"]
    assert [i for page in pages for i in page] == ids
    assert all(len(p) == 4 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 4
    r = client.get("/search", params={"q": "blue circle", "offset": len(ids)})
    assert r.json()["hits"] == [] and r.json()["next_offset"] is None
    assert client.get("/search", params={"q": "blue circle", "offset": -1}).status_code == 422
