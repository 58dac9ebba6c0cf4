"""The serving manifests in cluster/ against the code: the RayService's Serve config as Ray Serve
validates and builds it, its probes and Secret against what the app reads, and the Prometheus
monitors and Grafana dashboard against the metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import ray
import yaml

from vidlake.errors import UsageError

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
TOKEN_SECRET = "vidlake-serve"
TOKEN_ENV = "VIDLAKE_TOKEN"  # what app_builder and `vidlake serve` read


def load(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]
    return doc


@pytest.fixture(scope="module")
def service() -> dict:
    return load("kuberay-rayservice.yaml")


def serve_config(service: dict):
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))


def containers(service: dict) -> dict[str, dict]:
    """The Ray container of the head and of each worker group, by group name."""
    spec = service["spec"]["rayClusterConfig"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]})
    return {name: pod["containers"][0] for name, pod in pods.items()}


def test_the_serve_config_builds_the_vidlake_application(service, monkeypatch):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.utils import import_attr

    from vidlake.serve import deployments

    config = serve_config(service)  # what Ray Serve checks when KubeRay submits it
    (app,) = config.applications
    assert app.route_prefix == "/"
    builder = import_attr(app.import_path)
    assert builder is deployments.app_builder
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    built = call_user_app_builder_with_args_if_necessary(builder, app.args)  # as Serve calls it
    api = built._bound_deployment
    assert api.name == "api" and api.num_replicas == app.args["replicas"]
    index_uri, token = api.init_args[:2]
    assert index_uri == app.args["index_uri"] and token == "t0ken"
    segmenter = api.init_args[4]._bound_deployment
    assert segmenter.name == "segmenter" and segmenter.ray_actor_options["num_gpus"] == 1
    assert segmenter._deployment_config.autoscaling_config.min_replicas == 0


def test_the_builder_refuses_a_missing_token_and_unknown_arguments(monkeypatch):
    from vidlake.serve.deployments import app_builder

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(UsageError, match="VIDLAKE_TOKEN is not set"):
        app_builder({"index_uri": "s3://bucket/index"})
    open_app = app_builder({"index_uri": "s3://bucket/index", "require_token": False})
    assert open_app._bound_deployment.init_args[1] is None
    with pytest.raises(UsageError, match="unknown vidlake serve argument.s. port, tokn"):
        app_builder({"index_uri": "s3://bucket/index", "tokn": "x", "port": 1})
    with pytest.raises(UsageError, match="need index_uri"):
        app_builder({"require_token": False})


def test_zero_downtime_upgrades_and_the_cluster(service):
    spec = service["spec"]
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    # The old cluster outlives the longest request it may be running (a POST /verify).
    assert spec["rayClusterDeletionDelaySeconds"] >= 300
    assert spec["rayClusterConfig"]["rayVersion"] == ray.__version__
    images = {c["image"] for c in containers(service).values()}
    assert len(images) == 1 and "vidlake" in images.pop()
    app = serve_config(service).applications[0]
    workers = {g["groupName"]: g for g in spec["rayClusterConfig"]["workerGroupSpecs"]}
    gpu = workers["gpu"]
    assert gpu["minReplicas"] == 0 and int(gpu["rayStartParams"]["num-gpus"]) == 1
    assert gpu["maxReplicas"] >= app.args["verify_max_replicas"]
    api_limits = workers["api"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert float(api_limits["cpu"]) >= app.args["api_cpus"]
    assert workers["api"]["maxReplicas"] * float(api_limits["cpu"]) >= app.args["replicas"]


def test_every_pod_gets_the_token_and_the_api_probe_asks_healthz_with_it(service):
    config = serve_config(service)
    port = config.http_options.port
    for name, container in containers(service).items():
        # Serve builds the application on any node: every pod needs the token.
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
        assert TOKEN_SECRET in refs, name
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert ports.get("metrics") == 8080, name  # the PodMonitor's port
        if name != "gpu":
            assert ports["serve"] == port, name
    api = containers(service)["api"]
    probe = " ".join(api["readinessProbe"]["exec"]["command"])
    assert f"http://localhost:{port}/healthz" in probe
    assert f"Authorization: Bearer ${{{TOKEN_ENV}}}" in probe
    assert "local_raylet_healthz" in probe
    # The body the probe greps for is what /healthz answers (FastAPI's compact JSON).
    from fastapi.responses import JSONResponse

    expected = re.search(r"grep -q '([^']+)'$", probe).group(1)
    assert expected.encode() in JSONResponse({"status": "ok", "index_version": 3}).body
    # Liveness asks the raylet only: a deploying app must not restart its pods.
    assert "healthz" not in " ".join(api["livenessProbe"]["exec"]["command"]).replace(
        "local_raylet_healthz", ""
    )


def test_the_monitors_select_what_the_manifests_run(service):
    pods = load("prometheus-podmonitor-ray.yaml")
    assert pods["kind"] == "PodMonitor"
    assert pods["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}
    assert [e["port"] for e in pods["spec"]["podMetricsEndpoints"]] == ["metrics"]
    serve = load("prometheus-servicemonitor-serve.yaml")
    assert serve["kind"] == "ServiceMonitor"
    # KubeRay labels a RayService's serve Service `ray.io/serve: <name>-serve`, port "serve".
    name = service["metadata"]["name"]
    assert serve["spec"]["selector"]["matchLabels"] == {"ray.io/serve": f"{name}-serve"}
    (endpoint,) = serve["spec"]["endpoints"]
    assert endpoint["port"] == "serve" and endpoint["path"] == "/metrics"
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials"] == {"name": TOKEN_SECRET, "key": TOKEN_ENV}


def exported_names() -> set[str]:
    """Every sample name the code exports: the job's through Ray (prefixed ray_), the server's
    through prometheus_client."""
    from ray.util import metrics as ray_metrics

    from vidlake.pipeline.metrics import JobMetrics, SegmentMetrics
    from vidlake.serve.metrics import ServerMetrics

    names = set()
    for recorder in (JobMetrics(), SegmentMetrics()):
        metrics = [m for m in vars(recorder).values() if isinstance(m, ray_metrics.Metric)]
        assert metrics
        for metric in metrics:
            base = f"ray_{metric.info['name']}"
            if isinstance(metric, ray_metrics.Counter):
                names.add(f"{base}_total")
            elif isinstance(metric, ray_metrics.Histogram):
                names.update(f"{base}{s}" for s in ("_bucket", "_count", "_sum"))
            else:
                names.add(base)
    for family in ServerMetrics(replica="").registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def test_the_dashboard_queries_only_metrics_the_code_exports():
    dashboard = json.loads((CLUSTER / "grafana-vidlake.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\b(?:ray_)?vidlake_[a-z_]+\b", e)}
    exported = exported_names()
    assert used <= exported, used - exported
    # Every metric has a panel: an operator sees each without writing a query.
    bases = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert bases == shown, bases - shown
