"""Object storage end to end against a real S3 protocol server (moto, server mode, 127.0.0.1):
option translation, the preflight check, and `vidlake index/query/info/runs/compact` on s3://."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vidlake.errors import VidlakeError
from vidlake.store.object_store import fsspec_options, lance_options, preflight

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
CONCEPTS = "red square,blue circle"
FAST = ["--clip-seconds", "2", "--fps", "2", "--max-side", "0"]
RAY_STARTUP = ("Started a local Ray instance", "ray.init", "raylet", "Starting Ray")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without AWS variables or config files, plus EXTRA."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def vidlake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VIDLAKE, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env or clean_env(),
    )


def option_args(options: dict[str, str]) -> list[str]:
    return [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- option translation -----------------------------------------------------------------------


def test_lance_options_canonical_keys_and_env_fill_in():
    env = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_DEFAULT_REGION": "eu-west-1"}
    got = lance_options({"Region": "us-east-2", "access_key_id": "AK", "secret": "SK"}, env)
    assert got == {
        "aws_region": "us-east-2",  # the option wins over AWS_DEFAULT_REGION
        "aws_access_key_id": "AK",
        "aws_secret_access_key": "SK",
        "aws_endpoint": "http://minio:9000",
        "allow_http": "true",  # a plain-http endpoint needs it in Lance
    }
    assert lance_options(got, env) == got  # idempotent: workers may normalise again


def test_credentials_are_taken_as_a_group():
    env = {"AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "envsecret"}
    env["AWS_SESSION_TOKEN"] = "envtoken"
    assert lance_options({}, env) == {
        "aws_access_key_id": "envkey",
        "aws_secret_access_key": "envsecret",
        "aws_session_token": "envtoken",
    }
    # Keys given as options: the environment's token (of another identity) is not mixed in.
    assert lance_options({"aws_access_key_id": "k", "aws_secret_access_key": "s"}, env) == {
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
    }


def test_fsspec_options_per_protocol():
    opts = {"endpoint": "https://s3.example", "region": "eu-central-1", "key": "K"}
    opts |= {"aws_secret_access_key": "S", "aws_session_token": "T"}
    assert fsspec_options("s3://bucket/videos/a.mp4", opts, env={}) == {
        "key": "K",
        "secret": "S",
        "token": "T",
        "endpoint_url": "https://s3.example",
        "client_kwargs": {"region_name": "eu-central-1"},
    }
    assert fsspec_options("/data/videos/a.mp4", opts, env={}) == {}
    assert fsspec_options("s3://b/k", {"aws_skip_signature": "true"}, env={}) == {"anon": True}
    assert fsspec_options("gs://b/k", {"project": "p", "aws_region": "x"}, env={}) == {
        "project": "p"
    }


# -- preflight against the moto server -----------------------------------------------------------


def test_preflight_accepts_a_reachable_bucket(moto_s3):
    bucket = moto_s3.bucket()
    preflight(f"s3://{bucket}/idx", [f"s3://{bucket}/videos/", "/local/videos"], moto_s3.options)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no_bucket", ["no such bucket", "s3://no-such-bucket-vidlake/idx"]),
        ("unreachable", ["unreachable endpoint", "http://127.0.0.1:"]),
        ("wrong_key", ["access denied", "access key id"]),
        ("wrong_secret", ["access denied", "secret access key"]),
    ],
)
def test_preflight_names_the_uri_and_the_problem(moto_s3, case, words):
    bucket = moto_s3.bucket()
    index = f"s3://{bucket}/idx"
    opts = dict(moto_s3.options)
    if case == "no_bucket":
        index = "s3://no-such-bucket-vidlake/idx"
    elif case == "unreachable":
        opts["aws_endpoint"] = f"http://127.0.0.1:{closed_port()}"
    with moto_s3.require_auth() as (key_id, secret):
        opts |= {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        if case.startswith("wrong"):
            preflight(f"s3://{bucket}/idx", [], opts)  # the right keys pass
        if case == "wrong_key":
            opts["aws_access_key_id"] = "AKIANOTAKEY000000000"
        elif case == "wrong_secret":
            opts["aws_secret_access_key"] = "not-the-secret"
        with pytest.raises(VidlakeError) as info:
            preflight(index, [], opts)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


# -- the CLI end to end on s3:// ------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_and_local_indexes(moto_s3, synthetic_corpus, tmp_path_factory):
    """The synthetic corpus indexed twice by `vidlake index`: from and to s3://, and locally.

    The s3 run gets its endpoint and credentials only from --storage-option (no AWS variables
    in its environment), so every reader (listing, probe and decode tasks, Lance writes on
    workers, commits on the driver) must be handed them.
    """
    bucket = moto_s3.bucket()
    moto_s3.upload([v.uri for v in synthetic_corpus], bucket, "videos")
    s3_index = f"s3://{bucket}/idx"
    proc = vidlake(
        "index", f"s3://{bucket}/videos/", "--index", s3_index, "--concepts", CONCEPTS,
        "--model", "synthetic:color", *FAST, *option_args(moto_s3.options),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"indexed {len(synthetic_corpus)} videos, failed 0" in proc.stdout

    local_videos = tmp_path_factory.mktemp("local_videos")
    for v in synthetic_corpus:
        shutil.copy(v.uri, local_videos)
    local_index = str(tmp_path_factory.mktemp("local") / "idx")
    proc = vidlake(
        "index", str(local_videos), "--index", local_index, "--concepts", CONCEPTS,
        "--model", "synthetic:color", *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return bucket, s3_index, local_index


def query_clips(index: str, phrase: str, options: dict[str, str] | None = None) -> list[tuple]:
    proc = vidlake("query", phrase, "--index", index, "--json", *option_args(options or {}))
    assert proc.returncode == 0, proc.stderr
    return sorted(
        (Path(r["video_uri"]).name, r["start_s"], r["end_s"], r["n_objects"], r["max_score"])
        for r in json.loads(proc.stdout)
    )


def test_s3_index_gives_the_same_clips_as_a_local_one(moto_s3, s3_and_local_indexes):
    _, s3_index, local_index = s3_and_local_indexes
    for phrase in ("red square", "blue circle"):
        s3_clips = query_clips(s3_index, phrase, moto_s3.options)
        assert s3_clips == query_clips(local_index, phrase)
        # Both shapes are in a_red_first_half and c_all_four only.
        assert {clip[0] for clip in s3_clips} == {"a_red_first_half.mp4", "c_all_four.mp4"}

    opts = option_args(moto_s3.options)
    s3_info = json.loads(vidlake("info", "--index", s3_index, "--json", *opts).stdout)
    local_info = json.loads(vidlake("info", "--index", local_index, "--json").stdout)
    assert s3_info["counts"] == local_info["counts"]
    assert s3_info["vocabulary"] == local_info["vocabulary"]
    assert s3_info["failed"] == []


def test_aws_variables_alone_reach_the_index(moto_s3, s3_and_local_indexes):
    _, s3_index, local_index = s3_and_local_indexes
    proc = vidlake(
        "query", "red square", "--index", s3_index, "--json", env=clean_env(**moto_s3.env)
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(query_clips(local_index, "red square"))


def test_runs_and_compact_on_s3(moto_s3, s3_and_local_indexes, synthetic_corpus):
    _, s3_index, local_index = s3_and_local_indexes
    opts = option_args(moto_s3.options)
    runs = json.loads(vidlake("runs", "--index", s3_index, "--json", *opts).stdout)
    assert [r["status"] for r in runs] == ["completed"]
    assert runs[0]["n_videos_indexed"] == len(synthetic_corpus)
    assert runs[0]["arguments"]["index_uri"] == s3_index
    assert set(runs[0]["arguments"]["storage_options"].values()) == {"***"}  # never recorded

    before = query_clips(s3_index, "blue circle", moto_s3.options)
    proc = vidlake("compact", "--index", s3_index, "--retention", "0", "--json", *opts)
    assert proc.returncode == 0, proc.stderr
    report = {r["table"]: r for r in json.loads(proc.stdout)}
    assert report["clips"]["fragments_after"] < report["clips"]["fragments_before"]
    assert all(r["versions_after"] == 1 for r in report.values())
    assert report["clips"]["bytes_after"] < report["clips"]["bytes_before"]
    assert query_clips(s3_index, "blue circle", moto_s3.options) == before


# -- bad endpoints, credentials and buckets: one line, exit 2, before any Ray work ----------------


def assert_preflight_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert not any(marker in proc.stderr for marker in RAY_STARTUP), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_rejects_bad_endpoint_credentials_and_bucket(moto_s3, synthetic_corpus):
    bucket = moto_s3.bucket()
    moto_s3.upload([synthetic_corpus[0].uri], bucket, "videos")
    index_args = ["--concepts", CONCEPTS, "--model", "synthetic:color", *FAST]

    def index(source: str, index_uri: str, **overrides: str) -> subprocess.CompletedProcess:
        opts = {**moto_s3.options, **overrides}
        return vidlake("index", source, "--index", index_uri, *index_args, *option_args(opts))

    dead = f"http://127.0.0.1:{closed_port()}"
    proc = index(f"s3://{bucket}/videos/", f"s3://{bucket}/idx", aws_endpoint=dead)
    assert_preflight_error(proc, "unreachable endpoint", dead, f"s3://{bucket}/idx")

    proc = index(f"s3://{bucket}/videos/", "s3://no-such-bucket-vidlake/idx")
    assert_preflight_error(proc, "no such bucket", "s3://no-such-bucket-vidlake/idx")
    proc = index("s3://no-such-bucket-vidlake/videos/", f"s3://{bucket}/idx")
    assert_preflight_error(proc, "no such bucket", "s3://no-such-bucket-vidlake/videos/")

    with moto_s3.require_auth() as (key_id, _):
        proc = index(
            f"s3://{bucket}/videos/",
            f"s3://{bucket}/idx",
            aws_access_key_id=key_id,
            aws_secret_access_key="wrong",
        )
    assert_preflight_error(proc, "access denied", "secret access key", f"s3://{bucket}/idx")
    listing = moto_s3.client().list_objects_v2(Bucket=bucket, Prefix="idx")
    assert listing.get("KeyCount", 0) == 0  # nothing was written


# -- a source object deleted mid-run ------------------------------------------------------------


def test_video_deleted_mid_run_fails_alone(ray_local, moto_s3, synthetic_corpus):
    """The object is deleted after listing, before the stream probes and decodes it."""
    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import run_index
    from vidlake.store.tables import IndexStore

    bucket = moto_s3.bucket()
    uris = moto_s3.upload([v.uri for v in synthetic_corpus], bucket, "videos")
    victim = uris[1]

    def delete_before_decoding(phase: str, done: int, total: int) -> None:
        if phase == "segment" and done == 0:
            moto_s3.client().delete_object(Bucket=bucket, Key=victim.split("/", 3)[3])

    config = IndexConfig(
        sources=(f"s3://{bucket}/videos/",),
        index_uri=f"s3://{bucket}/idx",
        concepts=("red square", "blue circle"),
        model="synthetic:color",
        clip_seconds=2.0,
        fps=2.0,
        max_side=None,
        storage_options=dict(moto_s3.options),
    )
    summary = run_index(config, progress=delete_before_decoding)
    assert summary.n_indexed == len(uris) - 1
    assert [uri for uri, _ in summary.failures] == [victim]
    assert victim in summary.failures[0][1]

    videos = IndexStore.open(config.index_uri, moto_s3.options).videos().to_pylist()
    status = {r["uri"]: r["status"] for r in videos}
    assert status == {u: ("failed" if u == victim else "indexed") for u in uris}


@pytest.mark.parametrize("uri", ["s3:/bucket/idx", "gs:/b/v.mp4", "s3a:/b", "file:/tmp/x"])
def test_a_scheme_with_one_slash_is_a_usage_error(uri):
    from vidlake.errors import UsageError
    from vidlake.store.object_store import protocol

    scheme, rest = uri.split(":/", 1)
    with pytest.raises(UsageError, match=f"write {scheme}://{rest} "):
        protocol(uri)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [("s3://bucket/idx", "s3"), ("/data/s3:/x", "file"), ("./s3:/x", "file"),
     ("clip:1.mp4", "file"), ("synthetic:color", "file"), ("videos/a.mp4", "file")],
)  # fmt: skip
def test_uris_and_paths_with_colons_are_still_taken(uri, scheme):
    from vidlake.store.object_store import protocol

    assert protocol(uri) == scheme


def test_index_with_a_one_slash_uri_is_a_one_line_error(tmp_path, synthetic_corpus):
    proc = subprocess.run(
        [VIDLAKE, "index", synthetic_corpus[0].uri, "--index", "s3:/bucket/idx",
         "--concepts", "red square", "--model", "synthetic:color"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "write s3://bucket/idx" in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())  # no ./s3:/bucket/idx
