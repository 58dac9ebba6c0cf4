"""Export (COCO RLE, YouTube-VIS) and overlay previews of search results."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vidlake.errors import UsageError
from vidlake.query.engine import ConceptIndex
from vidlake.query.export import export_hits, prepare_output, write_json
from vidlake.query.preview import (
    MASK_ALPHA,
    OVERLAY_PALETTE,
    _draw_label,
    concept_colors,
    write_preview,
)
from vidlake.synthetic.corpus import PALETTE


@pytest.fixture(scope="module")
def engine(query_index):
    return ConceptIndex.open(query_index.uri)


def _stored_masks(engine, hits) -> dict[tuple[str, int], np.ndarray]:
    masks = {}
    for m in engine.masklets(hits.column("clip_id").to_pylist(), ["red square"]).to_pylist():
        for fi, rle in zip(m["frame_idx"], m["masks"], strict=True):
            masks[(m["clip_id"], fi)] = mask_utils.decode(
                {"size": rle["size"], "counts": rle["counts"]}
            )
    return masks


def test_coco_export_loads_with_pycocotools_and_masks_round_trip(engine, tmp_path):
    hits = engine.search("red square", limit=None)
    data = export_hits(engine, hits, "coco")
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    coco = COCO(str(path))
    stored = _stored_masks(engine, hits)
    assert len(coco.getAnnIds()) == len(stored) > 0
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["red square"]
    clip_frames = {}
    for clip in engine.clips(hits.column("clip_id").to_pylist()).to_pylist():
        clip_frames[clip["clip_id"]] = clip["frame_indices"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        fi = clip_frames[image["clip_id"]].index(image["frame_index"])
        got = coco.annToMask(ann)
        assert np.array_equal(got, stored[(image["clip_id"], fi)])
        assert ann["area"] == got.sum()
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(got)
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_ytvis_export_has_the_documented_fields(engine):
    hits = engine.search("red square", limit=None)
    data = export_hits(engine, hits, "ytvis")
    assert set(data) == {"info", "videos", "annotations", "categories"}
    assert len(data["videos"]) == hits.num_rows
    videos = {v["id"]: v for v in data["videos"]}
    for v in data["videos"]:
        assert {"id", "width", "height", "length", "file_names"} <= set(v)
        assert len(v["file_names"]) == v["length"]
    stored = _stored_masks(engine, hits)
    for ann in data["annotations"]:
        assert {
            "id", "video_id", "category_id", "segmentations", "bboxes", "areas", "iscrowd"
        } <= set(ann)  # fmt: skip
        video = videos[ann["video_id"]]
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == video["length"]
        for fi, seg in enumerate(ann["segmentations"]):
            if seg is None:
                assert (video["clip_id"], fi) not in stored
                continue
            got = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert np.array_equal(got, stored[(video["clip_id"], fi)])
    with pytest.raises(UsageError):
        export_hits(engine, hits, "voc")  # type: ignore[arg-type]


def _blend(concept: str) -> np.ndarray:
    overlay = concept_colors(["red square", "blue circle"])[concept]
    return (1 - MASK_ALPHA) * np.array(PALETTE[concept]) + MASK_ALPHA * np.array(overlay)


def _near(frame: np.ndarray, color: np.ndarray, tol: float) -> int:
    return int((np.abs(frame.astype(float) - color).max(axis=-1) < tol).sum())


@pytest.mark.parametrize("suffix", [".png", ".gif", ".mp4"])
def test_preview_draws_the_masks_in_their_colours(engine, tmp_path, suffix):
    # Both shapes in one frame, so that the first frame shows both overlays.
    hit = engine.search(
        "red square", with_concepts="blue circle", same_frame=True, videos="*c_all_four*", limit=1
    ).to_pylist()[0]
    out = write_preview(engine, hit["clip_id"], tmp_path / f"p{suffix}")
    if suffix == ".mp4":
        with av.open(str(out)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    else:
        with Image.open(out) as image:
            frames = []
            for i in range(getattr(image, "n_frames", 1)):
                image.seek(i)
                frames.append(np.asarray(image.convert("RGB")))
    clip = engine.clips([hit["clip_id"]]).to_pylist()[0]
    if suffix == ".gif":
        assert 1 <= len(frames) <= clip["n_frames"]  # Pillow merges identical consecutive frames
    else:
        assert len(frames) == (1 if suffix == ".png" else clip["n_frames"])
    tol = 12 if suffix == ".png" else 40  # GIF palettes and H.264 shift colours a little
    for concept in ("red square", "blue circle"):
        assert _near(frames[0], _blend(concept), tol) > 200, concept
    # The raw shape colour is gone where the overlay covers it.
    assert _near(frames[0], np.array(PALETTE["red square"]), 12) < 50


def test_preview_of_unknown_clip_format_or_concept_is_a_usage_error(engine, tmp_path):
    with pytest.raises(UsageError):
        write_preview(engine, "no-such-clip", tmp_path / "p.gif")
    clip = engine.search("red square", limit=1).column("clip_id")[0].as_py()
    with pytest.raises(UsageError):
        write_preview(engine, clip, tmp_path / "p.bmp")
    with pytest.raises(UsageError, match="no objects of 'green triangle'"):
        write_preview(engine, clip, tmp_path / "p.png", ["red square", "green triangle"])
    assert not (tmp_path / "p.png").exists()


def test_a_failed_write_is_a_usage_error_naming_out(engine):
    # /proc exists (its "folder" is made), but no file can be created in it
    with pytest.raises(UsageError, match=r"^cannot write --out /proc/vidlake\.json: "):
        write_json({"a": 1}, "/proc/vidlake.json")
    clip = engine.search("red square", limit=1).column("clip_id")[0].as_py()
    for suffix in (".png", ".gif", ".mp4"):
        out = f"/proc/vidlake{suffix}"
        with pytest.raises(UsageError, match=rf"^cannot write --out {out}: "):
            write_preview(engine, clip, out)


def test_concepts_of_one_preview_get_distinct_colours():
    names = [f"concept {i}" for i in range(len(OVERLAY_PALETTE))]
    colors = concept_colors(reversed(names))
    assert sorted(colors) == sorted(names)
    assert len(set(colors.values())) == len(names)
    # Distinct to the eye, not just different: no two within 75 on every channel.
    values = list(colors.values())
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) >= 75, (a, b)
    assert concept_colors(["b", "a"]) == concept_colors(["a", "b", "a"])


@pytest.mark.parametrize("box", [[150, 0, 160, 8], [0, 40, 10, 48], [156, 44, 160, 48]])
def test_labels_stay_inside_the_frame(box):
    from PIL import ImageDraw

    image = Image.new("RGB", (160, 48))
    color = OVERLAY_PALETTE[0]
    draw = ImageDraw.Draw(image)
    _draw_label(draw, "red square 0.99", box, color, image.size)
    left, top, right, bottom = draw.textbbox((0, 0), "red square 0.99")
    filled = np.argwhere(np.all(np.asarray(image) == color, axis=-1))
    (y0, x0), (y1, x1) = filled.min(axis=0), filled.max(axis=0)
    # The whole background is drawn: as wide and high as the text and its padding.
    assert (x1 - x0 + 1, y1 - y0 + 1) == (right - left + 4, bottom - top + 4)


def test_videos_of_one_file_name_in_two_folders_stay_apart(tmp_path, index_synthetic):
    from query_truth import apart_video

    from vidlake.query.export import frame_name

    videos = [apart_video(tmp_path / folder) for folder in ("A", "B")]
    assert {Path(v.uri).name for v in videos} == {"d_apart.mp4"}
    engine = ConceptIndex.open(index_synthetic(tmp_path, videos, ("red square",)))
    hits = engine.search("red square", limit=None)
    assert len(set(hits.column("video_id").to_pylist())) == 2
    coco = export_hits(engine, hits, "coco")
    names = [image["file_name"] for image in coco["images"]]
    assert len(names) == len(set(names))
    assert all(name.startswith("d_apart.mp4-") for name in names)  # still readable
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    loaded = COCO(str(path))
    assert len(loaded.getImgIds()) == len(names)
    for ann in loaded.loadAnns(loaded.getAnnIds()):  # each mask on its own video's frame
        image = loaded.loadImgs(ann["image_id"])[0]
        assert (
            image["file_name"]
            .split("/")[0]
            .endswith(engine.clips([image["clip_id"]]).column("video_id")[0].as_py())
        )
    ytvis = export_hits(engine, hits, "ytvis")
    frames = [f for video in ytvis["videos"] for f in video["file_names"]]
    assert len(frames) == len(set(frames))
    clip = engine.clips(hits.column("clip_id").to_pylist()[:1]).to_pylist()[0]
    assert frame_name(clip, 3) == f"d_apart.mp4-{clip['video_id']}/00000/00000003.jpg"


def test_an_unreachable_s3_out_is_one_line_before_any_work():
    options = {
        "aws_endpoint": "http://127.0.0.1:9",  # nothing listens on the discard port
        "aws_access_key_id": "x",
        "aws_secret_access_key": "y",
    }
    with pytest.raises(UsageError) as info:
        prepare_output("s3://bucket/x.json", options)
    message = str(info.value)
    assert message.startswith("--out s3://bucket/x.json: unreachable endpoint http://127.0.0.1:9")
    assert "\n" not in message


def test_an_s3_out_in_a_missing_bucket_is_named(moto_s3):
    with pytest.raises(UsageError, match="^--out s3://vidlake-no-bucket/x.json: no such bucket"):
        prepare_output("s3://vidlake-no-bucket/x.json", moto_s3.options)
    prepare_output(f"s3://{moto_s3.bucket()}/out/x.json", moto_s3.options)  # a reachable one
