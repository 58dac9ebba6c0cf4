from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import fsspec
import pytest

from vidlake.errors import VideoError
from vidlake.operators.probe import list_videos, probe_video
from vidlake.synthetic.corpus import SyntheticVideo


def test_probe_reports_the_written_stream(synthetic_corpus: list[SyntheticVideo]) -> None:
    for video in synthetic_corpus:
        info = probe_video(video.uri)
        assert info.uri == video.uri
        assert info.fps == pytest.approx(video.fps)
        assert info.n_frames == video.n_frames
        assert info.duration_s == pytest.approx(video.n_frames / video.fps, abs=1 / video.fps)
        assert (info.width, info.height) == (video.width, video.height)
        assert info.codec == "h264"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", "empty file"),
        ("text", "not a readable video"),
        ("truncated", "truncated"),
        ("zero_frames", "zero decodable frames"),
    ],
)
def test_bad_input_raises_one_line_error_naming_the_file(
    bad_inputs: dict[str, Path], kind: str, words: str
) -> None:
    path = str(bad_inputs[kind])
    with pytest.raises(VideoError) as caught:
        probe_video(path)
    message = str(caught.value)
    assert "\n" not in message
    assert path in message
    assert words in message


def test_missing_video_raises(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="not found") as caught:
        probe_video(missing)
    assert missing in str(caught.value)


def test_probe_and_list_through_fsspec_memory_filesystem(
    synthetic_corpus: list[SyntheticVideo],
) -> None:
    video = synthetic_corpus[0]
    fs = fsspec.filesystem("memory")
    fs.pipe("/vidlake-probe/sub/a.mp4", Path(video.uri).read_bytes())
    fs.pipe("/vidlake-probe/readme.md", b"not a video")
    try:
        info = probe_video("memory://vidlake-probe/sub/a.mp4")
        assert info.n_frames == video.n_frames
        listed = list_videos("memory://vidlake-probe")
        # Only the video is listed, with its protocol, and the listed uri opens again.
        assert len(listed) == 1
        assert listed[0].uri.startswith("memory://")
        assert listed[0].uri.endswith("vidlake-probe/sub/a.mp4")
        assert listed[0].size == Path(video.uri).stat().st_size
        assert probe_video(listed[0].uri).n_frames == video.n_frames
    finally:
        fs.rm("/vidlake-probe", recursive=True)


@pytest.fixture
def video_tree(tmp_path: Path, synthetic_corpus: list[SyntheticVideo]) -> Path:
    """tmp/videos with nested videos of several extensions and files that are not videos."""
    root = tmp_path / "videos"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(synthetic_corpus[0].uri, root / "a.mp4")
    shutil.copy(synthetic_corpus[1].uri, root / "sub" / "b.MOV")
    shutil.copy(synthetic_corpus[2].uri, root / "sub" / "deeper" / "c.mkv")
    (root / "notes.txt").write_text("not a manifest, just notes\n")
    (root / "sub" / "frame.png").write_bytes(b"\x89PNG")
    return root


def test_list_folder_is_recursive_and_keeps_only_video_extensions(video_tree: Path) -> None:
    sources = list_videos(str(video_tree))
    assert [s.uri for s in sources] == [
        str(video_tree / "a.mp4"),
        str(video_tree / "sub" / "b.MOV"),
        str(video_tree / "sub" / "deeper" / "c.mkv"),
    ]
    assert sources[0].size == (video_tree / "a.mp4").stat().st_size
    assert sources[0].version  # mtime on a local filesystem


def test_list_glob(video_tree: Path) -> None:
    sources = list_videos(str(video_tree / "**" / "*.m*"))
    assert {Path(s.uri).name for s in sources} == {"a.mp4", "c.mkv"}


def test_list_manifest_with_relative_and_absolute_uris(video_tree: Path) -> None:
    manifest = video_tree / "list.txt"
    manifest.write_text(f"# videos to index\n\nsub/b.MOV\n{video_tree / 'a.mp4'}\n")
    sources = list_videos(str(manifest))
    assert [s.uri for s in sources] == [
        str(video_tree / "a.mp4"),
        str(video_tree / "sub" / "b.MOV"),
    ]


def test_manifest_naming_a_missing_video_raises(video_tree: Path) -> None:
    manifest = video_tree / "list.txt"
    manifest.write_text("a.mp4\nmissing.mp4\n")
    with pytest.raises(VideoError, match="missing.mp4"):
        list_videos(str(manifest))


def test_manifest_lines_naming_no_file_are_handed_back_and_the_rest_listed(
    video_tree: Path,
) -> None:
    manifest = video_tree / "list.txt"
    manifest.write_text("a.mp4\nmissing.mp4\nsub\ns3:/bucket/x.mp4\n")
    missing: list = []
    sources = list_videos(str(manifest), missing=missing)
    assert [s.uri for s in sources] == [str(video_tree / "a.mp4")]
    assert [(s.uri, s.version) for s, _ in missing] == [
        (str(video_tree / "missing.mp4"), "missing"),
        (str(video_tree / "sub"), "missing"),
        ("s3:/bucket/x.mp4", "missing"),  # as written: no path was ever made of it
    ]
    assert "'missing.mp4'" in missing[0][1] and "not found" in missing[0][1]
    assert "folder" in missing[1][1]
    # A scheme with one slash is named as the typo it is, not as a file not found.
    assert "one slash" in missing[2][1] and "s3://bucket/x.mp4" in missing[2][1]


def test_a_file_named_with_glob_characters_is_listed_as_itself(video_tree: Path) -> None:
    odd = video_tree / "clip [1] *.mp4"
    odd.write_bytes((video_tree / "a.mp4").read_bytes())
    assert [s.uri for s in list_videos(str(odd))] == [str(odd)]


def test_explicit_file_is_listed_whatever_its_extension(video_tree: Path) -> None:
    png = video_tree / "sub" / "frame.png"
    assert [s.uri for s in list_videos(str(png))] == [str(png)]


def test_list_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="not found"):
        list_videos(str(tmp_path / "nowhere"))


def test_fingerprint_changes_when_the_file_changes(video_tree: Path) -> None:
    path = video_tree / "a.mp4"
    before = list_videos(str(path))[0]
    path.write_bytes(path.read_bytes() + b"\0")
    after = list_videos(str(path))[0]
    assert after.video_id == before.video_id
    assert after.fingerprint != before.fingerprint


def test_manifest_on_a_remote_filesystem_resolves_relative_uris(
    synthetic_corpus: list[SyntheticVideo],
) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/vidlake-manifest/v/a.mp4", Path(synthetic_corpus[0].uri).read_bytes())
    fs.pipe("/vidlake-manifest/list.txt", b"v/a.mp4\n")
    try:
        (source,) = list_videos("memory://vidlake-manifest/list.txt")
        assert source.uri.startswith("memory://")
        assert source.uri.endswith("vidlake-manifest/v/a.mp4")
        assert probe_video(source.uri).n_frames == synthetic_corpus[0].n_frames
    finally:
        fs.rm("/vidlake-manifest", recursive=True)


def test_a_source_without_videos_is_a_usage_error(tmp_path: Path) -> None:
    from vidlake.errors import EmptySourceError, UsageError

    (tmp_path / "notes.txt").write_text("no videos here")
    with pytest.raises(EmptySourceError, match="no video files") as caught:
        list_videos(str(tmp_path))
    assert isinstance(caught.value, UsageError)
    with pytest.raises(EmptySourceError, match="no files match"):
        list_videos(str(tmp_path / "*.mp4"))


def test_a_folder_without_videos_says_what_it_skipped(tmp_path: Path) -> None:
    from vidlake.errors import EmptySourceError

    with pytest.raises(EmptySourceError) as caught:
        list_videos(str(tmp_path))
    assert str(caught.value) == f"no video files under {tmp_path}"
    (tmp_path / "a.txt").write_text("notes")
    (tmp_path / "b.JPG").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "c.txt").write_text("more notes")
    with pytest.raises(EmptySourceError) as caught:
        list_videos(str(tmp_path))
    assert str(caught.value) == (
        f"no video files under {tmp_path} (3 files skipped as not videos: 2 .txt, 1 .jpg)"
    )


def test_a_folder_lists_every_video_container_and_counts_what_it_skips(archive: Path) -> None:
    from archive_corpus import ARCHIVE_BAD, ARCHIVE_NOT_VIDEOS, ARCHIVE_VIDEOS

    skipped: Counter[str] = Counter()
    listed = {Path(s.uri).name for s in list_videos(str(archive), not_videos=skipped)}
    # Every container by its extension, "camera_dump" (no extension) by its content, and the
    # bad inputs named like videos, which fail at probe; nothing else.
    assert listed == {name for name, *_ in ARCHIVE_VIDEOS} | set(ARCHIVE_BAD)
    assert skipped == ARCHIVE_NOT_VIDEOS


def test_every_archive_container_probes(archive: Path) -> None:
    from archive_corpus import ARCHIVE_VIDEOS

    codecs = {}
    for name, _, _, fps in ARCHIVE_VIDEOS:
        info = probe_video(str(archive / name))
        assert (info.fps, info.n_frames, info.width, info.height) == (fps, 8, 128, 96), name
        codecs[name] = info.codec
    assert codecs["prores.mov"] == "prores" and codecs["wmv2.wmv"] == "wmv2"
    assert codecs["hevc.mts"] == "hevc" and "av1" in codecs["av1.mp4"] + "dav1d"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty.ts", "empty file (0 bytes)"),
        ("fake.mxf", "not a readable video"),
        ("audio_only.mp4", "no video stream in"),
        ("voice.m4a", "no video stream in"),
        ("photo.jpg", "an image (jpeg_pipe), not a video"),
        ("unknown.bin", "not a readable video"),
    ],
)
def test_files_that_are_not_videos_fail_in_one_line_when_named(
    archive: Path, name: str, words: str
) -> None:
    path = str(archive / name)
    assert [s.uri for s in list_videos(path)] == [path]  # named: listed, judged by probing
    with pytest.raises(VideoError) as caught:
        probe_video(path)
    message = str(caught.value)
    assert "\n" not in message and path in message and words in message, message


def test_holds_video_judges_by_content(archive: Path) -> None:
    from vidlake.operators.probe import holds_video

    assert holds_video(str(archive / "camera_dump"))
    for name in ("photo.jpg", "voice.m4a", "unknown.bin", "empty.ts", "notes.txt"):
        assert not holds_video(str(archive / name)), name


def test_hidden_files_and_folders_are_skipped_unless_named(video_tree: Path) -> None:
    from vidlake.errors import EmptySourceError

    video = video_tree / "a.mp4"
    shutil.copy(video, video_tree / ".hidden.mp4")
    (video_tree / "._a.mp4").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata
    (video_tree / ".cache").mkdir()
    shutil.copy(video, video_tree / ".cache" / "copy.mp4")
    listed = [s.uri for s in list_videos(str(video_tree))]
    assert not [uri for uri in listed if "/." in uri], listed
    assert [s.uri for s in list_videos(str(video_tree / "*.mp4"))] == [str(video)]

    # Named explicitly, or asked for by the pattern, or the listed folder is itself hidden.
    assert [s.uri for s in list_videos(str(video_tree / "._a.mp4"))] == [
        str(video_tree / "._a.mp4")
    ]
    assert {Path(s.uri).name for s in list_videos(str(video_tree / ".*.mp4"))} == {
        ".hidden.mp4",
        "._a.mp4",
    }
    assert [s.uri for s in list_videos(str(video_tree / ".cache"))] == [
        str(video_tree / ".cache" / "copy.mp4")
    ]

    only_hidden = video_tree / "only_hidden"
    only_hidden.mkdir()
    shutil.copy(video, only_hidden / "._x.mp4")
    with pytest.raises(EmptySourceError, match=r"under .*only_hidden \(1 hidden file skipped\)"):
        list_videos(str(only_hidden))


def test_a_uri_with_one_slash_is_a_usage_error_not_a_path(tmp_path: Path) -> None:
    from vidlake.errors import UsageError

    with pytest.raises(UsageError, match=r"s3:/bucket/v\.mp4 has one slash .* s3://bucket/v\.mp4"):
        list_videos("s3:/bucket/v.mp4")
