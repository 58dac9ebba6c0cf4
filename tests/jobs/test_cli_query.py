"""`vidlake query/info/reindex/export/preview` (and the output of `runs` and `compact`) as a
user runs them: real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lance
import pytest
from test_cli import assert_no_library_noise

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
FAST = ["--clip-seconds", "2", "--fps", "4", "--overlap", "0.5", "--max-side", "0"]


def vidlake(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VIDLAKE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


ODD_NAME = "[bold]clip :x: a.mp4"  # a video whose file name looks like Rich markup and emoji codes


@pytest.fixture(scope="module")
def cli_videos(synthetic_corpus, tmp_path_factory) -> Path:
    """The corpus copied to a folder of this module's own, and a_red_first_half once more under
    ODD_NAME (test_verify_with_failed_clips_exits_1_and_retries moves a file away for a while)."""
    videos = tmp_path_factory.mktemp("cli_videos")
    for video in synthetic_corpus:
        shutil.copy(video.uri, videos / Path(video.uri).name)
    shutil.copy(synthetic_corpus[0].uri, videos / ODD_NAME)
    return videos


@pytest.fixture(scope="module")
def cli_index(cli_videos, tmp_path_factory) -> str:
    """red square and blue circle indexed over cli_videos, query indexes rebuilt by `reindex`.

    One index for the whole module (a test that writes works on a copy): each `vidlake index`
    starts its own Ray and costs many times a query.
    """
    index = str(tmp_path_factory.mktemp("cli_query") / "idx")
    proc = vidlake(
        "index", str(cli_videos), "--index", index,
        "--concepts", "red square,blue circle", "--model", "synthetic:color", *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = vidlake("reindex", "--index", index)
    assert proc.returncode == 0, proc.stderr
    return index


@pytest.fixture(scope="module")
def red_rows(cli_index) -> list[dict]:
    """`vidlake query red square --json` on cli_index, parsed."""
    proc = vidlake("query", "--index", cli_index, "red square", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_query_filters_and_output_formats(cli_index, red_rows):
    rows = red_rows
    assert rows and all(r["concept"] == "red square" and r["match"] == "hit" for r in rows)
    both = json.loads(
        vidlake(
            "query", "--index", cli_index, "red square", "--with", "blue circle",
            "--video", "*c_all_four*", "--between", "0", "2", "--order", "time", "--json",
        ).stdout
    )  # fmt: skip
    expected = [r for r in rows if r["video_uri"].endswith("c_all_four.mp4") and r["start_s"] <= 2]
    assert sorted(r["clip_id"] for r in both) == sorted(r["clip_id"] for r in expected)
    assert [r["start_s"] for r in both] == sorted(r["start_s"] for r in both)
    as_csv = vidlake("query", "--index", cli_index, "red square", "--csv", "--limit", "2")
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(parsed) == 2 and parsed[0]["clip_id"] == rows[0]["clip_id"]
    table = vidlake("query", "--index", cli_index, "red square")
    assert f"{len(rows)} clips with 'red square'" in table.stdout


def test_unindexed_phrase_lists_nearest_concepts_as_candidates(cli_index):
    proc = vidlake("query", "--index", cli_index, "Crimson Square", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "'crimson square' is not indexed" in proc.stderr
    assert "nearest indexed concepts: red square" in proc.stderr
    rows = json.loads(proc.stdout)
    assert rows and {r["match"] for r in rows} == {"candidate"}
    assert {r["concept"] for r in rows} <= {"red square", "blue circle"}


def test_export_preview_and_info(cli_index, red_rows, tmp_path):
    coco = tmp_path / "out" / "coco.json"
    proc = vidlake("export", "--index", cli_index, "red square", "--out", str(coco))
    assert proc.returncode == 0, proc.stderr
    from pycocotools.coco import COCO

    assert len(COCO(str(coco)).getAnnIds()) > 0
    ytvis = tmp_path / "ytvis.json"
    proc = vidlake(
        "export", "--index", cli_index, "red square", "--format", "ytvis", "--out", str(ytvis)
    )
    assert proc.returncode == 0 and json.loads(ytvis.read_text())["videos"]
    clip = red_rows[0]
    png = tmp_path / "p.png"
    proc = vidlake("preview", clip["clip_id"], "--index", cli_index, "--out", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads(vidlake("info", "--index", cli_index, "--json").stdout)
    assert info["version"] == lance.dataset(f"{cli_index}/videos.lance").version
    assert info["counts"]["concepts"] == 2
    old = json.loads(vidlake("info", "--index", cli_index, "--json", "--as-of", "1").stdout)
    assert old["version"] == 1 and old["counts"]["videos"] == 0


def test_verify_with_tiny_sam3_adds_a_lookup(cli_index, tiny_sam3_dir, tmp_path):
    index = str(tmp_path / "idx")
    shutil.copytree(cli_index, index)
    proc = vidlake(
        "query", "--index", index, "green triangle", "--verify", "--model", str(tiny_sam3_dir),
        "--max-clips", "2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "'green triangle' is not indexed" in proc.stderr
    assert f"verified 'green triangle' with {tiny_sam3_dir} on 2 candidate clips" in proc.stderr
    first = json.loads(proc.stdout)
    again = vidlake("query", "--index", index, "green triangle", "--json")
    assert again.returncode == 0, again.stderr
    assert "is not indexed" not in again.stderr
    assert "verified at query time on 2 candidate clips" in again.stderr
    assert json.loads(again.stdout) == first
    info = json.loads(vidlake("info", "--index", index, "--json").stdout)
    assert info["verified"] == {"green triangle": len(first)}
    text = vidlake("info", "--index", index).stdout
    assert f"green triangle (found in {len(first)} clip" in text and " of 2 checked)" in text
    assert sorted(info["vocabulary"]) == ["blue circle", "red square"]


def test_bad_input_is_a_one_line_error(cli_index, tmp_path):
    assert_one_line_error(vidlake("query", "--index", cli_index, ""), "no words")
    assert_one_line_error(vidlake("query", "--index", cli_index, "?!."), "no words")
    assert_one_line_error(
        vidlake("query", "--index", cli_index, "red square", "--between", "3", "1"), "after"
    )
    assert_one_line_error(
        vidlake("query", "--index", str(tmp_path / "nothing"), "red square"),
        "not a vidlake index",
    )
    assert_one_line_error(
        vidlake("query", "--index", cli_index, "red square", "--as-of", "999"), "--as-of"
    )
    newer = str(tmp_path / "newer")
    shutil.copytree(cli_index, newer)
    ds = lance.dataset(f"{newer}/videos.lance")
    table = ds.to_table().replace_schema_metadata({b"vidlake.schema_version": b"999"})
    lance.write_dataset(table, ds.uri, mode="overwrite")
    assert_one_line_error(vidlake("query", "--index", newer, "red square"), "newer")
    assert_one_line_error(
        vidlake("export", "--index", newer, "red square", "--out", str(tmp_path / "x.json")),
        "newer",
    )


def test_user_text_is_printed_literally(cli_index, tmp_path):
    proc = vidlake("query", "--index", cli_index, "foo[/]")
    assert proc.returncode == 0, proc.stderr
    assert "'foo[/]' is not indexed" in proc.stdout
    # Far from every concept: no candidate clips, the command that indexes it (quoted).
    assert "no candidate clips; index it with: vidlake index" in proc.stdout
    assert ",foo[/]'" in proc.stdout
    proc = vidlake("query", "--index", cli_index, ":x: :smile:")
    assert proc.returncode == 0, proc.stderr
    assert "':x: :smile:' is not indexed" in proc.stdout
    proc = vidlake("query", "--index", cli_index, "red square")
    assert proc.returncode == 0, proc.stderr
    assert ODD_NAME in proc.stdout
    # Error messages carry user text too (here the index path).
    missing = str(tmp_path / "[red]gone :x:")
    assert_one_line_error(vidlake("query", "--index", missing, "red square"), missing)


@pytest.mark.parametrize("columns", [None, "80"])
def test_piped_output_is_not_wrapped(cli_index, red_rows, columns):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    proc = vidlake("query", "--index", cli_index, "red square", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for row in red_rows:
        # Whole, on the row of its own video: `preview` takes it as printed.
        assert any(row["clip_id"] in ln and Path(row["video_uri"]).name in ln for ln in lines)
    proc = vidlake("query", "--index", cli_index, "crimson square", env=env)
    notes = [ln for ln in proc.stdout.splitlines() if "is not indexed" in ln]
    assert len(notes) == 1 and notes[0].endswith("clips)"), proc.stdout
    proc = vidlake("runs", "--index", cli_index, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "started (UTC)" in proc.stdout


def test_unwritable_out_is_a_one_line_error(cli_index, red_rows, tmp_path):
    clip = red_rows[0]
    folder = tmp_path / "folder.png"
    folder.mkdir()
    export = ("export", "--index", cli_index, "red square", "--out")
    preview = ("preview", clip["clip_id"], "--index", cli_index, "--out")
    assert_one_line_error(vidlake(*export, str(tmp_path)), "is a folder")
    assert_one_line_error(vidlake(*preview, str(folder)), "is a folder")
    assert_one_line_error(vidlake(*export, "/proc/nope/x.json"), "/proc/nope/x.json")
    assert_one_line_error(vidlake(*preview, "/proc/nope/x.png"), "/proc/nope/x.png")


def test_verify_with_failed_clips_exits_1_and_retries(cli_index, cli_videos, tmp_path):
    index = str(tmp_path / "idx")
    shutil.copytree(cli_index, index)
    # The copy's clips name cli_videos' files: one of them is moved away until the retry.
    moved = cli_videos / "a_red_first_half.mp4"
    moved.rename(tmp_path / "moved.mp4")
    try:
        verify = ("query", "--index", index, "green triangle", "--verify", "--json")
        proc = vidlake(*verify)
        assert proc.returncode == 1, proc.stderr
        assert "failed; not recorded as verified" in proc.stderr
        assert f"video not found: {moved}" in proc.stderr
        found = json.loads(proc.stdout)
        assert found and all(r["video_uri"].endswith("c_all_four.mp4") for r in found)
        info = json.loads(vidlake("info", "--index", index, "--json").stdout)
        assert info["verified"] == {}
    finally:
        (tmp_path / "moved.mp4").rename(moved)
    proc = vidlake(*verify)
    assert proc.returncode == 0, proc.stderr
    assert "'green triangle' is not indexed" in proc.stderr
    assert "verified 'green triangle'" in proc.stderr and "failed" not in proc.stderr
    assert_no_library_noise(proc.stderr)  # --verify starts an embedded Ray as `index` does
    # a_red_first_half (under both its names) shows no green triangle; b_no_red, which does,
    # has no red square or blue circle and so no candidate clip.
    assert json.loads(proc.stdout) == found
    info = json.loads(vidlake("info", "--index", index, "--json").stdout)
    assert info["verified"] == {"green triangle": len(found)}


def test_export_writes_dataset_folders_and_empty_ones_with_a_note(cli_index, red_rows, tmp_path):
    """--format yolo|cvat|mots write folders (read back in tests/query/test_export_datasets.py);
    a phrase with no hits where asked gives an empty dataset and one note on stderr."""
    export = ("export", "--index", cli_index, "red square", "--format")
    for fmt, first in (("yolo", "data.yaml"), ("cvat", None), ("mots", "classes.txt")):
        out = tmp_path / fmt
        proc = vidlake(*export, fmt, "--out", str(out))
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        assert proc.stdout.strip().endswith(f"of {len(red_rows)} clips to {out}"), proc.stdout
        assert first is None or (out / first).is_file()
        assert len(list(out.glob("*/annotations.xml" if fmt == "cvat" else "*"))) >= 2
        empty = tmp_path / f"empty-{fmt}"
        proc = vidlake(*export, fmt, "--out", str(empty), "--video", "*b_no_red*")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"note: no hits of 'red square' match; {empty} is an empty {fmt} dataset"]
        assert proc.stdout.strip() == f"wrote 0 annotations of 0 clips to {empty}"
    assert (tmp_path / "empty-yolo" / "data.yaml").read_text().endswith("names:\n  0: red square\n")
    assert list((tmp_path / "empty-cvat").iterdir()) == []
    assert (tmp_path / "empty-mots" / "seqmaps" / "vidlake.txt").read_text() == "name\n"
    assert_one_line_error(vidlake(*export, "mots", "--out", str(tmp_path / "yolo")), "not empty")
    assert_one_line_error(vidlake(*export, "voc", "--out", str(tmp_path / "v")), "--format")


def test_export_of_a_phrase_not_indexed_writes_nothing(cli_index, tmp_path):
    out = tmp_path / "ph.json"
    proc = vidlake("export", "--index", cli_index, "Purple Hexagon", "--out", str(out))
    assert_one_line_error(proc, "'purple hexagon' is not indexed", "nearest indexed concepts")
    assert not out.exists()


def test_csv_without_rows_prints_the_header(cli_index):
    for args in (["red square", "--video", "*nothing*"], ["purple hexagon", "--as-of", "1"]):
        proc = vidlake("query", "--index", cli_index, *args, "--csv")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [proc.stdout.splitlines()[0]], proc.stdout
        header = next(csv.reader(io.StringIO(proc.stdout)))
        assert "clip_id" in header and header[-1] == "match"


def test_scores_outside_0_1_are_rejected(cli_index, tmp_path):
    query = ("query", "--index", cli_index, "red square")
    assert_one_line_error(vidlake(*query, "--min-score", "-3"), "--min-score", "-3")
    assert_one_line_error(vidlake(*query, "--min-presence", "5"), "--min-presence", "5")
    assert_one_line_error(vidlake(*query, "--within", "2"), "--within needs --then")
    out = str(tmp_path / "x.json")
    export = ("export", "--index", cli_index, "red square", "--out", out)
    assert_one_line_error(vidlake(*export, "--min-score", "1.5"), "--min-score")
    assert vidlake(*query, "--min-score", "1", "--min-presence", "0").returncode == 0


def test_a_version_without_concepts_says_so(cli_index):
    proc = vidlake("query", "--index", cli_index, "red square", "--as-of", "1")
    assert proc.returncode == 0, proc.stderr
    assert "'red square' is not indexed: the index at version 1 has no concepts" in proc.stdout
    assert "nearest" not in proc.stdout and "candidates" not in proc.stdout


def test_compact_title_says_what_was_removed(cli_index, tmp_path):
    index = str(tmp_path / "idx")
    shutil.copytree(cli_index, index)
    for retention, words in (
        ("7d", "(versions older than 7 days removed)"),
        ("1.5h", "(versions older than 90 minutes removed)"),
        ("0", "(every version but the latest removed)"),
    ):
        proc = vidlake("compact", "--index", index, "--retention", retention)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0] == f"compacted {index} {words}"


def test_preview_of_a_concept_not_in_the_clip_is_an_error(cli_index, red_rows, tmp_path):
    clip = red_rows[0]
    out = tmp_path / "p.png"
    proc = vidlake(
        "preview", clip["clip_id"], "--index", cli_index, "--out", str(out), "--concept", "purple"
    )
    assert_one_line_error(proc, "no objects of 'purple'", "red square")
    assert not out.exists()


def test_runs_table_shows_the_model_and_json_the_arguments(cli_index):
    table = vidlake("runs", "--index", cli_index)
    assert table.returncode == 0, table.stderr
    (run,) = json.loads(vidlake("runs", "--index", cli_index, "--json").stdout)
    assert run["arguments"]["model"] == "synthetic:color" and run["versions"]["vidlake"]
    row = next(ln for ln in table.stdout.splitlines() if run["run_id"] in ln)
    assert "synthetic:color" in row and "completed" in row
    help_text = " ".join(vidlake("runs", "--help").stdout.split())
    assert "--json: all arguments" in help_text


def test_s3_reads_say_why_the_bucket_cannot_be_read(moto_s3):
    no_credentials = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/vidlake-test-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/vidlake-test-aws-credentials",
    }
    for args in (["query", "red square"], ["info"], ["runs"], ["compact"]):
        proc = vidlake(args[0], "--index", "s3://nobucket/idx", *args[1:], env=no_credentials)
        assert_one_line_error(proc, "s3://nobucket/idx: no AWS credentials found")
    proc = vidlake(
        "query", "--index", "s3://vidlake-missing/idx", "red square",
        env={**os.environ, **moto_s3.env},
    )  # fmt: skip
    assert_one_line_error(proc, "no such bucket 'vidlake-missing'")


def test_export_and_preview_write_an_s3_out(cli_index, red_rows, moto_s3, tmp_path):
    """--out s3://... is written to the bucket (with --storage-option), not to ./s3:/..."""
    from PIL import Image

    bucket = moto_s3.bucket()
    options = [a for k, v in moto_s3.options.items() for a in ("--storage-option", f"{k}={v}")]
    s3 = moto_s3.client()
    out = f"s3://{bucket}/out/red.json"
    proc = vidlake(
        "export", "--index", cli_index, "red square", "--out", out, *options, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"to {out}")
    coco = json.loads(s3.get_object(Bucket=bucket, Key="out/red.json")["Body"].read())
    assert coco["annotations"] and coco["categories"][0]["name"] == "red square"

    (hit, *_) = red_rows
    out = f"s3://{bucket}/p.gif"
    proc = vidlake(
        "preview", hit["clip_id"], "--index", cli_index, "--out", out, *options, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}"
    gif = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key="p.gif")["Body"].read()))
    assert gif.format == "GIF" and gif.n_frames > 1
    assert list(tmp_path.iterdir()) == []  # no local ./s3:/... copy


def test_errors_name_the_cli_options(cli_index, tmp_path):
    query = ("query", "--index", cli_index, "red square")
    for args, message in [
        (["--min-score", "2"], "error: --min-score must be between 0 and 1 (scores are), got 2.0"),
        (["--limit", "0"], "error: --limit must be >= 1, got 0"),
        (["--order", "foo"], "error: --order must be one of score, time, got 'foo'"),
        (["--min-count", "0"], "error: --min-count must be >= 1, got 0"),
        (["--between", "5", "2"], "error: --between start 5.0 is after end 2.0"),
        (["--verify", "--max-clips", "0"], "error: --max-clips must be >= 1, got 0"),
    ]:
        proc = vidlake(*query, *args)
        assert_one_line_error(proc)
        assert proc.stderr.strip() == message
    export = ("export", "--index", cli_index, "red square", "--out", str(tmp_path / "x.json"))
    proc = vidlake(*export, "--limit", "0")
    assert_one_line_error(proc, "--limit must be >= 1")


def test_candidates_get_the_filters_hits_get(cli_index):
    def rows(*args: str) -> list[dict]:
        proc = vidlake("query", "--index", cli_index, "crimson square", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    everything = rows("--limit", "1000")
    filtered = rows("--video", "*c_all*", "--between", "0", "1", "--order", "time")
    assert filtered and {r["match"] for r in filtered} == {"candidate"}
    assert all(r["video_uri"].endswith("c_all_four.mp4") for r in filtered)
    assert all(r["start_s"] <= 1 and r["end_s"] >= 0 for r in filtered)
    assert {r["clip_id"] for r in filtered} < {r["clip_id"] for r in everything}
    assert [r["start_s"] for r in filtered] == sorted(r["start_s"] for r in filtered)
    assert rows("--min-count", "2") == []
    assert rows("--min-score", "1") == [r for r in everything if r["max_score"] >= 1]
    # --with applies too: candidate clips that also show the --with phrase.
    red = {r["clip_id"] for r in everything if r["concept"] == "red square"}
    both = {r["clip_id"] for r in rows("--with", "red square", "--limit", "1000")}
    assert both == red


def test_a_with_phrase_nobody_indexed_is_an_error(cli_index):
    for phrase in ("red square", "crimson square"):  # a lookup, and candidates
        proc = vidlake("query", "--index", cli_index, phrase, "--with", "Purple Thing", "--json")
        assert_one_line_error(proc)
        line = proc.stderr.strip()
        assert line.startswith("error: --with 'purple thing' is not an indexed concept (nearest: ")
        assert proc.stdout == ""


def test_a_result_cut_at_the_limit_says_so(cli_index, red_rows):
    assert len(red_rows) > 1
    table = vidlake("query", "--index", cli_index, "red square", "--limit", "1")
    assert table.returncode == 0, table.stderr
    assert "1 clip with 'red square'" in table.stdout
    assert table.stdout.strip().endswith("showing the first 1 of more; raise --limit")
    as_json = vidlake("query", "--index", cli_index, "red square", "--limit", "1", "--json")
    assert [r["clip_id"] for r in json.loads(as_json.stdout)] == [red_rows[0]["clip_id"]]
    assert "showing the first 1 of more; raise --limit" in as_json.stderr
    exact = str(len(red_rows))
    whole = vidlake("query", "--index", cli_index, "red square", "--limit", exact, "--csv")
    assert len(list(csv.DictReader(io.StringIO(whole.stdout)))) == len(red_rows)
    assert "of more" not in whole.stderr + whole.stdout
    candidates = vidlake("query", "--index", cli_index, "crimson square", "--limit", "2")
    assert "2 candidate clips for 'crimson square'" in candidates.stdout
    assert "showing the first 2 of more; raise --limit" in candidates.stdout


def test_an_unreachable_s3_out_is_a_one_line_error(cli_index, red_rows, tmp_path):
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    out = "s3://bucket/x.json"
    proc = vidlake("export", "--index", cli_index, "red square", "--out", out, env=env)
    assert_one_line_error(proc, f"--out {out}: unreachable endpoint http://127.0.0.1:9")
    clip = red_rows[0]["clip_id"]
    proc = vidlake("preview", clip, "--index", cli_index, "--out", "s3://bucket/p.gif", env=env)
    assert_one_line_error(proc, "--out s3://bucket/p.gif: unreachable endpoint")


def test_export_offers_verify_only_with_candidate_clips(cli_index, tmp_path):
    out = str(tmp_path / "x.json")
    proc = vidlake("export", "--index", cli_index, "purple hexagon", "--out", out, "--as-of", "1")
    assert_one_line_error(proc, "'purple hexagon' is not indexed: the index at version 1 has no")
    assert "--verify" not in proc.stderr
    proc = vidlake("export", "--index", cli_index, "purple hexagon", "--out", out)
    assert_one_line_error(proc, "nearest indexed concepts", "`vidlake query --verify` can add it")


def test_counts_of_one_are_singular(cli_index):
    proc = vidlake("runs", "--index", cli_index)
    assert proc.returncode == 0, proc.stderr
    assert "1 run, newest first" in proc.stdout


def _json(*args: str):
    proc = vidlake(*args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_time_and_track_queries(cli_index):
    """The red square shows 0-4 s in a_red_first_half (and its copy) and c_all_four, sampled
    at 4 fps in 2 s clips: one track each, first frame 0 s, last 3.75 s; the blue circle
    starts at 0 s in both videos."""
    query = ("query", "--index", cli_index, "red square")
    red_videos = {"a_red_first_half.mp4", "c_all_four.mp4", ODD_NAME}
    tracks = _json(*query, "--min-duration", "3.5")
    assert {Path(r["video_uri"]).name for r in tracks} == red_videos
    assert {(r["start_s"], r["end_s"], r["duration_s"]) for r in tracks} == {(0.0, 3.75, 3.75)}
    assert _json(*query, "--min-duration", "3.8") == []
    pairs = _json(*query, "--then", "blue circle", "--within", "0.5", "--order", "time")
    assert {Path(r["video_uri"]).name for r in pairs} == red_videos
    assert all(r["concepts"] == ["red square", "blue circle"] for r in pairs)
    assert all(r["starts_s"] == [0.0, 0.0] and r["ends_s"][0] == 3.75 for r in pairs)
    frames = _json(*query, "--same-frame")
    assert {Path(r["video_uri"]).name for r in frames} == red_videos
    assert all(r["times_s"] == [i / 4 for i in range(16)] for r in frames)
    # Centres: a_red_first_half x 40-56 of 160, y 35 of 120; c_all_four 30, 30: top left.
    assert len(_json(*query, "--region", "0,0,0.5,0.5")) == 3
    assert _json(*query, "--region", "0.5,0,1,1") == []
    table = vidlake(*query, "--min-duration", "3.5")
    assert table.returncode == 0 and "duration s" in table.stdout and "3.75" in table.stdout
    as_csv = vidlake(*query, "--then", "blue circle", "--within", "1", "--csv")
    row = next(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert json.loads(row["concepts"]) == ["red square", "blue circle"]


def test_stats_and_sql(cli_index):
    stats = _json("stats", "--index", cli_index, "red square")
    assert stats["totals"] == {"videos": 3, "screen_time_s": 11.25, "tracks": 3, "max_at_once": 1}
    assert {Path(v["video_uri"]).name: v["screen_time_s"] for v in stats["videos"]} == {
        "a_red_first_half.mp4": 3.75,
        "c_all_four.mp4": 3.75,
        ODD_NAME: 3.75,
    }
    table = vidlake("stats", "--index", cli_index, "blue circle")
    assert table.returncode == 0 and "screen time s" in table.stdout and "total" in table.stdout
    sql = ("sql", "--index", cli_index)
    rows = _json(*sql, "SELECT concept, count(*) AS n FROM tracks GROUP BY 1 ORDER BY 1")
    assert rows == [{"concept": "blue circle", "n": 3}, {"concept": "red square", "n": 3}]
    plain_out = vidlake(*sql, "SELECT count(*) AS n FROM videos")
    assert plain_out.returncode == 0 and "4" in plain_out.stdout
    assert_one_line_error(vidlake(*sql, "SELEC nothing"), "sql:")


def test_bad_time_and_track_options_exit_2_naming_the_option(cli_index):
    query = ("query", "--index", cli_index, "red square")
    assert_one_line_error(vidlake(*query, "--within", "2"), "--within needs --then")
    assert_one_line_error(
        vidlake(*query, "--min-duration", "-1"), "--min-duration must be >= 0", "-1"
    )
    assert_one_line_error(vidlake(*query, "--region", "0,0,2,1"), "--region", "outside the frame")
    assert_one_line_error(vidlake(*query, "--region", "left"), "--region must be x0,y0,x1,y1")
    assert_one_line_error(
        vidlake(*query, "--then", "green dragon", "--within", "1"),
        "--then 'green dragon' is not an indexed concept",
    )
    assert_one_line_error(vidlake(*query, "--then", "blue circle"), "--then needs --within")
    assert_one_line_error(
        vidlake("stats", "--index", cli_index, "green dragon"), "'green dragon' is not an indexed"
    )
