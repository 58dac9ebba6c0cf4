"""The manifests in cluster/ against the code: every `vidlake` command they run parses with the
real CLI, resources add up to what the index job asks for, versions and images agree."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import ray
import typer
import yaml

from vidlake.config import IndexConfig, parse_concepts
from vidlake.jobs.cli import _register_commands, app

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
ROOT = CLUSTER.parent
KUBE_FILES = [
    "kuberay-raycluster.yaml",
    "kuberay-rayjob.yaml",
    "kuberay-raycronjob-nightly.yaml",
    "k8s-cronjob-nightly.yaml",
    "kuberay-rayservice.yaml",
]
# What one segment actor takes on a GPU node (pipeline/index_job.py): 1 GPU and 1 CPU; decode
# tasks take 1 CPU each, and a GPU needs at least one decoding beside it.
# Per GPU: --actors-per-gpu segment actors of 1 CPU each, and at least one decode core.
ACTOR_CPUS = IndexConfig.__dataclass_fields__["actors_per_gpu"].default
DECODE_CPUS_MIN = 1


def load(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]
    assert len(docs) == 1, name
    return docs[0]


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("8", "500m", "48Gi") as a number (bytes for memory)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * units[unit]


def vidlake_commands(shell: str) -> list[list[str]]:
    """The argv of every `vidlake ...` command in a shell line (split at ; && ||)."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in [*lexer, ";"]:
        if set(token) <= set(";&|"):
            if current and current[0] == "vidlake":
                commands.append(current[1:])
            current = []
        else:
            current.append(token)
    return commands


def parse_cli(argv: list[str]) -> tuple[str, dict]:
    """(command name, its parameters) as the real `vidlake` CLI parses ARGV; fails if it can't."""
    _register_commands()
    group = typer.main.get_command(app)
    name, *rest = argv
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"no `vidlake {name}` command"
    ctx = command.make_context(f"vidlake {name}", rest)
    return name, ctx.params


def entrypoints() -> dict[str, str]:
    """Every shell line that runs vidlake, by manifest."""
    job = load("kuberay-rayjob.yaml")["spec"]
    cron = load("kuberay-raycronjob-nightly.yaml")["spec"]["jobTemplate"]
    k8s = load("k8s-cronjob-nightly.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {
        "rayjob": job["entrypoint"],
        "raycronjob": cron["entrypoint"],
        "k8s-cronjob": k8s["containers"][0]["args"][0],
    }


def ray_cluster_specs() -> dict[str, dict]:
    return {
        "raycluster": load("kuberay-raycluster.yaml")["spec"],
        "rayjob": load("kuberay-rayjob.yaml")["spec"]["rayClusterSpec"],
        "raycronjob": load("kuberay-raycronjob-nightly.yaml")["spec"]["jobTemplate"][
            "rayClusterSpec"
        ],
    }


def test_every_manifest_is_yaml_of_its_kind():
    kinds = {name: (load(name)["apiVersion"], load(name)["kind"]) for name in KUBE_FILES}
    assert kinds == {
        "kuberay-raycluster.yaml": ("ray.io/v1", "RayCluster"),
        "kuberay-rayjob.yaml": ("ray.io/v1", "RayJob"),
        "kuberay-raycronjob-nightly.yaml": ("ray.io/v1", "RayCronJob"),
        "k8s-cronjob-nightly.yaml": ("batch/v1", "CronJob"),
        "kuberay-rayservice.yaml": ("ray.io/v1", "RayService"),
    }
    load("ray-cluster-launcher.yaml")
    load("runtime_env.yaml")


@pytest.mark.parametrize("manifest", ["rayjob", "raycronjob", "k8s-cronjob"])
def test_entrypoints_parse_with_the_cli_and_join_the_cluster(manifest):
    commands = [parse_cli(argv) for argv in vidlake_commands(entrypoints()[manifest])]
    names = [name for name, _ in commands]
    assert names[0] == "index"
    params = commands[0][1]
    assert params["address"] == "auto"  # joins the cluster the job was submitted to
    # GPU-sized actors even when the autoscaler has no GPU worker up yet
    assert params["device"] == "cuda"
    assert all(s.startswith("s3://") for s in params["sources"])
    assert params["index_uri"].startswith("s3://")
    assert parse_concepts(params["concepts"])
    if manifest != "rayjob":  # the nightly runs compact the same index afterwards
        assert names == ["index", "compact"]
        assert commands[1][1]["index_uri"] == params["index_uri"]


def test_address_auto_joins_an_existing_cluster(monkeypatch):
    import vidlake.pipeline.index_job as index_job

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    index_job.init_ray("auto")
    assert calls[0]["address"] == "auto" and "num_cpus" not in calls[0]


def test_nightly_schedules_and_policies():
    cron = load("kuberay-raycronjob-nightly.yaml")["spec"]
    k8s = load("k8s-cronjob-nightly.yaml")["spec"]
    for schedule in (cron["schedule"], k8s["schedule"]):
        assert len(schedule.split()) == 5
    # KubeRay 1.6's RayCronJobSpec: jobTemplate is a RayJobSpec.
    assert {"entrypoint", "rayClusterSpec", "shutdownAfterJobFinishes"} <= set(cron["jobTemplate"])
    assert k8s["concurrencyPolicy"] == "Forbid"
    submit = k8s["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert submit[:3] == ["ray", "job", "submit"] and submit[-1] == "--"
    head_service = f"{load('kuberay-raycluster.yaml')['metadata']['name']}-head-svc"
    assert f"http://{head_service}:8265" in submit


@pytest.mark.parametrize("name", ["raycluster", "rayjob", "raycronjob"])
def test_gpu_workers_fit_the_index_job(name):
    spec = ray_cluster_specs()[name]
    assert spec["rayVersion"] == ray.__version__
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = spec["workerGroupSpecs"]
    pod = group["template"]["spec"]
    container = pod["containers"][0]
    limits = container["resources"]["limits"]
    gpus = int(limits["nvidia.com/gpu"])
    assert gpus >= 1 and int(group["rayStartParams"]["num-gpus"]) == gpus
    assert quantity(limits["cpu"]) >= gpus * (ACTOR_CPUS + DECODE_CPUS_MIN)
    object_store = quantity(group["rayStartParams"]["object-store-memory"])
    assert object_store < quantity(limits["memory"])
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm["medium"] == "Memory" and quantity(shm["sizeLimit"]) >= object_store
    assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])


def test_every_image_is_the_vidlake_image_at_the_installed_ray():
    base = re.search(r"^FROM (\S+)", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray.__version__}-")
    images = set(re.findall(r"image:\s*(\S+)", "".join(
        (CLUSTER / f).read_text() for f in [*KUBE_FILES, "ray-cluster-launcher.yaml"]
    )))  # fmt: skip
    assert len(images) == 1 and "vidlake" in images.pop()


def test_cluster_launcher_gpu_nodes():
    config = load("ray-cluster-launcher.yaml")
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert nodes[config["head_node_type"]]["resources"]["CPU"] == 0
    gpu = [n for n in nodes.values() if n["resources"].get("GPU")]
    assert gpu
    for node in gpu:
        res = node["resources"]
        assert res["CPU"] >= res["GPU"] * (ACTOR_CPUS + DECODE_CPUS_MIN)
        assert res["object_store_memory"] > 0
    assert any("--num-cpus=0" in c for c in config["head_start_ray_commands"])


def test_runtime_env_installs_what_the_package_needs():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    env = load("runtime_env.yaml")
    for module in env["py_modules"]:
        assert (ROOT / module / "__init__.py").exists(), module
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {d.split(";")[0].strip() for d in deps if not d.startswith("ray")}
    assert set(env["pip"]) == wanted  # Ray itself comes with the image, at the cluster's version
