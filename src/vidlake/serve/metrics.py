"""Prometheus metrics of the HTTP API, served at GET /metrics in Prometheus' text format.

    vidlake_http_requests_total{route, method, status}      every response, by route template
    vidlake_http_request_duration_seconds{route, method}    latency histogram (first byte to end)
    vidlake_http_server_errors_total{route}                 5xx responses and unhandled errors
    vidlake_index_version                                   the `videos` version answered from
    vidlake_verify_queue / vidlake_verify_running           POST /verify waiting / running

`route` is the route's path template (`/clips/{clip_id}`), "<unmatched>" for a path no route
takes, so a scanner cannot grow the series without bound; `method` is one of METHODS or
"other". Requests refused before their route runs (401 without the token, 413) are counted
under their route too.

One registry per app (not prometheus_client's global one): tests build several apps in one
process. Under Ray Serve each API replica is a process with its own counts, and a scrape of
/metrics through Serve's proxy reaches one replica; every series therefore carries `replica`
(Serve's replica id; "" outside Serve) so that the series of different replicas never read
as one counter that resets. Sum over `replica` in queries (cluster/grafana-vidlake.json does).
The index job's metrics are Ray metrics instead (vidlake/pipeline/metrics.py).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
# Seconds per request: a search is milliseconds, a preview GIF decodes video (a second or
# more), a POST /verify runs the model on up to MAX_VERIFY_CLIPS clips (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def serve_replica_id() -> str:
    """The Ray Serve replica this process is, or "" outside a Serve replica.

    Serve is asked only when it is already imported: the app in a test or behind another
    server never imports Ray for this."""
    serve = sys.modules.get("ray.serve")
    if serve is None:
        return ""
    from ray.serve.exceptions import RayServeException

    try:
        return serve.get_replica_context().replica_id.unique_id
    except RayServeException:  # imported, but this process is not a replica
        return ""


class ServerMetrics:
    """The API's metrics in their own registry; `exposition()` is the /metrics body."""

    def __init__(self, replica: str | None = None):
        self.replica = serve_replica_id() if replica is None else replica
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vidlake_http_requests",
            "HTTP responses, by route template, method and status code.",
            ("route", "method", "status", "replica"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "vidlake_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response.",
            ("route", "method", "replica"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.server_errors = Counter(
            "vidlake_http_server_errors",
            "Responses with a 5xx status, unhandled errors included.",
            ("route", "replica"),
            registry=self.registry,
        )
        self.index_version = Gauge(
            "vidlake_index_version",
            "Version of the index's videos table the server answers from.",
            ("replica",),
            registry=self.registry,
        )
        self.verify_queue = Gauge(
            "vidlake_verify_queue",
            "POST /verify requests waiting for the verification that runs (one at a time).",
            ("replica",),
            registry=self.registry,
        ).labels(self.replica)
        self.verify_running = Gauge(
            "vidlake_verify_running",
            "POST /verify requests running the model (0 or 1).",
            ("replica",),
            registry=self.registry,
        ).labels(self.replica)

    def track_index_version(self, version: Callable[[], int]) -> None:
        """Reports VERSION() at each scrape (no request needed to move it)."""
        self.index_version.labels(self.replica).set_function(version)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(status), self.replica).inc()
        self.latency.labels(route, method, self.replica).observe(seconds)
        if status >= 500:
            self.server_errors.labels(route, self.replica).inc()

    @contextmanager
    def verifying(self, lock: threading.Lock) -> Iterator[None]:
        """Holds LOCK (the one verification at a time), counted as waiting, then running."""
        self.verify_queue.inc()
        try:
            lock.acquire()
        finally:
            self.verify_queue.dec()
        self.verify_running.inc()
        try:
            yield
        finally:
            self.verify_running.dec()
            lock.release()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) of GET /metrics for a request's ACCEPT header, negotiated as
        prometheus_client's own server does: OpenMetrics when asked for, else the text format
        0.0.4 every Prometheus reads."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request into METRICS.

    Added outside the token and body guards, so their refusals count too; the route is found
    here, as ROUTER would find it (a method the route does not take still names it).
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, router: Router):
        self.app = app
        self.metrics = metrics
        self.router = router

    def route_of(self, scope: Scope) -> str:
        partial = None
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
            if match == Match.PARTIAL and partial is None:
                partial = route.path
        return partial or UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.route_of(scope)  # before the router adds to the scope
        start = time.perf_counter()
        status = 500  # unless a response starts: an error that escapes is a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.observe(route, scope["method"], status, seconds)
