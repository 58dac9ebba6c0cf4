"""The `vidlake` CLI as a user runs it: real subprocesses, each with its own embedded Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
FAST = ["--clip-seconds", "2", "--fps", "2", "--overlap", "0.5", "--max-side", "0"]


def vidlake(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # A terminal as wide as a user's: Rich sizes tables to COLUMNS when not on a TTY.
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [VIDLAKE, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


# Lines libraries print on their own during a job; the CLI keeps them off the terminal.
LIBRARY_NOISE = (
    "Token authentication is enabled",  # Ray, on every new local Ray
    "lance is not fork-safe",  # pylance, when Ray starts its processes
    "Progress bars disabled",  # Ray Data, as the CLI turns them off
    "Loading weights",  # transformers' bar, forwarded from the actor
    "Writing model shards",  # transformers' bar in `model tiny`
    "create_index rust time",  # pylance's INFO line on every index built
)


def assert_no_library_noise(stderr: str) -> None:
    assert not [line for line in LIBRARY_NOISE if line in stderr], stderr


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


ODD_NAME = "odd [bold] :x:.mp4"  # a failed video whose name looks like Rich markup


@pytest.fixture(scope="module")
def mixed_corpus(synthetic_corpus, bad_inputs, tmp_path_factory) -> Path:
    """Two good videos and every kind of bad input in one folder, one named like Rich markup."""
    folder = tmp_path_factory.mktemp("mixed")
    for video in synthetic_corpus[:2]:
        shutil.copy(video.uri, folder / Path(video.uri).name)
    for name, path in bad_inputs.items():
        shutil.copy(path, folder / f"bad_{name}{Path(path).suffix}")
    (folder / ODD_NAME).write_bytes(b"not a video at all" * 100)
    return folder


@pytest.fixture(scope="module")
def mixed_run(mixed_corpus, tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    """(process, index): one `vidlake index` over the mixed corpus and a missing file, which the
    tests below read (each job starts its own Ray: seconds a test need not spend twice)."""
    folder = tmp_path_factory.mktemp("mixed_run")
    index, missing = str(folder / "idx"), str(folder / "no_such_video.mp4")
    proc = vidlake(
        "index", str(mixed_corpus), missing, "--index", index,
        "--concepts", "red square,blue circle", "--model", "synthetic:color", *FAST,
    )  # fmt: skip
    return proc, index


def test_bad_inputs_fail_alone_and_the_rest_is_indexed(mixed_run, bad_inputs):
    proc, index = mixed_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "indexed 2 videos" in proc.stdout and f"failed {len(bad_inputs) + 2}" in proc.stdout

    info = json.loads(vidlake("info", "--index", index, "--json").stdout)
    failed = {Path(uri).name: error for uri, error in info["failed"]}
    assert set(failed) == {f"bad_{n}{Path(p).suffix}" for n, p in bad_inputs.items()} | {
        "no_such_video.mp4",
        ODD_NAME,
    }
    for name, error in failed.items():
        assert error and "\n" not in error and name in error, (name, error)
    assert info["counts"]["videos"] == len(failed) + 2
    assert info["vocabulary"]["red square"] > 0

    hits = json.loads(vidlake("query", "--index", index, "red square", "--json").stdout)
    assert hits and all("bad_" not in h["video_uri"] for h in hits)


def test_a_failed_video_is_named_literally(mixed_run, mixed_corpus):
    proc, _ = mixed_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"failed {mixed_corpus / ODD_NAME}: " in proc.stderr, proc.stderr


def test_usage_errors_are_one_line_and_exit_2(tmp_path, synthetic_corpus):
    assert_one_line_error(
        vidlake("query", "--index", str(tmp_path / "nothing"), "red square"), "not a vidlake index"
    )
    video = synthetic_corpus[0].uri
    idx = str(tmp_path / "idx")
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", " , ", "--model", "synthetic:color"),
        "concepts",
    )
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--fps", "0"), "--fps"
    )
    assert_one_line_error(
        vidlake(
            "index", video, "--index", idx, "--concepts", "dog", "--model", str(tmp_path / "nope")
        ),
        "nope",
    )
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--actors-per-gpu", "0"),
        "--actors-per-gpu",
    )
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--model", "synthetic:color",
                "--batch-objects"),
        "--batch-objects", "synthetic:color",
    )  # fmt: skip
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--model", "synthetic:color",
                "--batch-concepts"),
        "--batch-concepts", "synthetic:color",
    )  # fmt: skip
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--exact",
                "--batch-objects"),
        "--exact", "--batch-objects",
    )  # fmt: skip
    # No GPU here: a GPU-sized segment actor on the embedded Ray would wait forever.
    assert_one_line_error(
        vidlake("index", video, "--index", idx, "--concepts", "dog", "--model", "synthetic:color",
                "--device", "cuda"),
        "'cuda'", "not available",
    )  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        vidlake("index", video, str(empty), "--index", idx, "--concepts", "dog", "--model",
                "synthetic:color", "--prune"),
        "--prune needs every source listed", "empty",
    )  # fmt: skip
    bad_opt = vidlake("index", video, "--index", idx, "--concepts", "dog", "--clip-seconds", "x")
    assert bad_opt.returncode == 2 and "Traceback" not in bad_opt.stderr


def test_bad_sources_devices_and_paths_are_one_line_errors(tmp_path, synthetic_corpus):
    video = synthetic_corpus[0].uri
    idx = tmp_path / "idx"
    color = ["--concepts", "red square", "--model", "synthetic:color"]
    # No source exists at all: a usage error, and no index is created.
    assert_one_line_error(
        vidlake("index", str(tmp_path / "nowhere"), "--index", str(idx), *color),
        "video source not found", "nowhere",
    )  # fmt: skip
    assert not idx.exists()
    assert_one_line_error(
        vidlake("index", video, "--index", str(idx), *color, "--device", "tpu"), "--device", "tpu"
    )
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not an index")
    assert_one_line_error(
        vidlake("index", video, "--index", str(a_file), *color), "is a file", "notes.txt"
    )
    assert_one_line_error(
        vidlake("index", video, "--index", str(idx), "--concepts", "dog", "--model",
                "synthetic:nope"),
        "synthetic:nope", "synthetic:color",
    )  # fmt: skip
    assert_one_line_error(
        vidlake("index", video, "--index", str(idx), *color, "--exemplar",
                f"{video}:0:10,10,50,50:foo"),
        "'foo'", ":neg",
    )  # fmt: skip


def test_an_s3_checkpoint_without_credentials_is_a_one_line_error(tmp_path, synthetic_corpus):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "COLUMNS": "160"}  # fmt: skip
    proc = subprocess.run(
        [VIDLAKE, "index", synthetic_corpus[0].uri, "--index", str(tmp_path / "idx"),
         "--concepts", "dog", "--model", "s3://no-such-bucket/sam3/"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert_one_line_error(proc, "s3://no-such-bucket/sam3/", "credentials")


def test_tiny_sam3_through_the_whole_cli(tmp_path, synthetic_corpus):
    model_dir = tmp_path / "tiny"
    made = vidlake("model", "tiny", str(model_dir), "--seed", "0")
    assert made.returncode == 0, made.stderr
    assert (model_dir / "config.json").exists()
    assert_no_library_noise(made.stderr)

    index = str(tmp_path / "idx")
    concepts = ["red square", "blue circle", "dog"]
    proc = vidlake(
        "index", synthetic_corpus[2].uri, "--index", index, "--concepts", ",".join(concepts),
        "--model", str(model_dir), *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "indexed 1 video," in proc.stdout and "frames/s" in proc.stdout
    assert re.search(r"model busy \d+% of the time", proc.stdout), proc.stdout
    assert_no_library_noise(proc.stderr)

    info = json.loads(vidlake("info", "--index", index, "--json").stdout)
    assert all(n > 0 for n in info["counts"].values()), info["counts"]
    assert info["models"] == [str(model_dir)]
    assert sorted(info["vocabulary"]) == sorted(concepts)

    found = [c for c in concepts if info["vocabulary"][c] > 0]
    assert found, "the tiny model emitted no hits"
    hits = json.loads(vidlake("query", "--index", index, found[0], "--json").stdout)
    assert len(hits) == info["vocabulary"][found[0]]
    for h in hits:
        assert {"video_uri", "clip_id", "start_s", "end_s", "n_objects", "max_score"} <= set(h)
        assert h["video_uri"] == synthetic_corpus[2].uri
        assert 0 <= h["start_s"] <= h["end_s"] <= 4.0 and h["n_objects"] >= 1

    table = vidlake("query", "--index", index, found[0])
    assert table.returncode == 0 and Path(synthetic_corpus[2].uri).name in table.stdout


@pytest.mark.parametrize(
    ("calls", "clips"),
    [
        ([("videos", 0, 3), ("segment", 0, 0)], "0/?"),  # no clip in: unknown
        ([("videos", 1, 3), ("segment", 5, 12)], "5/~12"),  # estimated while videos are left
        ([("videos", 3, 3), ("segment", 12, 12)], "12/12"),
        ([("videos", 2, 3), ("segment", 12, 12), ("videos", 3, 3)], "12/12"),  # exact at the end
    ],
)
def test_index_progress_shows_the_clip_total_and_whether_it_is_estimated(calls, clips):
    import io

    from rich.console import Console
    from rich.progress import Progress

    from vidlake.jobs.cli_index import _progress_columns, _progress_reporter

    buf = io.StringIO()
    with Progress(*_progress_columns(), console=Console(file=buf, width=120)) as progress:
        report = _progress_reporter(progress)
        for call in calls:
            report(*call)
    lines = buf.getvalue().splitlines()
    clip_line = next(line for line in reversed(lines) if line.startswith("clips segmented"))
    assert re.findall(r" (\d+/\S+) ", clip_line) == [clips]
    assert " eta " in clip_line


def test_bad_output_folders_of_model_tiny_and_demo_are_one_line_errors(tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    for command in (["model", "tiny"], ["demo"]):
        assert_one_line_error(
            vidlake(*command, str(a_file)), f"cannot create {a_file}: it is a file"
        )
        assert_one_line_error(
            vidlake(*command, str(a_file / "sub")),
            f"cannot create {a_file}/sub: {a_file} is a file",
        )
        assert_one_line_error(
            vidlake(*command, "/proc/vidlake-demo"), "cannot create /proc/vidlake-demo: /proc"
        )
    assert a_file.read_text() == "mine"

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"a user's video")
    assert_one_line_error(
        vidlake("model", "tiny", str(videos)), f"{videos} is not empty and holds no tiny model"
    )
    assert [p.name for p in videos.iterdir()] == ["clip.mp4"]


def test_option_errors_name_the_cli_options(tmp_path, synthetic_corpus):
    video, idx = synthetic_corpus[0].uri, str(tmp_path / "idx")
    color = ["--concepts", "red square", "--model", "synthetic:color"]
    assert_one_line_error(
        vidlake("index", video, "--index", idx, *color, "--clip-seconds", "1"),
        "error: --overlap (default 1.0 s) must be less than --clip-seconds 1.0 s; "
        "pass e.g. --overlap 0.5",
    )
    assert_one_line_error(
        vidlake("index", video, "--index", idx, *color, "--fps", "nan"),
        "error: --fps must be a finite number, got nan",
    )
    assert_one_line_error(
        vidlake("index", video, "--index", idx, *color, "--max-side", "8"),
        "error: --max-side must be >= 16 (or 0: the native size), got 8",
    )
    assert_one_line_error(
        vidlake("compact", "--index", idx, "--retention", "1000000000d"),
        "--retention '1000000000d' is too long: at most 36500d (100 years)",
    )
    assert not Path(idx).exists()


def test_an_empty_folder_fails_alone_and_hidden_files_are_skipped(tmp_path, synthetic_corpus):
    folder, empty = tmp_path / "videos", tmp_path / "emptydir"
    (folder / ".cache").mkdir(parents=True)
    empty.mkdir()
    video = folder / Path(synthetic_corpus[0].uri).name
    shutil.copy(synthetic_corpus[0].uri, video)
    shutil.copy(video, folder / ".hidden.mp4")
    shutil.copy(video, folder / ".cache" / "copy.mp4")
    (folder / f"._{video.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata
    idx = str(tmp_path / "idx")
    proc = vidlake(
        "index", str(empty), str(folder), "--index", idx, "--concepts", "red square",
        "--model", "synthetic:color", *FAST,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "indexed 1 video, failed 1" in proc.stdout, proc.stdout
    why = f"no video files under {empty}"
    assert f"failed {empty}: {why}" in proc.stderr, proc.stderr

    info = json.loads(vidlake("info", "--index", idx, "--json").stdout)
    assert info["failed"] == [[str(empty), why]]
    assert info["counts"]["videos"] == 2  # the video and the empty folder, no hidden file


ARCHIVE_OPTIONS = ["--clip-seconds", "1", "--fps", "4", "--overlap", "0", "--max-side", "0"]


@pytest.fixture(scope="module")
def archive_run(archive, tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    """(process, index): `vidlake index` over the archive folder (tests/conftest.py)."""
    index = str(tmp_path_factory.mktemp("archive_run") / "idx")
    proc = vidlake(
        "index", str(archive), "--index", index, "--concepts", "red square",
        "--model", "synthetic:color", *ARCHIVE_OPTIONS,
    )  # fmt: skip
    return proc, index


def test_an_archive_folder_indexes_every_container_and_counts_what_is_not_a_video(
    archive_run, archive
):
    from archive_corpus import ARCHIVE_BAD, ARCHIVE_VIDEOS

    proc, index = archive_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"indexed {len(ARCHIVE_VIDEOS)} videos, failed {len(ARCHIVE_BAD)},")
    assert "; 4 files skipped as not videos: 1 .bin, 1 .jpg, 1 .m4a, 1 .txt;" in summary
    for name, words in ARCHIVE_BAD.items():  # each a failed video in one line
        (line,) = [ln for ln in proc.stderr.splitlines() if str(archive / name) in ln]
        assert line.startswith("failed ") and words in line, line

    run = json.loads(vidlake("runs", "--index", index, "--json").stdout)[-1]  # the first
    assert run["not_videos"] == {".bin": 1, ".jpg": 1, ".m4a": 1, ".txt": 1}
    assert run["segmented_concepts"] == []
    info = vidlake("info", "--index", index)
    assert "last index job: 4 files skipped as not videos: 1 .bin, 1 .jpg" in info.stdout
    hits = json.loads(vidlake("query", "--index", index, "red square", "--json").stdout)
    assert {Path(h["video_uri"]).name for h in hits} == {name for name, *_ in ARCHIVE_VIDEOS}

    # A rerun retries none of the bad inputs: they have not changed.
    again = vidlake(
        "index", str(archive), "--index", index, "--concepts", "red square",
        "--model", "synthetic:color", *ARCHIVE_OPTIONS,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith(
        f"indexed 0 videos, failed 0, skipped {len(ARCHIVE_VIDEOS)} already indexed; "
        f"{len(ARCHIVE_BAD)} unchanged since they failed, not retried"
    ), again.stdout


def test_a_phrase_far_from_every_concept_gets_the_command_that_indexes_it(archive_run, archive):
    import shlex

    from archive_corpus import ARCHIVE_VIDEOS

    from vidlake.query.engine import ConceptIndex
    from vidlake.query.text import CANDIDATE_MIN_SIMILARITY

    _, index = archive_run
    # Both sides of the floor, against the one indexed concept.
    engine = ConceptIndex.open(index)
    (near,) = engine.candidates("crimson square", n=1)
    (far,) = engine.candidates("wedding cake", n=1)
    assert far.similarity < CANDIDATE_MIN_SIMILARITY <= near.similarity

    candidates = vidlake("query", "--index", index, "crimson square", "--json")
    assert json.loads(candidates.stdout) and "nearest indexed concepts: red square" in (
        candidates.stderr
    )
    proc = vidlake("query", "--index", index, "wedding cake", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert (
        "'wedding cake' is not indexed and no indexed concept is near it (nearest: red square"
        in proc.stderr
    )
    command = proc.stderr.strip().split("index it with: ", 1)[1]
    words = shlex.split(command)
    assert words[:3] == ["vidlake", "index", str(archive)]
    assert words[words.index("--concepts") + 1] == "red square,wedding cake"
    table = vidlake("query", "--index", index, "wedding cake")
    assert "no candidate clips; index it with: vidlake index" in table.stdout
    assert "candidate clip for" not in table.stdout and "│" not in table.stdout  # no table

    # The command adds the phrase, segmenting it alone on the indexed videos.
    added = vidlake(*words[1:])
    assert added.returncode == 0, added.stdout + added.stderr
    n = len(ARCHIVE_VIDEOS)
    assert f"added wedding cake to {n} indexed videos (only those concepts segmented)" in (
        added.stdout
    )
    runs = json.loads(vidlake("runs", "--index", index, "--json").stdout)
    assert runs[0]["segmented_concepts"] == ["wedding cake"]
    after = vidlake("query", "--index", index, "wedding cake", "--json")
    assert json.loads(after.stdout) == [] and "not indexed" not in after.stderr
