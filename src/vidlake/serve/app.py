"""The HTTP API and results page over one index: a FastAPI app, usable with or without Ray Serve.

`build_app(index_uri)` gives the app; `vidlake serve` runs it as a Ray Serve ingress
(serve/deployments.py), tests call it in-process. Security model:

- Read-only index: no route deletes or rewrites rows. POST /verify only appends the verified
  hits of a phrase (the design's query-time verification) and is off without a verifier.
- No request input ever becomes a file path: clip and video ids must be 16 lowercase hex
  digits (as records.stable_id makes them) before any lookup, the page's files are a fixed
  table, and previews and /videos/{id}/source read the URI the index recorded for a committed
  video, not one from the request.
- With a token every request but the page itself (static HTML/JS/CSS, no index data in it)
  needs `Authorization: Bearer <token>`; the page asks for the token and sends it. A
  <video> cannot send it: /videos/{id} gives a signed, expiring URL of that one video's bytes
  (serve/media.py), admitted in its place.
- Bounded requests: bodies over MAX_BODY_BYTES get 413, `limit` over MAX_LIMIT and phrases
  over MAX_PHRASE_CHARS get 422, unknown query parameters 400, at most PREVIEW_CONCURRENCY
  previews decode at once. Bad input is a 4xx with a JSON body {"detail": ...}.
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import re
import threading
import time
from dataclasses import asdict
from importlib import resources
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from vidlake import __version__
from vidlake.checks import in_order
from vidlake.errors import UsageError, VidlakeError
from vidlake.query.commands import add_concept_command
from vidlake.query.engine import ConceptIndex, normalize_phrase, resolve_versions
from vidlake.query.engine import Query as SearchQuery
from vidlake.query.export import rle_json
from vidlake.serve.media import SourceFile, SourceSigner
from vidlake.serve.metrics import RequestMetrics, ServerMetrics
from vidlake.serve.verifier import Verifier, verify_clips
from vidlake.store.schema import STATUS_INDEXED

log = logging.getLogger(__name__)

CLIP_ID = re.compile(r"[0-9a-f]{16}")
MAX_LIMIT = 1000
MAX_OFFSET = 10_000  # how deep /search pages: each page computes the hits before it too
DEFAULT_LIMIT = 50
MAX_PHRASE_CHARS = 200
MAX_WITH = 8
MAX_BODY_BYTES = 64 * 1024
MAX_VERIFY_CLIPS = 200
DEFAULT_VERIFY_CLIPS = 20
PREVIEW_CONCURRENCY = 2
REFRESH_S = 10.0
FAR_FUTURE_S = 1e12  # the open end of a one-sided time range
# How /search names Query's arguments in its 400s: its parameters.
HTTP_NAMES = {
    "with_concepts": "with",
    "videos": "video",
    "order_by": "order",
    "phrase": "q",
    "then": "then",
}

# The results page: (file in vidlake/serve/static, media type) by URL path. Public: no index data.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/masks.js": ("masks.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


# ---- response bodies (documented in /openapi.json) -------------------------------------------


class Hit(BaseModel):
    clip_id: str
    video_id: str
    video_uri: str
    video_name: str
    concept: str
    start_s: float = Field(description="First time (s) an object of the concept is visible.")
    end_s: float = Field(description="Last time (s) an object of the concept is visible.")
    clip_start_s: float
    clip_end_s: float
    n_objects: int
    max_score: float | None
    max_presence: float | None
    match: Literal["hit", "candidate"] = Field(
        description="hit: the phrase was found here; candidate: a near concept was (not verified)."
    )


class TrackHit(BaseModel):
    """A track (kind "tracks"): one object followed across the video."""

    video_id: str
    video_uri: str
    video_name: str
    track_id: str
    concept: str
    start_s: float = Field(description="Its first sampled frame (s).")
    end_s: float = Field(description="Its last sampled frame (s).")
    duration_s: float
    n_frames: int
    max_score: float | None
    max_area: float | None = Field(description="Largest mask area over the frame's area.")
    match: Literal["hit"]


class SequenceHit(BaseModel):
    """Tracks one after the other (kind "sequences"): the phrase's, then each `then` phrase's."""

    video_id: str
    video_uri: str
    video_name: str
    start_s: float
    end_s: float
    max_score: float | None = Field(description="The lowest of its tracks' best scores.")
    concepts: list[str]
    track_ids: list[str]
    starts_s: list[float]
    ends_s: list[float]
    match: Literal["hit"]


class FrameHit(BaseModel):
    """A video with frames showing min_count objects at once (kind "frames")."""

    video_id: str
    video_uri: str
    video_name: str
    concept: str
    n_objects: int = Field(description="The most objects on one frame of the video.")
    start_s: float
    end_s: float
    times_s: list[float] = Field(description="Every sampled time the count is reached.")
    match: Literal["hit"]


class VideoStats(BaseModel):
    video_id: str
    video_uri: str
    video_name: str
    screen_time_s: float
    first_s: float
    last_s: float
    n_tracks: int
    max_at_once: int


class StatsResponse(BaseModel):
    phrase: str
    index_version: int
    videos: list[VideoStats]
    totals: dict[str, float]


class CandidateConcept(BaseModel):
    concept: str
    similarity: float
    text_match: bool
    n_clips: int


class SearchResponse(BaseModel):
    phrase: str
    index_version: int
    kind: Literal["clips", "tracks", "sequences", "frames"] = Field(
        description="What a hit is: set by then/within, min_duration, min_area, region, and "
        "same_frame without `with`."
    )
    indexed: bool = Field(description="Whether the phrase is a lookup (vocabulary or verified).")
    verified_on: int | None = Field(
        description="Clips checked, when the phrase was verified at query time only."
    )
    hits: list[Hit | TrackHit | SequenceHit | FrameHit]
    candidates: list[CandidateConcept] = Field(
        description="For a phrase not indexed: its nearest indexed concepts, whose clips are "
        "the hits (unlike `vidlake query`, no similarity floor yet: read `similarity`)."
    )
    add_command: str | None = Field(
        description="For a phrase not indexed: the `vidlake index` command that adds it."
    )
    models: dict[str, int] = Field(
        description="model -> hits of this page from videos indexed with it; more than one "
        "while a change of --model is partial (scores are then not on one scale)."
    )
    next_offset: int | None = Field(
        description="The `offset` of the next page; null when this page is the last."
    )


class ConceptCount(BaseModel):
    concept: str
    n_clips: int
    source: str


class ConceptsResponse(BaseModel):
    index_version: int
    concepts: list[ConceptCount]


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width] of the indexed frame.")
    counts: str = Field(description="COCO compressed RLE (column-major), as pycocotools writes.")


class FrameBox(BaseModel):
    frame: int = Field(description="Index into the clip's sampled frames.")
    time_s: float
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels of the indexed frame.")
    score: float | None
    mask: Rle | None = Field(
        None, description="The object's mask in this frame; only with `masks=1`."
    )


class MaskletOut(BaseModel):
    masklet_id: str
    track_id: str
    object_id: int
    concept: str
    score: float | None
    presence: float | None
    first_s: float
    last_s: float
    frames: list[FrameBox]


class ClipOut(BaseModel):
    clip_id: str
    video_id: str
    video_uri: str
    video_name: str
    clip_index: int
    start_s: float
    end_s: float
    sampled_fps: float
    n_frames: int
    width: int | None
    height: int | None
    frame_times_s: list[float] = Field(
        description="Time (s) of each sampled frame: what a FrameBox's `frame` indexes."
    )


class VideoOut(BaseModel):
    video_id: str
    video_uri: str
    video_name: str
    duration_s: float | None
    fps: float | None
    width: int | None = Field(description="Of the source video (clips' may be smaller).")
    height: int | None
    source_url: str = Field(
        description="Where its bytes are served (Range requests); signed when the server "
        "has a token, so that a <video> element needs no header."
    )
    source_expires: int | None = Field(description="Unix time the signed URL stops working.")


class ClipResponse(BaseModel):
    clip: ClipOut
    masklets: list[MaskletOut]


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrase: str = Field(min_length=1, max_length=MAX_PHRASE_CHARS)
    max_clips: int = Field(DEFAULT_VERIFY_CLIPS, ge=1, le=MAX_VERIFY_CLIPS)
    clip_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]] | None = Field(
        None,
        max_length=MAX_VERIFY_CLIPS,
        description="Clips to check; default: clips of the concepts nearest the phrase.",
    )


class VerifyResponse(BaseModel):
    phrase: str
    model_id: str
    indexed: bool = Field(description="True when the phrase was in the vocabulary: no work done.")
    n_clips_checked: int
    n_clips_found: int
    n_masklets: int
    failures: list[tuple[str, str]]
    recorded: bool = Field(
        description="Whether the phrase is recorded as verified (a lookup from now on): not when "
        "a clip failed on a phrase never recorded before, so verifying again retries it."
    )
    index_version: int


# ---- the snapshot the app answers from ---------------------------------------------------------


class Snapshot:
    """The ConceptIndex requests read, replaced (never mutated) when the index moves on.

    Every REFRESH_S at most, a request starts a background check of every table's version; a
    new snapshot is opened and warmed off the request path, then swapped in, so a running
    server sees new index jobs, and hits verified elsewhere (another replica, `vidlake query
    --verify`: they move `masklets`, `concept_hits` and `concepts` but not `videos`), and no
    request waits for it.
    """

    def __init__(self, uri: str, storage_options: dict | None, refresh_s: float):
        self.uri = uri
        self.storage_options = storage_options
        self.refresh_s = refresh_s
        self._checking = threading.Lock()
        self._checked = time.monotonic()
        self.engine = self._open()

    def _open(self) -> ConceptIndex:
        engine = ConceptIndex.open(self.uri, self.storage_options)
        engine.committed_video_ids()
        engine.concepts_table()
        return engine

    def current(self) -> ConceptIndex:
        stale = self.refresh_s > 0 and time.monotonic() - self._checked > self.refresh_s
        if stale and self._checking.acquire(blocking=False):
            self._checked = time.monotonic()
            threading.Thread(target=self._refresh, name="vidlake-refresh", daemon=True).start()
        return self.engine

    def _refresh(self) -> None:
        try:
            self.latest()
        except (OSError, ValueError, VidlakeError) as exc:
            log.warning("could not refresh the index snapshot: %s", exc)
        finally:
            self._checking.release()

    def latest(self) -> ConceptIndex:
        """The snapshot, first moved on now if any table has: for a phrase the snapshot does
        not know, which another replica may have just verified (read-your-writes for a user
        who verifies, then searches)."""
        if resolve_versions(self.engine.store, None) != self.engine.versions:
            self.engine = self._open()
            log.info("serving index version %d", self.engine.version)
        return self.engine

    def reopen(self) -> ConceptIndex:
        self.engine = self._open()
        return self.engine


# ---- ASGI guards: run before routing, so they cover every path ---------------------------------


async def _send_json(send: Send, status: int, detail: str, headers: dict | None = None) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}


class BearerAuth:
    """401 for a request without `Authorization: Bearer TOKEN` (compared in constant time).

    The scheme is case-insensitive (RFC 7235: `bearer TOKEN` is the same); the token is not.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        public: frozenset[str],
        signer: SourceSigner | None = None,
    ):
        self.app = app
        self.expected = token.encode()
        self.public = public
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope["method"] in ("GET", "HEAD")
            and (
                scope["path"] in self.public
                or (
                    self.signer is not None
                    and self.signer.admits(scope["path"], scope.get("query_string", b""))
                )
            )
        ):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        scheme, _, credentials = given.strip().partition(b" ")
        if not (
            scheme.lower() == b"bearer"
            and hmac.compare_digest(credentials.lstrip(b" "), self.expected)
        ):
            detail = "missing bearer token" if not given else "wrong bearer token"
            await _send_json(send, 401, detail, {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a request body over MAX_BYTES, declared or streamed (read here, then replayed)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = f"request body over {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _send_json(send, 413, too_big)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---- helpers of the routes ---------------------------------------------------------------------


def _only(*names: str):
    """A dependency: 400 when the query string has a parameter the route does not take."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise HTTPException(
                400,
                f"unknown query parameter(s) {', '.join(unknown)}; "
                f"this route takes {', '.join(sorted(allowed)) or 'none'}",
            )

    return Depends(check)


def _clip_id(clip_id: str) -> str:
    if not CLIP_ID.fullmatch(clip_id):
        raise HTTPException(400, "a clip id is 16 lowercase hexadecimal digits")
    return clip_id


def _video_id(video_id: str) -> str:
    if not CLIP_ID.fullmatch(video_id):
        raise HTTPException(400, "a video id is 16 lowercase hexadecimal digits")
    return video_id


def _number(value: Any) -> Any:
    """VALUE as JSON can hold it: non-finite floats become null, floats get 4 decimals."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def _video_name(uri: str) -> str:
    return PurePosixPath(uri).name


def _hit_rows(table, match: str) -> list[dict]:
    rows = []
    for row in table.to_pylist():
        out = {k: _number(v) for k, v in row.items()}
        out["video_name"] = _video_name(row["video_uri"])
        out["match"] = match
        rows.append(out)
    return rows


def _between(start_s: float | None, end_s: float | None) -> tuple[float, float] | None:
    """The (start, end) range of the start_s/end_s parameters (either may be left out); a 400
    naming them when start_s is after end_s (Query would name its own `between`)."""
    if start_s is None and end_s is None:
        return None
    if start_s is not None and end_s is not None:
        try:
            in_order(start_s, end_s, "start_s", "end_s")
        except UsageError as exc:
            raise HTTPException(400, str(exc)) from None
    return (start_s or 0.0, FAR_FUTURE_S if end_s is None else end_s)


def _phrases(values: list[str] | None, what: str) -> list[str]:
    out = []
    for value in values or []:
        if len(value) > MAX_PHRASE_CHARS:
            raise HTTPException(422, f"{what} is over {MAX_PHRASE_CHARS} characters")
        out.append(normalize_phrase(value, what))
    return out


def _static_file(name: str) -> bytes:
    return resources.files("vidlake.serve").joinpath("static", name).read_bytes()


# ---- the app ----------------------------------------------------------------------------------


def build_app(
    index_uri: str,
    token: str | None = None,
    verifier: Verifier | None = None,
    storage_options: dict | None = None,
    refresh_s: float = REFRESH_S,
) -> FastAPI:
    """The vidlake HTTP API and results page over the index at INDEX_URI.

    token: when set, every request but the page's static files needs `Authorization: Bearer
    TOKEN`. verifier: what POST /verify segments with (serve/verifier.py); None turns it off.
    refresh_s: how often a request may trigger a check for a newer index version (0: never).
    The index must exist (IndexNotFoundError otherwise).
    """
    snapshot = Snapshot(index_uri, storage_options, refresh_s)
    verify_lock = threading.Lock()
    previews = threading.BoundedSemaphore(PREVIEW_CONCURRENCY)
    static = {path: (_static_file(name), media) for path, (name, media) in STATIC_FILES.items()}
    signer = SourceSigner(token) if token else None

    app = FastAPI(
        title="vidlake",
        version=__version__,
        description="Concept search over a vidlake index: clips, masklets, previews.",
        docs_url=None,  # Swagger UI loads its scripts from a CDN; /openapi.json is the schema
        redoc_url=None,
    )
    app.state.snapshot = snapshot
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if token:
        # Added last, so it runs first: no body is read for a request without the token.
        app.add_middleware(BearerAuth, token=token, public=frozenset(STATIC_FILES), signer=signer)
    # Added after the guards, so it runs before them: their 401s and 413s count too.
    metrics = ServerMetrics()
    metrics.track_index_version(lambda: snapshot.engine.version)
    app.add_middleware(RequestMetrics, metrics=metrics, router=app.router)

    @app.exception_handler(VidlakeError)
    async def _user_error(request: Request, exc: VidlakeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's body, without the offending input echoed back (it may be a megabyte).
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    def page(path: str):
        body, media = static[path]

        def serve_file() -> Response:
            return Response(
                body,
                media_type=media,
                headers={
                    "Content-Security-Policy": PAGE_CSP,
                    "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-cache",
                },
            )

        return serve_file

    for path in STATIC_FILES:
        app.add_api_route(path, page(path), methods=["GET", "HEAD"], include_in_schema=False)

    # HEAD too: what load balancers' and uptime checks' probes send.
    @app.api_route("/healthz", methods=["GET", "HEAD"], dependencies=[_only()])
    def healthz() -> dict:
        """The server is up; the index version it answers from."""
        return {"status": "ok", "index_version": snapshot.current().version}

    # Behind the token like every API route (Prometheus sends it: cluster/README.md).
    @app.get("/metrics", response_class=Response, dependencies=[_only()])
    def prometheus_metrics(request: Request) -> Response:
        """Request counts and latencies per route, errors, index version, verify queue, in
        Prometheus' text format (serve/metrics.py)."""
        body, media = metrics.exposition(request.headers.get("accept", ""))
        return Response(body, media_type=media)

    @app.get(
        "/search",
        response_model=SearchResponse,
        dependencies=[
            _only(
                "q",
                "min_score",
                "min_presence",
                "with",
                "same_frame",
                "video",
                "start_s",
                "end_s",
                "min_count",
                "order",
                "limit",
                "offset",
                "then",
                "within",
                "min_duration",
                "min_area",
                "region",
            )
        ],
    )
    def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_PHRASE_CHARS, description="Phrase.")],
        min_score: Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0,
        min_presence: Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0,
        with_: Annotated[
            list[str] | None,
            Query(alias="with", max_length=MAX_WITH, description="Phrase in the same clip."),
        ] = None,
        same_frame: Annotated[bool, Query(description="`with` phrases in one frame.")] = False,
        video: Annotated[
            list[str] | None,
            Query(
                max_length=MAX_WITH,
                description="Glob on video URIs or file names; repeated: any of them.",
            ),
        ] = None,
        start_s: Annotated[
            float | None, Query(ge=0.0, allow_inf_nan=False, description="Visible after this.")
        ] = None,
        end_s: Annotated[
            float | None, Query(ge=0.0, allow_inf_nan=False, description="Visible before this.")
        ] = None,
        min_count: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1,
        order: Annotated[Literal["score", "time"], Query()] = "score",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        offset: Annotated[
            int, Query(ge=0, le=MAX_OFFSET, description="Hits to skip: the page's first.")
        ] = 0,
        then: Annotated[
            list[str] | None,
            Query(
                max_length=MAX_WITH,
                description="A phrase whose track starts within `within` s after the previous "
                "phrase's track starts; repeated: a sequence. Hits are sequences of tracks.",
            ),
        ] = None,
        within: Annotated[float | None, Query(allow_inf_nan=False, description="Seconds.")] = None,
        min_duration: Annotated[
            float | None,
            Query(allow_inf_nan=False, description="Tracks visible this long (s); hits: tracks."),
        ] = None,
        min_area: Annotated[
            float | None,
            Query(allow_inf_nan=False, description="Tracks whose mask covers this share once."),
        ] = None,
        region: Annotated[
            str | None,
            Query(
                max_length=100,
                description="x0,y0,x1,y1 in 0..1: tracks whose box centre is inside once.",
            ),
        ] = None,
    ) -> JSONResponse:
        """Clips where the phrase appears, best first; candidates when it is not indexed.

        Candidates get every filter hits get, `with` and `same_frame` included. then/within,
        min_duration, min_area, region and same_frame without `with` ask about tracks across
        the video instead (`kind`), of indexed phrases only.
        """
        engine = snapshot.current()
        phrase = normalize_phrase(q, "q")
        others = _phrases(with_, "with")
        followers = _phrases(then, "then")
        if any(len(glob) > MAX_PHRASE_CHARS for glob in video or ()):
            raise HTTPException(422, f"video is over {MAX_PHRASE_CHARS} characters")
        between = _between(start_s, end_s)
        # A UsageError of Query's (or of an unknown `with` phrase) is a 400 naming these.
        # One hit past the page says whether another page follows.
        query = SearchQuery(
            phrase=phrase,
            min_score=min_score,
            min_presence=min_presence,
            limit=offset + limit + 1,
            videos=tuple(video or ()),
            between=between,
            min_count=min_count,
            with_concepts=tuple(others),
            same_frame=same_frame,
            order_by=order,
            then=tuple(followers),
            within=within,
            min_duration=min_duration,
            min_area=min_area,
            region=region,
            names=HTTP_NAMES,
        )
        body: dict[str, Any] = {
            "phrase": phrase,
            "index_version": engine.version,
            "kind": query.kind,
            "indexed": True,
            "verified_on": None,
            "candidates": [],
            "add_command": None,
        }
        known = (phrase, *others, *followers)
        if not all(map(engine.is_indexed, known)) and snapshot.refresh_s > 0:
            engine = snapshot.latest()
            body["index_version"] = engine.version
        engine.check_with_concepts(query)
        if query.kind != "clips":  # tracks of an indexed phrase: no candidates
            hits, match = engine.run(query), "hit"
        elif engine.is_indexed(phrase):
            hits, match = engine.run(query), "hit"
            body["verified_on"] = engine.verified().get(phrase)
        else:
            near = engine.candidates(phrase)
            hits, match = engine.candidate_clips(near, query=query), "candidate"
            body["indexed"] = False
            body["candidates"] = [asdict(c) for c in near]
            body["add_command"] = add_concept_command(engine.store, phrase)
        page = hits.slice(offset, limit)
        body["models"] = engine.hit_models(page) if "video_id" in page.column_names else {}
        body["hits"] = _hit_rows(page, match)
        body["next_offset"] = offset + limit if hits.num_rows > offset + limit else None
        return JSONResponse(body)

    @app.get(
        "/stats",
        response_model=StatsResponse,
        dependencies=[_only("q", "min_score", "video", "start_s", "end_s")],
    )
    def stats(
        q: Annotated[str, Query(min_length=1, max_length=MAX_PHRASE_CHARS, description="Phrase.")],
        min_score: Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0,
        video: Annotated[list[str] | None, Query(max_length=MAX_WITH)] = None,
        start_s: Annotated[float | None, Query(ge=0.0, allow_inf_nan=False)] = None,
        end_s: Annotated[float | None, Query(ge=0.0, allow_inf_nan=False)] = None,
    ) -> JSONResponse:
        """Screen time of an indexed phrase per video (first, last, tracks, most at once)."""
        engine = snapshot.current()
        phrase = normalize_phrase(q, "q")
        if not engine.is_indexed(phrase) and snapshot.refresh_s > 0:
            engine = snapshot.latest()
        between = _between(start_s, end_s)
        result = engine.stats(
            phrase, min_score=min_score, videos=tuple(video or ()), between=between
        )
        data = result.to_dict()
        for row in data["videos"]:
            row["video_name"] = _video_name(row["video_uri"])
        return JSONResponse({"phrase": phrase, "index_version": engine.version, **data})

    @app.get("/concepts", response_model=ConceptsResponse, dependencies=[_only()])
    def concepts() -> JSONResponse:
        """The indexed concepts (and phrases verified at query time) with their clip counts."""
        engine = snapshot.current()
        table = engine.concepts_table()
        if table.num_rows:
            rows = [
                {"concept": r["concept"], "n_clips": int(r["n_clips"] or 0), "source": r["source"]}
                for r in table.select(["concept", "n_clips", "source"]).to_pylist()
            ]
        else:  # an index whose query indexes were never built: count from concept_hits
            info = engine.info()
            rows = [
                {"concept": c, "n_clips": n, "source": "vocabulary"}
                for c, n in info.vocabulary.items()
            ]
        rows.sort(key=lambda r: (-r["n_clips"], r["concept"]))
        return JSONResponse({"index_version": engine.version, "concepts": rows})

    def clip_row(engine: ConceptIndex, clip_id: str) -> dict:
        rows = engine.clips([_clip_id(clip_id)]).to_pylist()
        if not rows:
            raise HTTPException(404, f"no clip {clip_id} in this index")
        return rows[0]

    @app.get("/clips/{clip_id}", response_model=ClipResponse, dependencies=[_only("masks")])
    def clip(
        clip_id: str,
        masks: Annotated[
            bool, Query(description="Add each frame's mask (COCO RLE): a larger response.")
        ] = False,
    ) -> JSONResponse:
        """A clip and its masklets: concept, track, score, time range and per-frame boxes,
        and with `masks=1` per-frame masks."""
        engine = snapshot.current()
        row = clip_row(engine, clip_id)
        times = row["frame_times_s"] or []
        masklets = []
        for m in engine.masklets([clip_id]).sort_by([("concept", "ascending")]).to_pylist():
            frames = []
            for i, (fi, box) in enumerate(zip(m["frame_idx"], m["boxes"], strict=True)):
                scores = m["scores"] or []
                frame = {
                    "frame": fi,
                    "time_s": _number(times[fi]) if 0 <= fi < len(times) else None,
                    "box": [_number(float(v)) for v in box],
                    "score": _number(float(scores[i])) if i < len(scores) else None,
                }
                if masks:
                    frame["mask"] = rle_json(m["masks"][i])
                frames.append(frame)
            masklets.append(
                {
                    **{
                        k: _number(m[k])
                        for k in (
                            "masklet_id",
                            "track_id",
                            "object_id",
                            "concept",
                            "score",
                            "presence",
                            "first_s",
                            "last_s",
                        )
                    },
                    "frames": frames,
                }
            )
        out = {k: _number(row[k]) for k in ClipOut.model_fields if k in row}
        out["video_name"] = _video_name(row["video_uri"])
        return JSONResponse({"clip": out, "masklets": masklets})

    @app.get(
        "/clips/{clip_id}/thumbnail.jpg",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
        dependencies=[_only()],
    )
    def thumbnail(clip_id: str) -> Response:
        """The clip's middle frame as JPEG (as the index job stored it)."""
        engine = snapshot.current()
        clips = engine.dataset("clips")
        # clip_id is 16 hex digits here: safe to put in the filter.
        table = clips.to_table(
            columns=["video_id", "thumbnail"], filter=f"clip_id = '{_clip_id(clip_id)}'"
        )
        committed = engine.committed_video_ids()
        for video_id, jpeg in zip(
            table.column("video_id").to_pylist(), table.column("thumbnail").to_pylist(), strict=True
        ):
            if video_id in committed and jpeg:
                return Response(
                    jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"}
                )
        raise HTTPException(404, f"no thumbnail of clip {clip_id} in this index")

    @app.get(
        "/clips/{clip_id}/preview.gif",
        response_class=Response,
        responses={200: {"content": {"image/gif": {}}}},
        dependencies=[_only("concept")],
    )
    def preview(
        clip_id: str,
        concept: Annotated[
            list[str] | None, Query(max_length=MAX_WITH, description="Draw only these.")
        ] = None,
    ) -> Response:
        """The clip's frames with its masks, boxes and labels drawn, as an animated GIF."""
        from PIL import Image

        from vidlake.query.preview import overlay_frames

        engine = snapshot.current()
        row = clip_row(engine, clip_id)
        only = _phrases(concept, "concept") or None
        with previews:
            try:
                frames, _ = overlay_frames(engine, clip_id, only)
            except VidlakeError as exc:
                raise HTTPException(404, f"cannot draw clip {clip_id}: {exc}") from exc
            images = [Image.fromarray(f) for f in frames]
            buf = io.BytesIO()
            fps = float(row["sampled_fps"] or 1.0)
            images[0].save(
                buf,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=int(1000 / fps),
                loop=0,
            )
        return Response(
            buf.getvalue(),
            media_type="image/gif",
            headers={"Cache-Control": "private, max-age=300"},
        )

    def video_row(engine: ConceptIndex, video_id: str) -> dict:
        """The committed video's row: only such a video's URI is ever read."""
        if _video_id(video_id) in engine.committed_video_ids():
            rows = engine.dataset("videos").to_table(
                columns=["video_id", "uri", "duration_s", "fps", "width", "height"],
                # 16 hex digits: safe in the filter
                filter=f"video_id = '{video_id}' AND status = '{STATUS_INDEXED}'",
            )
            if rows.num_rows:
                return rows.to_pylist()[0]
        raise HTTPException(404, f"no video {video_id} in this index")

    @app.get("/videos/{video_id}", response_model=VideoOut, dependencies=[_only()])
    def video(video_id: str) -> JSONResponse:
        """An indexed video: where it is, its size and length, and the URL of its bytes."""
        row = video_row(snapshot.current(), video_id)
        url, expires = f"/videos/{video_id}/source", None
        if signer is not None:
            url, expires = signer.url(video_id)
        body = {
            "video_id": video_id,
            "video_uri": row["uri"],
            "video_name": _video_name(row["uri"]),
            **{k: _number(row[k]) for k in ("duration_s", "fps", "width", "height")},
            "source_url": url,
            "source_expires": expires,
        }
        return JSONResponse(body)

    @app.api_route(
        "/videos/{video_id}/source",
        methods=["GET", "HEAD"],
        response_class=Response,
        responses={
            200: {"content": {"video/mp4": {}}},
            206: {"description": "The byte range asked for (Range: bytes=first-last)."},
            404: {"description": "Not an indexed video, or its file is no longer at its URI."},
            416: {"description": "A Range past the end of the file."},
        },
        dependencies=[_only("exp", "sig")],
    )
    def source(video_id: str, request: Request) -> Response:
        """The video's bytes, read from its URI as indexed, with HTTP Range requests (206)."""
        engine = snapshot.current()
        uri = video_row(engine, video_id)["uri"]
        try:
            # The index's options, as previews read videos with (fsspec names resolved there).
            media = SourceFile.open(uri, engine.store.storage_options)
        except FileNotFoundError:
            raise HTTPException(404, f"video {video_id} no longer exists at {uri}") from None
        except OSError as exc:
            log.warning("cannot read %s: %s", uri, exc)
            raise HTTPException(502, f"cannot read video {video_id} at {uri}: {exc}") from None
        return media.response(request.headers.get("range"), head=request.method == "HEAD")

    @app.post("/verify", response_model=VerifyResponse, dependencies=[_only()])
    def verify(request: VerifyRequest) -> JSONResponse:
        """Runs the segmenter with the phrase on candidate clips and adds what it finds.

        Candidates: `clip_ids` (404 when one is not in the index), or the clips of the indexed
        concepts nearest the phrase. Clips already verified for the phrase are skipped; with no
        clip left to check, nothing is recorded. Afterwards /search finds the phrase by
        lookup. One verification runs at a time.
        """
        if verifier is None:
            raise HTTPException(403, "verification is off on this server")
        phrase = normalize_phrase(request.phrase)
        engine = snapshot.current()
        if phrase in engine.vocabulary():
            body = {
                "phrase": phrase,
                "model_id": verifier.model_id,
                "indexed": True,
                "n_clips_checked": 0,
                "n_clips_found": 0,
                "n_masklets": 0,
                "failures": [],
                "recorded": False,
                "index_version": engine.version,
            }
            return JSONResponse(body)
        if request.clip_ids is not None:
            known = set(engine.clips(request.clip_ids).column("clip_id").to_pylist())
            unknown = sorted(set(request.clip_ids) - known)
            if unknown:
                raise HTTPException(404, f"no clip {', '.join(unknown)} in this index")
        with metrics.verifying(verify_lock):
            clip_ids = request.clip_ids
            if clip_ids is None:
                near = engine.candidates(phrase)
                clips = engine.candidate_clips(near, limit=request.max_clips)
                clip_ids = clips.column("clip_id").to_pylist()
            result = verify_clips(engine.store, phrase, clip_ids[: request.max_clips], verifier)
            engine = snapshot.reopen()
        body = {**asdict(result), "indexed": False, "index_version": engine.version}
        return JSONResponse(body)

    return app
