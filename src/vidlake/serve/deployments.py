"""The Ray Serve application: the API (a FastAPI ingress) and the segmenter used by /verify.

    api (FastAPI ingress, build_app)  ──handle──▶  segmenter (ClipSegmenter: SAM 3 loaded once)
    replicas: ServeConfig.replicas                  one GPU per replica where the cluster has
                                                    GPUs; autoscaled min..max, 0 = none until
                                                    the first POST /verify

Only the segmenter needs a GPU; the API replicas read Lance tables on CPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ray import serve
from ray.serve import Application

from vidlake.serve.app import REFRESH_S, build_app
from vidlake.serve.verifier import ClipSegmenter, HandleVerifier
from vidlake.store.object_store import lance_options

log = logging.getLogger(__name__)

APP_NAME = "vidlake"
API_MAX_ONGOING = 64  # requests in flight per API replica (sync routes run in a thread pool)


@dataclass(frozen=True)
class ServeConfig:
    """Everything `vidlake serve` starts with.

    verify_model: the segmenter POST /verify runs (a SAM 3 checkpoint, or synthetic:color);
    None turns verification off. verify_min/max_replicas: the segmenter's autoscaling bounds;
    max_replicas None: one per GPU of the cluster (one without GPUs).
    """

    index_uri: str
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    storage_options: dict | None = None
    replicas: int = 1
    api_cpus: float = 1.0
    verify_model: str | None = None
    verify_device: str = "auto"
    verify_min_replicas: int = 0
    verify_max_replicas: int | None = None
    refresh_s: float = REFRESH_S
    access_log: bool = False  # Serve's INFO line per request: off unless `serve --access-log`

    def __post_init__(self) -> None:
        # Resolved here, on the driver (aliases, the driver's AWS variables, allow_http), as the
        # index job resolves them: replicas on other nodes may lack the variables.
        object.__setattr__(self, "storage_options", lance_options(self.storage_options) or None)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


@serve.ingress()
class ApiDeployment:
    """One API replica: the FastAPI app over the index, with a handle to the segmenter."""

    def __init__(
        self,
        index_uri: str,
        token: str | None,
        storage_options: dict | None,
        refresh_s: float,
        segmenter=None,
        model_id: str | None = None,
    ):
        verifier = HandleVerifier(segmenter, model_id) if segmenter is not None else None
        self._app = build_app(
            index_uri,
            token=token,
            verifier=verifier,
            storage_options=storage_options,
            refresh_s=refresh_s,
        )

    def __serve_build_asgi_app__(self):
        return self._app


def build_application(config: ServeConfig, cluster_gpus: int = 0) -> Application:
    """The Serve application for CONFIG on a cluster with CLUSTER_GPUS GPUs."""
    from vidlake.store.tables import normalize_uri

    index_uri = normalize_uri(config.index_uri)
    segmenter = None
    if config.verify_model:
        max_replicas = config.verify_max_replicas or max(1, cluster_gpus)
        segmenter = serve.deployment(
            ClipSegmenter,
            name="segmenter",
            ray_actor_options={"num_gpus": 1} if cluster_gpus else {"num_cpus": 1},
            max_ongoing_requests=1,  # one clip batch at a time per model copy
            logging_config={"log_level": "WARNING"},
            autoscaling_config={
                "min_replicas": config.verify_min_replicas,
                "initial_replicas": config.verify_min_replicas,
                "max_replicas": max(max_replicas, config.verify_min_replicas, 1),
                "target_ongoing_requests": 1,
            },
        ).bind(config.verify_model, index_uri, config.storage_options, config.verify_device)
    api = serve.deployment(
        ApiDeployment,
        name="api",
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.api_cpus},
        max_ongoing_requests=API_MAX_ONGOING,
        # Serve's per-request access log line costs a few percent of a small request's CPU;
        # without it, a replica's INFO lines are Serve's own chatter.
        logging_config={
            "enable_access_log": config.access_log,
            "log_level": "INFO" if config.access_log else "WARNING",
        },
    )
    return api.bind(
        index_uri,
        config.token,
        config.storage_options,
        config.refresh_s,
        segmenter,
        config.verify_model,
    )


def start(config: ServeConfig) -> str:
    """Starts the application on the connected Ray (see `init_ray`); returns its URL.

    Serve's HTTP proxy binds config.host:port (127.0.0.1 unless asked otherwise).
    """
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    # Serve logs each step of a start (controller, proxy, replicas) at INFO, on the driver and
    # forwarded from its actors: the CLI says what is served; warnings and errors still show.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(
        http_options={"host": config.host, "port": config.port},
        proxy_location="HeadOnly",
        logging_config={"log_level": "WARNING"},
    )
    serve.run(build_application(config, gpus), name=APP_NAME, route_prefix="/", blocking=False)
    log.info("vidlake serving %s at %s", config.index_uri, config.url)
    return config.url


def stop(embedded: bool = False) -> None:
    """Deletes the application and shuts Serve down. EMBEDDED: Ray was started for this server
    alone, so it is shut down with everything in it (Serve's own shutdown makes Ray print a
    "graceful_shutdown failed" line for its controller, which it stops by killing it)."""
    import ray

    if embedded:
        ray.shutdown()
    else:
        serve.shutdown()
