"""`vidlake serve` as a user runs it: a real Ray Serve app on 127.0.0.1, over HTTP and in a real
headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
TOKEN = "e2e-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, index):
        self.url = url
        self.proc = proc
        self.log = log
        self.index = index
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        token: str | None = TOKEN,
        headers: dict | None = None,
    ) -> tuple[int, dict | bytes]:
        """METHOD PATH sent as is (no client-side path normalisation); (status, JSON or bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        self.last_headers = dict(response.getheaders())
        if response.getheader("content-type", "").startswith("application/json"):
            return response.status, json.loads(raw)
        return response.status, raw


def _start_serve(index_uri: str, log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`vidlake serve` on a free port, stderr to LOG; (process, URL) once it serves."""
    env = {**os.environ, "VIDLAKE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [VIDLAKE, "serve", "--index", index_uri, "--port", str(_free_port()), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.startswith("serving "):
            return proc, line.split(" at ")[1].split()[0]
    proc.kill()
    pytest.fail(f"vidlake serve did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(served_index, tmp_path_factory):
    """`vidlake serve` on a copy of the index (POST /verify writes), token from VIDLAKE_TOKEN."""
    folder = tmp_path_factory.mktemp("serve_e2e")
    shutil.copytree(served_index.uri, folder / "idx")
    index = dataclasses.replace(served_index, uri=str(folder / "idx"))
    log = folder / "server.log"
    # Two API replicas and the /verify segmenter want 3 CPUs: more than CI's 2 (replica_cpus).
    proc, url = _start_serve(index.uri, log, "--replicas", "2")
    yield Server(url, proc, log, index)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serves_the_api_over_http_on_loopback(server):
    assert server.host == "127.0.0.1"
    assert server.request("GET", "/healthz")[0] == 200
    assert server.request("GET", "/healthz", token=None)[0] == 401
    assert server.request("GET", "/healthz", token="wrong")[0] == 401
    status, body = server.request("GET", "/search?q=red+square&limit=1000")
    assert status == 200
    assert {h["clip_id"] for h in body["hits"]} == server.index.truth("red square")
    status, body = server.request("GET", "/search?q=red+square&limit=1000000")
    assert status == 422 and body["detail"]
    for path in (
        "/clips/../../../etc/passwd",
        "/clips/..%2F..%2Fetc%2Fpasswd/thumbnail.jpg",
        "/static/../../../../etc/passwd",
        "/clips/0123456789abcdef/../../../etc/passwd",
    ):
        status, body = server.request("GET", path)
        assert status in (400, 404), path
        assert b"root:" not in json.dumps(body).encode()
    assert server.request("GET", "/clips/ffffffffffffffff")[0] == 404
    assert server.request("GET", "/search")[0] == 422


def test_source_video_byte_ranges_through_serve(server):
    """Serve's proxy passes 206 and its headers on; a signed URL needs no token."""
    hit = server.request("GET", "/search?q=red+square&limit=1")[1]["hits"][0]
    status, video = server.request("GET", f"/videos/{hit['video_id']}")
    assert status == 200 and "sig=" in video["source_url"]
    data = Path(video["video_uri"]).read_bytes()
    status, body = server.request(
        "GET", video["source_url"], token=None, headers={"Range": "bytes=100-1099"}
    )
    assert status == 206 and body == data[100:1100]
    assert server.last_headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert server.last_headers["accept-ranges"] == "bytes"
    source = f"/videos/{hit['video_id']}/source"
    assert server.request("GET", source, token=None, headers={"Range": "bytes=0-9"})[0] == 401
    status, _ = server.request("GET", source, headers={"Range": f"bytes={len(data)}-"})
    assert status == 416


def test_verify_runs_on_the_segmenter_deployment(server):
    index = server.index
    candidates = sorted(index.truth("red square") | index.truth("blue circle"))
    status, body = server.request(
        "POST", "/verify", {"phrase": "green triangle", "clip_ids": candidates, "max_clips": 200}
    )
    assert status == 200, body
    expected = index.truth("green triangle") & set(candidates)
    assert body["model_id"] == "synthetic:color"
    assert body["n_clips_checked"] == len(candidates) and not body["failures"]
    assert expected and body["n_clips_found"] == len(expected)
    status, after = server.request("GET", "/search?q=green+triangle&limit=1000")
    assert after["indexed"] and {h["clip_id"] for h in after["hits"]} == expected


def _until(page, expression: str, timeout_s: float = 20.0) -> None:
    """Polls EXPRESSION with page.evaluate (DevTools; wait_for_function would need the
    'unsafe-eval' that the page's Content-Security-Policy rightly refuses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


@contextlib.contextmanager
def _chromium_page(server, **page_args):
    """A page of headless Chromium on the server's page, the token entered as a user does;
    (page, errors): uncaught exceptions and console errors, such as a Content-Security-Policy
    violation; not the API's 4xx statuses the tests ask for (401 before the token, 422)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**page_args)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda m: (
                    m.type == "error"
                    and not m.text.startswith("Failed to load resource")
                    and errors.append(m.text)
                ),
            )
            page.goto(server.url)
            # The page loads without the token, gets 401 from the API and asks for it.
            page.wait_for_selector("#token-form:not([hidden])", timeout=20_000)
            page.fill("#token", TOKEN)
            page.press("#token", "Enter")
            _until(page, "!document.getElementById('token-form').checkVisibility()")
            yield page, errors
        finally:
            browser.close()


def test_metrics_of_each_api_replica_carry_its_id(server):
    """Two API replicas count apart; a scrape through Serve's proxy reaches one of them, and
    its series name it (serve/metrics.py), so they never read as one counter that resets."""
    from prometheus_client.parser import text_string_to_metric_families

    assert server.request("GET", "/metrics", token=None)[0] == 401
    replicas: set[str] = set()
    for _ in range(40):
        status, body = server.request("GET", "/metrics")
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            if family.name == "vidlake_index_version":
                (sample,) = family.samples
                assert sample.value > 0
                replicas.add(sample.labels["replica"])
        if len(replicas) == 2:
            break
    assert len(replicas) == 2 and "" not in replicas, replicas


def test_results_page_in_headless_chromium(server):
    expected = server.index.truth("red square")
    with _chromium_page(server) as (page, errors):
        page.fill("#q", "red square")
        page.press("#q", "Enter")
        _until(page, f"document.querySelectorAll('#results .card').length === {len(expected)}")
        cards = page.locator("#results .card")
        shown = {cards.nth(i).get_attribute("data-clip-id") for i in range(cards.count())}
        assert shown == expected
        names = set(page.locator("#results .card .name").all_inner_texts())
        assert names == {"a_red_first_half.mp4", "c_all_four.mp4"}
        assert all(" s" in t for t in page.locator("#results .card .times").all_inner_texts())
        assert all(
            t.startswith("score 1.000")
            for t in page.locator("#results .card .score").all_inner_texts()
        )
        # Every thumbnail arrived (fetched with the token, shown as a blob URL).
        _until(
            page,
            "[...document.querySelectorAll('#results .card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
        )

        first = cards.first
        clip_id = first.get_attribute("data-clip-id")
        first.click()
        _until(page, "document.querySelectorAll('#objects tbody tr').length > 0", 30)
        _, clip = server.request("GET", f"/clips/{clip_id}")
        objects = page.locator("#objects tbody tr .concept").all_inner_texts()
        assert sorted(objects) == sorted(m["concept"] for m in clip["masklets"])
        assert "red square" in objects
        assert page.locator("#detail-title").inner_text() == clip["clip"]["video_name"]
        page.keyboard.press("Escape")
        assert not page.is_visible("#detail")
        assert page.evaluate("document.activeElement.dataset.clipId") == clip_id

        # The time and track options: tracks, then sequences, as a table; screen time.
        # The red square shows 0-3.75 s (sampled frames) in both of its videos.
        page.click("#options summary")
        page.fill("#min-duration", "3.5")
        page.press("#q", "Enter")
        _until(page, "document.querySelectorAll('#rows tbody tr.tracks').length === 2")
        cells = page.locator("#rows tbody tr").all_inner_texts()
        assert all("3.75" in c for c in cells), cells
        assert page.locator("#status").inner_text() == "2 tracks with “red square”"
        page.fill("#min-duration", "")
        page.fill("#then", "blue circle")
        page.fill("#within", "0.5")
        page.press("#q", "Enter")
        _until(page, "document.querySelectorAll('#rows tbody tr.sequences').length === 2")
        assert all(
            "red square 0.00–3.75 s → blue circle 0.00" in c
            for c in page.locator("#rows tbody tr").all_inner_texts()
        )
        page.fill("#within", "")
        page.press("#q", "Enter")  # --then without --within: the API's one line
        _until(page, "document.getElementById('status').className === 'error'")
        assert page.locator("#status").inner_text() == "then needs within SECONDS"
        page.fill("#then", "")
        page.click("#stats-button")
        _until(page, "document.querySelectorAll('#rows tbody tr.stats').length === 2")
        assert page.locator("#status").inner_text() == (
            "“red square”: 7.50 s on screen in 2 videos, 2 tracks, at most 1 at once"
        )

        # A parameter FastAPI refuses (q over 200 characters) is said in one line.
        page.goto(server.url + "?q=" + "a" * 201)
        _until(page, "document.getElementById('status').className === 'error'")
        assert page.locator("#status").inner_text() == (
            "q: String should have at most 200 characters"
        )
        assert not errors, errors


def _clip_rows(index_uri: str) -> dict[str, dict]:
    import lance

    table = lance.dataset(f"{index_uri}/clips.lance").to_table(
        columns=["clip_id", "video_uri", "frame_indices", "frame_times_s", "n_frames"]
    )
    return {row["clip_id"]: row for row in table.to_pylist()}


def _drawn(page, selector: str, setup: str) -> np.ndarray:
    """(H, W) bool: the pixels of SELECTOR's screenshot that the overlay changes, overlay as
    SETUP sets it (masks and boxes toggles) against no overlay at all."""
    from PIL import Image

    def shot(masks: bool, boxes: bool) -> np.ndarray:
        page.evaluate(
            "([m, b]) => { for (const [id, on] of [['show-masks', m], ['show-boxes', b]]) {"
            " const box = document.getElementById(id);"
            " if (box.checked !== on) box.click(); } }",
            [masks, boxes],
        )
        time.sleep(0.2)
        png = page.locator(selector).screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)

    masks, boxes = {"masks": (True, False), "boxes": (False, True)}[setup]
    on = shot(masks, boxes)
    off = shot(False, False)
    shot(True, True)
    return np.abs(on - off).max(axis=2) > 40


def _on_frame(drawn: np.ndarray, width: int, height: int) -> np.ndarray:
    """DRAWN (screen pixels over a frame shown whole in the element) sampled at the centres of
    the frame's WIDTH x HEIGHT pixels."""
    h, w = drawn.shape
    scale = min(w / width, h / height)
    x0, y0 = (w - width * scale) / 2, (h - height * scale) / 2  # object-fit: contain
    xs = (x0 + (np.arange(width) + 0.5) * scale).astype(int)
    ys = (y0 + (np.arange(height) + 0.5) * scale).astype(int)
    return drawn[np.ix_(ys, xs)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_masks_are_drawn_on_thumbnails_and_on_the_playing_video(server):
    """Masks drawn in the browser (RLE decoded by masks.js) land on the shapes' pixels of the
    synthetic ground truth, on a thumbnail and over the source video paused on a sampled
    frame; boxes frame them; a hit plays from its start; the timeline shows the video's hits.
    """
    index = server.index
    clips = _clip_rows(index.uri)
    _, after4 = server.request("GET", "/search?q=blue+circle&start_s=4&limit=1000")
    expected = {h["clip_id"] for h in after4["hits"]}
    assert expected and expected < index.truth("blue circle")
    with _chromium_page(server, viewport={"width": 1280, "height": 900}) as (page, errors):
        # The vocabulary with its clip counts (phrases verified by an earlier test too); a
        # concept searches it.
        _, concepts = server.request("GET", "/concepts")
        n = len(concepts["concepts"])
        _until(page, f"document.querySelectorAll('#vocabulary .concept').length === {n}")
        counts = dict(
            zip(
                page.locator("#vocabulary .concept .name").all_inner_texts(),
                map(int, page.locator("#vocabulary .concept .count").all_inner_texts()),
                strict=True,
            )
        )
        assert counts == {c["concept"]: c["n_clips"] for c in concepts["concepts"]}
        for concept in ("red square", "blue circle"):
            assert counts[concept] == len(index.truth(concept))
        page.click("#filters summary")
        page.fill("#start-s", "4")
        page.click("#vocabulary .concept[data-concept='blue circle']")
        _until(
            page,
            f"document.querySelectorAll('#results .card canvas.drawn').length === {len(expected)}",
            30,
        )
        _until(
            page,
            "[...document.querySelectorAll('#results .card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
        )
        cards = page.locator("#results .card")
        assert {cards.nth(i).get_attribute("data-clip-id") for i in range(cards.count())} == (
            expected
        )
        assert "start_s=4" in page.url  # the query is in the page's URL

        # A thumbnail: the clip's middle sampled frame, the blue circle's mask over it.
        card = cards.first
        row = clips[card.get_attribute("data-clip-id")]
        video = index.videos[row["video_uri"]]
        frame = row["frame_indices"][row["n_frames"] // 2]
        truth = video.mask("blue circle", frame)
        drawn = _on_frame(
            _drawn(page, f"#results .card[data-clip-id='{row['clip_id']}'] .thumb", "masks"),
            video.width,
            video.height,
        )
        assert _iou(drawn, truth) > 0.85, _iou(drawn, truth)

        # The clip view of the latest hit: the source video plays from the hit's start.
        hit = max(after4["hits"], key=lambda h: h["start_s"])
        assert hit["start_s"] > 4
        page.evaluate(
            "document.getElementById('video').addEventListener('playing', e => "
            "{ window.startedAt = e.target.currentTime; }, { once: true })"
        )
        page.click(f"#results .card[data-clip-id='{hit['clip_id']}']")
        _until(page, "window.startedAt !== undefined", 30)
        started = page.evaluate("window.startedAt")
        assert abs(started - hit["start_s"]) < 0.1, (started, hit["start_s"])
        t0 = page.evaluate("document.getElementById('video').currentTime")
        time.sleep(0.6)
        assert page.evaluate("document.getElementById('video').currentTime") > t0
        assert "sig=" in page.evaluate("document.getElementById('video').currentSrc")

        # Timeline: every hit of the phrase in this video (not only those after 4 s).
        _, in_video = server.request(
            "GET", "/search?q=blue+circle&limit=1000&video=" + hit["video_name"]
        )
        _until(
            page,
            f"document.querySelectorAll('#timeline .hit').length === {len(in_video['hits'])}",
        )
        current = page.locator("#timeline .hit.current")
        assert current.count() == 1 and current.get_attribute("data-clip-id") == hit["clip_id"]

        # Paused on a sampled frame: its masks and boxes over the video's picture.
        row = clips[hit["clip_id"]]
        video = index.videos[row["video_uri"]]
        k = len(row["frame_times_s"]) // 2
        t = row["frame_times_s"][k] + 0.25 / video.fps  # inside source frame frame_indices[k]
        page.evaluate(
            "t => { const v = document.getElementById('video'); v.pause(); v.controls = false;"
            " v.currentTime = t; }",
            t,
        )
        _until(
            page,
            f"document.getElementById('overlay').dataset.frame === '{k}' && "
            "!document.getElementById('video').seeking",
        )
        time.sleep(0.3)
        shown = page.locator("#detail-times").inner_text()
        assert hit["clip_id"] in shown
        _, body = server.request("GET", f"/clips/{hit['clip_id']}")
        concepts = sorted({m["concept"] for m in body["masklets"]})
        truth = np.zeros((video.height, video.width), bool)
        for concept in concepts:
            truth |= video.mask(concept, row["frame_indices"][k])
        assert truth.sum() > 100
        drawn = _on_frame(_drawn(page, "#player", "masks"), video.width, video.height)
        assert _iou(drawn, truth) > 0.85, _iou(drawn, truth)
        # Boxes: an outline around the mask's pixels (screen pixels: lines are thinner than
        # a frame pixel shown large), nothing inside.
        edges = _drawn(page, "#player", "boxes")
        scale = edges.shape[1] / video.width  # the frame fills the player's width
        ys, xs = np.nonzero(truth)
        left, right = xs.min() * scale, (xs.max() + 1) * scale
        top, bottom = ys.min() * scale, (ys.max() + 1) * scale
        tol = int(scale) + 2

        def near(v: float) -> slice:
            return slice(max(0, int(v) - tol), int(v) + tol + 1)

        across = slice(int(left) + tol, int(right) - tol)
        down = slice(int(top) + tol, int(bottom) - tol)
        outline = np.concatenate(
            [edges[near(top), across].any(0), edges[near(bottom), across].any(0),
             edges[down, near(left)].any(1), edges[down, near(right)].any(1)]
        )  # fmt: skip
        assert outline.mean() > 0.9, outline.mean()
        assert not edges[down, across].any()

        # Pages: the page size and offset live in the URL; next and previous move by one.
        page.goto(server.url + "?q=blue+circle&limit=3")
        _until(page, "document.querySelectorAll('#results .card').length === 3")
        _, every = server.request("GET", "/search?q=blue+circle&limit=1000")
        order = [h["clip_id"] for h in every["hits"]]
        seen = []
        for _ in range(0, len(order), 3):
            _until(page, "document.querySelectorAll('#results .card').length > 0")
            ids = page.locator("#results .card").evaluate_all(
                "cards => cards.map(c => c.dataset.clipId)"
            )
            seen += ids
            if page.is_disabled("#next-page"):
                break
            page.click("#next-page")
            _until(
                page,
                f"document.querySelector('#results .card') && document.querySelector"
                f"('#results .card').dataset.clipId !== '{ids[0]}'",
            )
        assert seen == order
        assert "offset=" in page.url
        assert not errors, errors


def test_ctrl_c_stops_the_server(server):
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=60) == 0, server.log.read_text()[-3000:]
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()


def test_sigterm_stops_quietly_and_requests_are_not_logged(served_index, tmp_path):
    log = tmp_path / "server.log"
    proc, url = _start_serve(served_index.uri, log, "--no-verify")
    server = Server(url, proc, log, served_index)
    for _ in range(3):
        assert server.request("GET", "/search?q=red+square")[0] == 200
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "SIGTERM received" not in text and "Traceback" not in text, text[-3000:]
    assert "GET /search" not in text, text[-3000:]  # Serve's access log is off by default
    # Serve's INFO chatter and Ray's line for the controller's shutdown stay off the terminal
    stdout = proc.stdout.read()
    for noise in ("INFO", "Started Serve", "Deploying new version", "graceful_shutdown"):
        assert noise not in text + stdout, (text + stdout)[-3000:]
    assert "stopping" in stdout


def test_serve_refuses_a_missing_index(tmp_path):
    proc = subprocess.run(
        [VIDLAKE, "serve", "--index", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "not a vidlake index" in lines[0]


def test_a_port_in_use_or_a_bad_host_is_a_one_line_error(served_index):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, words in (
            (["--port", str(port)], f"cannot listen on 127.0.0.1:{port}: address already in use"),
            (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: cannot be resolved"),
        ):
            proc = subprocess.run(
                [VIDLAKE, "serve", "--index", served_index.uri, *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
