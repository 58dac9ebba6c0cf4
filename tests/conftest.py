"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from vidlake.synthetic.corpus import SyntheticVideo, write_bad_inputs, write_corpus

# -- synthetic corpus (operators/ and synthetic/ tests, pipeline tests) --------------------------


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[SyntheticVideo]:
    """The default synthetic corpus, written once: [a_red_first_half, b_no_red, c_all_four].

    See vidlake.synthetic.corpus.default_specs for what each video shows and when.
    """
    return write_corpus(tmp_path_factory.mktemp("synthetic_corpus"), seed=0)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"empty", "text", "truncated", "zero_frames": Path}: inputs that must fail to probe."""
    return write_bad_inputs(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="session")
def tiny_sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 3 video checkpoint folder (seed 0), written once per session."""
    from vidlake.model.tiny import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"), seed=0)


# -- object storage: a real S3 protocol server (moto in server mode) on 127.0.0.1 ---------------


class MotoS3:
    """A moto S3 (and IAM) server on 127.0.0.1, and how to reach it.

    `options` are --storage-option values (Lance keys), `env` the AWS variables that say the
    same; `bucket()` makes a fresh bucket. moto keeps its state per process, so buckets are
    never shared between tests. With `require_auth()` the server checks signatures against
    IAM users, the only way moto tells right credentials from wrong ones.
    """

    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.options = {
            "aws_endpoint": endpoint,
            "aws_region": self.REGION,
            "aws_access_key_id": self.ACCESS_KEY,
            "aws_secret_access_key": self.SECRET_KEY,
            "allow_http": "true",
        }
        self.env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": self.REGION,
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/vidlake-test-aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/vidlake-test-aws-credentials",
        }

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.REGION,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
        )

    def bucket(self, prefix: str = "vidlake") -> str:
        import uuid

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload(self, paths: list[Path | str], bucket: str, prefix: str) -> list[str]:
        """Uploads local files under s3://bucket/prefix/; returns their URIs."""
        s3 = self.client()
        uris = []
        for path in paths:
            key = f"{prefix.strip('/')}/{Path(path).name}"
            s3.upload_file(str(path), bucket, key)
            uris.append(f"s3://{bucket}/{key}")
        return uris

    @contextlib.contextmanager
    def require_auth(self):
        """Yields (access key id, secret) of an IAM user allowed s3:*; other keys are refused."""
        import json
        import urllib.request
        import uuid

        iam = self.client("iam")
        user = f"vidlake-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        allow_s3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow_s3]}
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]

        def set_auth(count: str) -> None:
            request = urllib.request.Request(
                f"{self.endpoint}/moto-api/reset-auth",
                data=count.encode(),
                method="POST",
                headers={"Content-Type": "text/plain"},  # a form body would reach moto empty
            )
            urllib.request.urlopen(request, timeout=10).read()

        set_auth("0")
        try:
            yield key["AccessKeyId"], key["SecretAccessKey"]
        finally:
            set_auth("inf")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 (a free port) for the whole session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoS3(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def moto_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """moto_s3 with its AWS variables set for this test, its subprocesses and Ray workers."""
    for name, value in moto_s3.env.items():
        monkeypatch.setenv(name, value)
    return moto_s3


def _synthetic_config(videos: list[SyntheticVideo], index_uri: str, concepts: tuple[str, ...]):
    """The IndexConfig of synthetic videos: the colour segmenter (exact ground truth), 2 s clips
    at 4 fps overlapping by 0.5 s, native size."""
    from vidlake.config import IndexConfig

    return IndexConfig(
        sources=tuple(v.uri for v in videos),
        index_uri=index_uri,
        concepts=concepts,
        model="synthetic:color",
        clip_seconds=2.0,
        fps=4.0,
        overlap_s=0.5,
        max_side=None,
    )


@pytest.fixture(scope="module")
def ray_local():
    """A new local Ray of 2 CPUs (never a cluster `ray start` left running), for the module."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_config():
    """A function (videos, index URI, concepts) -> the IndexConfig the synthetic indexes use."""
    return _synthetic_config


@pytest.fixture(scope="session")
def index_synthetic():
    """A function (folder, videos, concepts) -> index URI: the videos indexed with the colour
    segmenter (exact ground truth), 2 s clips at 4 fps, query indexes built."""

    def build(folder: Path, videos: list[SyntheticVideo], concepts: tuple[str, ...]) -> str:
        import ray

        from vidlake.pipeline.index_job import run_index

        uri = str(folder / "idx")
        started = not ray.is_initialized()
        if started:
            ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            run_index(_synthetic_config(videos, uri, concepts))
        finally:
            if started:
                ray.shutdown()
        return uri

    return build


class _MetaCvUtils:
    """Meta's own CPU algorithms (`sam3.perflib`) in the shape of transformers' cv-utils
    kernel: the independent reference for vidlake's `vidlake.model.quality.CvUtils`."""

    @staticmethod
    def generic_nms(ious, scores, iou_threshold, use_iou_matrix=True):
        from sam3.perflib.nms import generic_nms_cpu

        return generic_nms_cpu(ious, scores, iou_threshold)

    @staticmethod
    def cc_2d(mask, get_counts=True):
        from sam3.perflib.connected_components import connected_components_cpu

        return connected_components_cpu(mask)


@pytest.fixture(scope="session")
def meta_postprocessing():
    """A context manager: inside it, transformers' SAM 3 video model runs NMS, hole filling
    and sprinkle removal with Meta's own CPU algorithms (package sam3; skipped without it)."""
    pytest.importorskip("sam3.perflib.nms")
    import importlib

    module = importlib.import_module("transformers.models.sam3_video.modeling_sam3_video")

    @contextlib.contextmanager
    def swapped():
        before = module.cv_utils_kernel
        module.cv_utils_kernel = _MetaCvUtils()
        try:
            yield
        finally:
            module.cv_utils_kernel = before

    return swapped


# -- an archive folder (tests/archive_corpus.py) ----------------------------------------------


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of ARCHIVE_VIDEOS, files that are not videos and bad inputs (ARCHIVE_BAD)."""
    from archive_corpus import write_archive

    return write_archive(tmp_path_factory.mktemp("archive") / "archive")
