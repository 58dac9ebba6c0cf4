"""Dataset-folder exports (Ultralytics YOLO segmentation, CVAT for video 1.1, MOTS), each read
back as its users' tools read it and compared with the stored masks (exactly) and with the
synthetic videos' drawn shapes (their ground truth).

How each is read back, and why:
- MOTS: by TrackEval (`trackeval` on PyPI, the MOTChallenge benchmark's evaluation code), its
  MOTSChallenge reader, which also rejects overlapping masks and frames outside the sequence.
- YOLO: by Ultralytics' own `YOLODataset` (the `ultralytics` package, installed without its
  dependencies: they would add opencv-python, whose cv2 clobbers opencv-python-headless's, and
  matplotlib and polars, which reading does not need), and by a reading written to Ultralytics'
  documentation (https://docs.ultralytics.com/datasets/segment/, label paths as its
  `img2label_paths`), which also runs where ultralytics is absent and reads empty datasets
  (YOLODataset refuses a folder without images). Both compare polygons, rasterised here with
  rounding: Ultralytics' own rasteriser truncates to int32, a pixel off on some edges.
- CVAT: no reader runs without a CVAT server (`cvat-sdk` is its API client) or Datumaro (which
  needs opencv-python too); so the test parses the XML to CVAT's published description
  (https://docs.cvat.ai/docs/dataset_management/formats/format-cvat/, "CVAT for videos").
"""

from __future__ import annotations

import configparser
import csv
import dataclasses
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from vidlake.errors import UsageError
from vidlake.query.engine import ConceptIndex
from vidlake.query.export import export_rows, frame_name, sequence_name
from vidlake.query.export_cvat import cvat_xml
from vidlake.query.export_datasets import prepare_folder, write_dataset
from vidlake.query.export_mots import _lines, mots_class_ids
from vidlake.query.export_yolo import yolo_labels
from vidlake.query.polygons import mask_polygons
from vidlake.synthetic.corpus import PALETTE

CONCEPT = "red square"


@pytest.fixture(scope="module")
def engine(query_index):
    return ConceptIndex.open(query_index.uri)


@pytest.fixture(scope="module")
def hits(engine):
    return engine.search(CONCEPT, limit=None)


@pytest.fixture(scope="module")
def stored(engine, hits) -> dict[str, dict[int, list[np.ndarray]]]:
    """{clip_id: {sample index: [(H, W) bool mask of each object]}} of the hits, as stored."""
    out: dict[str, dict[int, list[np.ndarray]]] = {}
    for m in engine.masklets(hits.column("clip_id").to_pylist(), [CONCEPT]).to_pylist():
        for fi, rle in zip(m["frame_idx"], m["masks"], strict=True):
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]}).astype(bool)
            out.setdefault(m["clip_id"], {}).setdefault(fi, []).append(mask)
    return out


@pytest.fixture(scope="module")
def clips(engine, hits) -> list[dict]:
    """The hit clips' rows, in result order (the order of the exports' sequences)."""
    ids = hits.column("clip_id").to_pylist()
    rows = {r["clip_id"]: r for r in engine.clips(ids).to_pylist()}
    return [rows[i] for i in ids]


@pytest.fixture(scope="module")
def exported(engine, hits, tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """{format: (folder, object masks written)}: the hits of CONCEPT exported once per module."""
    out = {}
    for fmt in ("yolo", "cvat", "mots"):
        folder = tmp_path_factory.mktemp(f"export_{fmt}") / "dataset"
        prepare_folder(folder)
        out[fmt] = (folder, write_dataset(engine, hits, fmt, folder, [CONCEPT]))
    return out


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _filled(mask: np.ndarray) -> np.ndarray:
    """MASK with its holes filled (polygon formats have no holes)."""
    return ndimage.binary_fill_holes(mask)


def _parts(mask: np.ndarray) -> int:
    """Number of 8-connected parts of MASK (one polygon each)."""
    return int(ndimage.label(mask, structure=np.ones((3, 3)))[1])


def _assert_truth(query_index, clip: dict, fi: int, mask: np.ndarray) -> None:
    """MASK (a read-back mask of CONCEPT at sample FI of CLIP) is the shape the video drew."""
    truth = query_index.videos[clip["video_uri"]].mask(CONCEPT, clip["frame_indices"][fi])
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8, (clip["clip_id"], fi, iou)


def _assert_frames(images: list[Path], clip: dict, masks: dict[int, list[np.ndarray]]) -> None:
    """IMAGES are CLIP's sampled frames in order: its size, and CONCEPT's colour under masks."""
    assert len(images) == clip["n_frames"]
    for fi, path in enumerate(images):
        with Image.open(path) as image:
            assert image.size == (clip["width"], clip["height"])
            pixels = np.asarray(image.convert("RGB")).astype(float)
        for mask in masks.get(fi, []):
            inner = ndimage.binary_erosion(mask, iterations=2)  # JPEG blurs the edges
            if inner.any():
                mean = pixels[inner].mean(axis=0)
                assert np.abs(mean - PALETTE[CONCEPT]).max() < 30, (path, mean)


# -- YOLO --------------------------------------------------------------------------------------


def _read_yolo(folder: Path) -> tuple[dict, dict[Path, list[tuple[int, np.ndarray]]]]:
    """(data.yaml, {image: [(class, (K, 2) normalised x, y)]}) as Ultralytics' docs define it:
    `path` absent means the yaml's folder; `train`/`val` are image folders under it; an image's
    label file is its path with the last `images` folder replaced by `labels` and `.txt`; each
    line is a class index and >= 3 normalised x y pairs."""
    data = yaml.safe_load((folder / "data.yaml").read_text())
    root = Path(data.get("path") or folder)
    names = data["names"]
    assert data["nc"] == len(names)
    labels: dict[Path, list[tuple[int, np.ndarray]]] = {}
    for split in ("train", "val"):
        for image in sorted((root / data[split]).rglob("*.jpg")):
            parts = list(image.relative_to(root).parts)
            parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
            label = root.joinpath(*parts).with_suffix(".txt")
            rows = []
            for line in label.read_text().splitlines():
                values = line.split()
                cls, coords = int(values[0]), np.array(values[1:], float)
                assert 0 <= cls < len(names) and len(coords) % 2 == 0 and len(coords) >= 6
                assert (coords >= 0).all() and (coords <= 1).all()
                rows.append((cls, coords.reshape(-1, 2)))
            labels[image] = rows
    return data, labels


def test_yolo_export_reads_back_as_the_stored_masks(exported, clips, stored, query_index):
    folder, written = exported["yolo"]
    data, labels = _read_yolo(folder)
    assert data["names"] == {0: CONCEPT} and data["train"] == data["val"] == "images"
    assert len(labels) == sum(c["n_frames"] for c in clips)
    assert written == sum(len(v) for masks in stored.values() for v in masks.values()) > 0
    for clip in clips:
        images = [folder / "images" / frame_name(clip, f) for f in clip["frame_indices"]]
        _assert_frames(images, clip, stored.get(clip["clip_id"], {}))
        for fi, image in enumerate(images):
            masks = stored.get(clip["clip_id"], {}).get(fi, [])
            rows = labels[image]
            assert len(rows) == sum(_parts(m) for m in masks)
            assert {cls for cls, _ in rows} <= {0}
            drawn = np.zeros((clip["height"], clip["width"]), np.uint8)
            for _, points in rows:
                pixels = np.rint(points * [clip["width"], clip["height"]]).astype(np.int32)
                cv2.fillPoly(drawn, [pixels], 1)
            want = np.zeros_like(drawn, bool)
            for m in masks:
                want |= _filled(m)
            assert np.array_equal(drawn.astype(bool), want), (image, fi)
            if masks:
                _assert_truth(query_index, clip, fi, drawn.astype(bool))


def test_yolo_export_reads_the_same_in_ultralytics(exported, monkeypatch, tmp_path):
    """Ultralytics' own dataset reader (YOLODataset, as its trainer builds it from data.yaml)
    finds every image, none corrupt, with the labels the spec reading gives. Its data.yaml
    check (`check_det_dataset`) is not called: it downloads a font."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "config"))  # its settings file
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    dataset = pytest.importorskip(
        "ultralytics.data.dataset", reason="ultralytics is in requirements-reference.txt"
    )
    folder = tmp_path / "dataset"  # Ultralytics writes a labels cache next to the labels
    shutil.copytree(exported["yolo"][0], folder)
    data, labels = _read_yolo(folder)
    read = dataset.YOLODataset(
        img_path=str(folder / data["train"]),
        data={**data, "channels": 3},
        task="segment",
        imgsz=160,
        augment=False,
        cache=False,
    )
    assert sorted(Path(lb["im_file"]) for lb in read.labels) == sorted(labels)
    for lb in read.labels:
        want = labels[Path(lb["im_file"])]
        assert lb["cls"].ravel().tolist() == [cls for cls, _ in want]
        assert len(lb["segments"]) == len(want)
        for got, (_, points) in zip(lb["segments"], want, strict=True):
            assert np.allclose(got, points, atol=1e-6)


# -- CVAT --------------------------------------------------------------------------------------


def _read_cvat(path: Path) -> tuple[dict, dict[int, dict]]:
    """(task meta, {track id: {label, group_id, masks: {frame: (H, W) bool}}}) of a CVAT for
    video 1.1 file, per CVAT's description: a track is in view from a shape with outside="0"
    up to its next shape with outside="1"; between keyframes CVAT interpolates, so the test
    asserts there is nothing to interpolate (each frame in view has its own keyframe) and reads
    each frame's polygon (points `x,y;x,y;...`) as it is."""
    root = ET.parse(path).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    meta = {
        "name": task.findtext("name"),
        "size": int(task.findtext("size")),
        "mode": task.findtext("mode"),
        "labels": [label.findtext("name") for label in task.findall("labels/label")],
        "width": int(task.findtext("original_size/width")),
        "height": int(task.findtext("original_size/height")),
        "source": task.findtext("source"),
    }
    tracks = {}
    for track in root.findall("track"):
        assert track.get("label") in meta["labels"]
        shapes = sorted(track.findall("polygon"), key=lambda s: int(s.get("frame")))
        assert shapes and shapes[0].get("outside") == "0"  # a track starts in view
        masks, in_view = {}, None
        for shape in shapes:
            frame = int(shape.get("frame"))
            assert 0 <= frame < meta["size"] and shape.get("keyframe") == "1"
            if in_view is not None:
                assert frame == in_view + 1, "frames in view without a keyframe"
            if shape.get("outside") == "1":
                in_view = None
                continue
            points = [tuple(map(float, p.split(","))) for p in shape.get("points").split(";")]
            assert len(points) >= 3
            mask = np.zeros((meta["height"], meta["width"]), np.uint8)
            cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
            masks[frame], in_view = mask.astype(bool), frame
        assert in_view is None or in_view == meta["size"] - 1, "a track in view past its end"
        group = track.get("group_id")
        tracks[int(track.get("id"))] = {
            "label": track.get("label"),
            "group_id": None if group is None else int(group),
            "masks": masks,
        }
    return meta, tracks


def test_cvat_export_reads_back_as_the_stored_tracks(exported, clips, stored, query_index):
    folder, written = exported["cvat"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(sequence_name(c) for c in clips)
    assert written == sum(len(v) for masks in stored.values() for v in masks.values()) > 0
    objects_left = False
    for clip in clips:
        task = folder / sequence_name(clip)
        meta, tracks = _read_cvat(task / "annotations.xml")
        assert meta == {
            "name": sequence_name(clip),
            "size": clip["n_frames"],
            "mode": "interpolation",
            "labels": [CONCEPT],
            "width": clip["width"],
            "height": clip["height"],
            "source": clip["video_uri"],
        }
        images = [task / "images" / f"frame_{i:06d}.jpg" for i in range(clip["n_frames"])]
        masks = stored.get(clip["clip_id"], {})
        _assert_frames(images, clip, masks)
        with (task / "frames.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [int(r["source_frame"]) for r in rows] == clip["frame_indices"]
        # The colour segmenter finds one object per concept and clip: its parts are the tracks.
        assert all(t["label"] == CONCEPT for t in tracks.values())
        for fi in range(clip["n_frames"]):
            drawn = np.zeros((clip["height"], clip["width"]), bool)
            n = 0
            for t in tracks.values():
                if fi in t["masks"]:
                    drawn |= t["masks"][fi]
                    n += 1
            want = [_filled(m) for m in masks.get(fi, [])]
            assert n == sum(_parts(m) for m in want), (task, fi)
            assert np.array_equal(drawn, np.any(want, axis=0) if want else drawn & False)
            if want:
                _assert_truth(query_index, clip, fi, drawn)
        seen = [fi for fi in range(clip["n_frames"]) if fi in masks]
        if seen and seen[-1] < clip["n_frames"] - 1:
            objects_left = True
    assert objects_left  # some object leaves its clip: outside="1" keyframes were read


# -- MOTS --------------------------------------------------------------------------------------


def _trackeval_dataset(folder: Path, tmp_path: Path):
    """TrackEval's MOTSChallenge over FOLDER as ground truth, with each gt.txt also given as a
    tracker's result (TrackEval reads a sequence only with a tracker beside it)."""
    te = pytest.importorskip("trackeval", reason="trackeval is in requirements-reference.txt")
    seqs = (folder / "seqmaps" / "vidlake.txt").read_text().split()[1:]
    data = tmp_path / "trackers" / "vidlake" / "data"
    data.mkdir(parents=True)
    for seq in seqs:
        shutil.copy(folder / seq / "gt" / "gt.txt", data / f"{seq}.txt")
    config = {
        "GT_FOLDER": str(folder),
        "TRACKERS_FOLDER": str(tmp_path / "trackers"),
        "TRACKERS_TO_EVAL": ["vidlake"],
        "SEQMAP_FILE": str(folder / "seqmaps" / "vidlake.txt"),
        "SKIP_SPLIT_FOL": True,
        "PRINT_CONFIG": False,
    }
    return te.datasets.MOTSChallenge(config), seqs


def test_mots_export_reads_back_in_trackeval(exported, clips, stored, query_index, tmp_path):
    folder, written = exported["mots"]
    dataset, seqs = _trackeval_dataset(folder, tmp_path)
    assert seqs == [sequence_name(c) for c in clips]
    assert (folder / "classes.txt").read_text() == f"1 {CONCEPT}\n"
    lines = 0
    for clip, seq in zip(clips, seqs, strict=True):
        info = configparser.ConfigParser()
        info.read(folder / seq / "seqinfo.ini")
        assert dict(info["Sequence"]) == {
            "name": seq,
            "imdir": "img1",
            "framerate": f"{clip['sampled_fps']:g}",
            "seqlength": str(clip["n_frames"]),
            "imwidth": str(clip["width"]),
            "imheight": str(clip["height"]),
            "imext": ".jpg",
        }
        images = [folder / seq / "img1" / f"{i + 1:06d}.jpg" for i in range(clip["n_frames"])]
        masks = stored.get(clip["clip_id"], {})
        _assert_frames(images, clip, masks)
        raw = dataset.get_raw_seq_data("vidlake", seq)
        assert raw["num_timesteps"] == clip["n_frames"]
        for t in range(clip["n_frames"]):
            got = [mask_utils.decode(d).astype(bool) for d in raw["gt_dets"][t]]
            want = masks.get(t, [])
            assert len(got) == len(want), (seq, t)
            for g, w in zip(got, want, strict=True):  # one object of one concept: no overlap
                assert np.array_equal(g, w)
                _assert_truth(query_index, clip, t, g)
            assert list(raw["gt_classes"][t]) == [1] * len(want)
            assert list(raw["gt_ids"][t]) == [1001] * len(want)  # class 1, instance 1
            assert not mask_utils.area(raw["gt_ignore_region"][t])
            if want:  # the same file as a tracker: each mask matches itself
                assert np.allclose(raw["similarity_scores"][t], np.eye(len(want)))
            lines += len(want)
    assert written == lines > 0


def test_mots_overlaps_go_to_the_higher_score_and_ids_skip_the_ignore_class():
    a = np.zeros((6, 8), bool)
    a[1:4, 1:5] = True
    b = np.zeros((6, 8), bool)
    b[2:5, 3:7] = True
    masklets = [  # a, then b scoring higher on frame 0 and lower on frame 1
        {"concept": "cat", "frame_idx": [0, 1], "scores": [0.6, 0.9], "masks": [_rle(a)] * 2},
        {"concept": "cat", "frame_idx": [0, 1], "scores": [0.8, 0.7], "masks": [_rle(b)] * 2},
    ]
    lines, left_out = _lines({"clip_id": "c"}, masklets, {"cat": 2})
    assert left_out == 0
    got = {}
    for line in lines:
        frame, object_id, class_id, h, w, counts = line.split(" ")
        assert (class_id, h, w) == ("2", "6", "8")
        mask = mask_utils.decode({"size": [6, 8], "counts": counts.encode()}).astype(bool)
        got[int(frame), int(object_id)] = mask
    assert sorted(got) == [(1, 2001), (1, 2002), (2, 2001), (2, 2002)]
    assert np.array_equal(got[1, 2002], b) and np.array_equal(got[1, 2001], a & ~b)
    assert np.array_equal(got[2, 2001], a) and np.array_equal(got[2, 2002], b & ~a)
    # Fully covered by a higher score: no line (MOTS has no empty masks), but counted.
    covered = [dict(masklets[0], scores=[0.9, 0.9]), dict(masklets[1], masks=[_rle(a & b)] * 2)]
    lines, left_out = _lines({"clip_id": "c"}, covered, {"cat": 2})
    assert [line.split(" ")[1] for line in lines] == ["2001", "2001"]
    assert left_out == 2
    names = [f"c{i:02d}" for i in range(12)]
    assert list(mots_class_ids(names).values()) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]


# -- objects in parts, with holes (the synthetic shapes have neither) -------------------------


def _ring_and_dots() -> np.ndarray:
    """(30, 40) bool: a 12x12 square with a 4x4 hole, a disc, a 2-pixel line and a pixel."""
    mask = np.zeros((30, 40), bool)
    mask[2:14, 2:14] = True
    mask[6:10, 6:10] = False
    mask |= cv2.circle(np.zeros((30, 40), np.uint8), (28, 18), 6, 1, -1).astype(bool)
    mask[27, 2:4] = True
    mask[27, 37] = True
    return mask


def test_polygons_are_the_parts_largest_first_without_holes():
    mask = _ring_and_dots()
    polygons = mask_polygons(_rle(mask))
    assert len(polygons) == _parts(mask) == 4
    areas = []
    for p in polygons:
        assert p.dtype == np.int32 and p.shape[1] == 2 and len(p) >= 3
        part = np.zeros(mask.shape, np.uint8)
        cv2.fillPoly(part, [p], 1)
        areas.append(int(part.sum()))
    assert areas == [144, 113, 2, 1]  # the square filled, the disc, the line, the pixel
    drawn = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(drawn, polygons, 1)
    assert np.array_equal(drawn.astype(bool), _filled(mask))
    assert mask_polygons(_rle(np.zeros((4, 4), bool))) == []


def _parted_clip() -> tuple[dict, list[dict]]:
    """A 5-frame clip of (30, 40) whose one object is in 4 parts on frame 0, 1 part on frame 1,
    absent on frame 2 and in 4 parts again on frame 3."""
    mask = _ring_and_dots()
    square = np.zeros_like(mask)
    square[2:14, 2:14] = True
    clip = {
        "clip_id": "c",
        "video_id": "v",
        "video_uri": "/videos/a.mp4",
        "clip_index": 0,
        "n_frames": 5,
        "width": 40,
        "height": 30,
        "frame_indices": [0, 3, 6, 9, 12],
    }
    masklet = {
        "clip_id": "c",
        "concept": "cat",
        "object_id": 0,
        "frame_idx": [0, 1, 3],
        "scores": [0.9, 0.9, 0.9],
        "masks": [_rle(mask), _rle(square), _rle(mask)],
    }
    return clip, [masklet]


def test_yolo_writes_one_line_per_part(tmp_path):
    clip, masklets = _parted_clip()
    texts = yolo_labels(clip, masklets, {"cat": 1, "dog": 2})
    assert [len(t.splitlines()) for t in texts] == [4, 1, 0, 4, 0]
    for fi in (0, 1, 3):
        drawn = np.zeros((30, 40), np.uint8)
        for line in texts[fi].splitlines():
            values = line.split()
            assert values[0] == "0"
            points = np.array(values[1:], float).reshape(-1, 2) * [40, 30]
            cv2.fillPoly(drawn, [np.rint(points).astype(np.int32)], 1)
        want = mask_utils.decode(masklets[0]["masks"][masklets[0]["frame_idx"].index(fi)])
        assert np.array_equal(drawn.astype(bool), _filled(want.astype(bool)))


def test_cvat_tracks_an_object_in_parts_as_a_group(tmp_path):
    clip, masklets = _parted_clip()
    root, written = cvat_xml(clip, masklets, ["cat", "dog"])
    assert written == 3
    path = tmp_path / "annotations.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    meta, tracks = _read_cvat(path)
    assert meta["labels"] == ["cat", "dog"] and meta["size"] == 5
    assert sorted(tracks) == [0, 1, 2, 3]
    assert {t["group_id"] for t in tracks.values()} == {1}
    # The largest part keeps its track on frame 1; the others leave there and come back.
    assert [sorted(tracks[k]["masks"]) for k in range(4)] == [[0, 1, 3], [0, 3], [0, 3], [0, 3]]
    outside = {
        int(t.get("id")): [int(p.get("frame")) for p in t if p.get("outside") == "1"]
        for t in root.findall("track")
    }
    assert outside == {0: [2, 4], 1: [1, 4], 2: [1, 4], 3: [1, 4]}
    mask = _ring_and_dots()
    for fi in (0, 3):
        assert np.array_equal(
            np.any([t["masks"][fi] for t in tracks.values()], axis=0), _filled(mask)
        )


# -- no hits, bad --out ------------------------------------------------------------------------


def test_no_hits_give_empty_valid_datasets(engine, tmp_path):
    none = engine.search("purple hexagon", limit=None)  # indexed, drawn in no video
    assert none.num_rows == 0
    for fmt in ("yolo", "cvat", "mots"):
        folder = tmp_path / fmt
        prepare_folder(folder)
        assert write_dataset(engine, none, fmt, folder, ["purple hexagon"]) == 0
    data, labels = _read_yolo(tmp_path / "yolo")
    assert data["names"] == {0: "purple hexagon"} and labels == {}
    assert list((tmp_path / "cvat").iterdir()) == []
    mots = tmp_path / "mots"
    assert (mots / "seqmaps" / "vidlake.txt").read_text() == "name\n"
    assert (mots / "classes.txt").read_text() == "1 purple hexagon\n"
    rows = export_rows(engine, none, ["purple hexagon"])
    assert rows.categories == {"purple hexagon": 1} and rows.clip_ids == []


def test_out_must_be_a_new_or_empty_folder(engine, hits, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"^--out .*file is a file; name a new or empty folder"):
        prepare_folder(tmp_path / "file")
    with pytest.raises(UsageError, match=r"^--out .* is not empty; name a new or empty folder"):
        prepare_folder(tmp_path)
    with pytest.raises(UsageError, match=r"^cannot create --out /proc/vidlake: "):
        prepare_folder("/proc/vidlake")
    with pytest.raises(UsageError, match="^--format must be one of yolo, cvat, mots, got 'voc'"):
        write_dataset(engine, hits, "voc", tmp_path / "new")


@pytest.mark.parametrize("fmt", ["yolo", "cvat", "mots"])
def test_a_video_gone_from_its_uri_is_one_line_and_leaves_no_half_dataset(
    engine, hits, monkeypatch, tmp_path, fmt
):
    from vidlake.errors import VideoError
    from vidlake.query import export_datasets

    rows = export_rows(engine, hits, [CONCEPT])
    gone = str(tmp_path / "moved" / "a.mp4")
    last = rows.clip_ids[-1]  # the earlier clips are written first
    clips = {**rows.clips, last: {**rows.clips[last], "video_uri": gone}}
    monkeypatch.setattr(
        export_datasets, "export_rows", lambda *a, **k: dataclasses.replace(rows, clips=clips)
    )
    out = tmp_path / "out"
    prepare_folder(out)
    out.chmod(0o755)
    with pytest.raises(VideoError) as info:
        write_dataset(engine, hits, fmt, out, [CONCEPT])
    assert gone in str(info.value) and "\n" not in str(info.value)
    assert sorted(tmp_path.iterdir()) == [out] and list(out.iterdir()) == []
    monkeypatch.undo()
    assert write_dataset(engine, hits.slice(0, 1), fmt, out, [CONCEPT]) > 0
    assert out.stat().st_mode & 0o777 == 0o755 and any(out.iterdir())


def test_a_dataset_is_uploaded_to_an_s3_out(query_index, hits, moto_s3):
    """An s3:// --out is written locally and uploaded whole, under the prefix (with the
    index's storage options, as `vidlake export --storage-option` gives them)."""
    import fsspec

    from vidlake.store.object_store import fsspec_options

    engine = ConceptIndex.open(query_index.uri, moto_s3.options)
    out = f"s3://{moto_s3.bucket()}/exports/yolo"
    prepare_folder(out, moto_s3.options)
    one = hits.slice(0, 1)
    written = write_dataset(engine, one, "yolo", out, [CONCEPT])
    fs = fsspec.filesystem("s3", **fsspec_options(out, moto_s3.options))
    files = sorted(p.split("/exports/yolo/", 1)[1] for p in fs.find(out))
    clip = engine.clips(one.column("clip_id").to_pylist()).to_pylist()[0]
    assert "data.yaml" in files
    assert sum(f.startswith("images/") for f in files) == clip["n_frames"]
    assert sum(f.startswith("labels/") for f in files) == clip["n_frames"]
    assert written > 0
    with pytest.raises(UsageError, match="is not empty"):
        prepare_folder(out, moto_s3.options)
