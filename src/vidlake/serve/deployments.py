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
from typing import Any

from ray import serve
from ray.serve import Application

from vidlake.errors import UsageError
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


def replica_cpus(
    config: ServeConfig, cluster_cpus: float, cluster_gpus: int = 0, embedded: bool = False
) -> tuple[float, float]:
    """(CPUs of an API replica, CPUs of a CPU segmenter replica) for Ray's scheduling.

    On the embedded Ray, which has this machine's CPUs and no autoscaler, a whole CPU per API
    replica plus one for a CPU segmenter may ask for more than there is (2 API replicas on 2
    cores): the segmenter would never be placed and POST /verify would wait forever. There
    the shares are scaled down to fit; they are scheduling units, and the replicas still
    use the cores they need. A cluster keeps them whole (its autoscaler adds nodes).
    """
    segmenter = 1.0 if config.verify_model and not cluster_gpus else 0.0
    wanted = config.replicas * config.api_cpus + segmenter
    if not embedded or wanted <= cluster_cpus:
        return config.api_cpus, segmenter
    scale = int(10_000 * cluster_cpus / wanted) / 10_000  # rounded down: the sum fits
    return config.api_cpus * scale, segmenter * scale


def build_application(
    config: ServeConfig, cluster_gpus: int = 0, cpus: tuple[float, float] | None = None
) -> Application:
    """The Serve application for CONFIG on a cluster with CLUSTER_GPUS GPUs; CPUS: an API
    replica's and a CPU segmenter's (`replica_cpus`; default config.api_cpus and 1)."""
    from vidlake.store.tables import normalize_uri

    api_cpus, segmenter_cpus = cpus or (config.api_cpus, 1.0)
    index_uri = normalize_uri(config.index_uri)
    segmenter = None
    if config.verify_model:
        max_replicas = config.verify_max_replicas or max(1, cluster_gpus)
        segmenter = serve.deployment(
            ClipSegmenter,
            name="segmenter",
            ray_actor_options={"num_gpus": 1} if cluster_gpus else {"num_cpus": segmenter_cpus},
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
        ray_actor_options={"num_cpus": api_cpus},
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


# What a RayService's serveConfigV2 may set in `args` (cluster/kuberay-rayservice.yaml): the
# fields of ServeConfig but where the proxy listens (the RayService's http_options), the access
# log (Serve's logging_config) and the token (never in a manifest: VIDLAKE_TOKEN, a Secret).
BUILDER_ARGS = frozenset(ServeConfig.__dataclass_fields__) - {"host", "port", "token", "access_log"}
REQUIRE_TOKEN = "require_token"


def app_builder(args: dict[str, Any]) -> Application:
    """The application of a RayService (KubeRay): `import_path:
    vidlake.serve.deployments:app_builder` in serveConfigV2, ServeConfig's fields as `args`.

    The token comes from the environment, VIDLAKE_TOKEN (as `vidlake serve --token`), which the
    manifest fills from a Secret: Serve runs this builder as a task on a node of the cluster,
    and every pod gets the variable. A RayService listens beyond its pods, so a missing token
    is an error unless `require_token: false`. verify_device "cuda" gives each segmenter
    replica a GPU: GPU nodes of an autoscaled group may not be up when this runs.
    """
    import os

    unknown = sorted(set(args) - BUILDER_ARGS - {REQUIRE_TOKEN})
    if unknown:
        raise UsageError(
            f"unknown vidlake serve argument(s) {', '.join(unknown)}; "
            f"takes {', '.join(sorted(BUILDER_ARGS | {REQUIRE_TOKEN}))}"
        )
    if not args.get("index_uri"):
        raise UsageError("the vidlake serve arguments need index_uri")
    token = os.environ.get("VIDLAKE_TOKEN", "").strip() or None
    if token is None and args.get(REQUIRE_TOKEN, True):
        raise UsageError(
            "VIDLAKE_TOKEN is not set where the application is built: give every pod the "
            f"token (a Secret), or set {REQUIRE_TOKEN}: false to serve without one"
        )
    config = ServeConfig(**{k: v for k, v in args.items() if k != REQUIRE_TOKEN}, token=token)
    gpus = 1 if config.verify_device.startswith("cuda") else 0
    return build_application(config, cluster_gpus=gpus)


def check_listen(host: str, port: int) -> None:
    """UsageError unless HOST resolves and PORT is free on it, before Ray starts: Serve's proxy
    failing to bind is an 80-line traceback from inside Ray."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = (getattr(exc, "strerror", None) or str(exc)).lower()
        raise UsageError(f"--host {host}: cannot be resolved ({reason})") from None
    with socket.socket(family, kind, proto) as probe:
        # As the proxy binds: a port a stopped server left in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None


def start(config: ServeConfig, embedded: bool = False) -> str:
    """Starts the application on the connected Ray (see `init_ray`); returns its URL.

    Serve's HTTP proxy binds config.host:port (127.0.0.1 unless asked otherwise). EMBEDDED:
    Ray was started for this server alone (`replica_cpus`).
    """
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = replica_cpus(config, resources.get("CPU", 0), gpus, embedded)
    # Serve logs each step of a start (controller, proxy, replicas) at INFO, on the driver and
    # forwarded from its actors: the CLI says what is served; warnings and errors still show.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(
        http_options={"host": config.host, "port": config.port},
        proxy_location="HeadOnly",
        logging_config={"log_level": "WARNING"},
    )
    app = build_application(config, gpus, cpus)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
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
