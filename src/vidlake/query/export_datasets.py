"""Result sets as dataset folders that training and annotation tools read: Ultralytics YOLO
segmentation (`export_yolo`), CVAT for video 1.1 (`export_cvat`) and MOTS (`export_mots`),
each with the hit clips' frames as JPEG images; and where such a folder is written (--out, a
new or empty local folder, or an s3:// prefix the folder is uploaded to when complete).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from vidlake.errors import UsageError
from vidlake.query.engine import ConceptIndex
from vidlake.query.export import (
    OutPath,
    checked_filesystem,
    export_rows,
    is_remote,
    out_filesystem,
    writing,
)
from vidlake.query.export_cvat import write_cvat
from vidlake.query.export_mots import write_mots
from vidlake.query.export_yolo import write_yolo

WRITERS = {"yolo": write_yolo, "cvat": write_cvat, "mots": write_mots}
DATASET_FORMATS = tuple(WRITERS)


def prepare_folder(out: OutPath, storage_options: dict | None = None) -> None:
    """Checks that OUT can take a dataset folder: a new or empty folder (made here), or an
    s3:// prefix with nothing under it; a UsageError says why not. Called before the work."""
    if is_remote(out):
        fs, path = checked_filesystem(os.fspath(out), storage_options)
        with writing(out):
            if fs.isfile(path):
                raise UsageError(f"--out {out} is a file; name a new or empty folder")
            if fs.exists(path) and fs.ls(path):
                raise UsageError(f"--out {out} is not empty; name a new or empty folder")
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty; name a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def local_folder(out: OutPath, storage_options: dict | None = None) -> Iterator[Path]:
    """A local folder to write OUT's dataset in, put in place when the block ends without an
    error, so that a failure (a video gone from its URI) leaves no half dataset: a hidden
    sibling of OUT that replaces it (it is empty: prepare_folder), or for a URI a temporary
    folder uploaded under it."""
    if not is_remote(out):
        out = Path(out)
        with writing(out):
            partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
            if out.is_dir():  # mkdtemp's folder is private (0700); keep OUT's own mode
                partial.chmod(out.stat().st_mode & 0o7777)
        try:
            yield partial
            with writing(out):
                os.replace(partial, out)  # POSIX rename: an empty folder is replaced
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return
    uri = os.fspath(out)
    with tempfile.TemporaryDirectory(prefix="vidlake-out-") as folder:
        yield Path(folder)
        fs, path = out_filesystem(uri, storage_options)
        with writing(uri):
            fs.put(f"{folder}/", path.rstrip("/"), recursive=True)


def write_dataset(
    index: ConceptIndex,
    hits: pa.Table,
    fmt: str,
    out: OutPath,
    concepts: Sequence[str] | None = None,
) -> int:
    """Writes the masks and frames of HITS (rows of `search`) as a FMT dataset folder at OUT
    (checked with prepare_folder first); gives the number of object masks (object-frames)
    written. CONCEPTS are the dataset's classes (default: those of HITS), so that a result
    with no hits is still an empty dataset of the phrase's class."""
    if fmt not in WRITERS:
        raise UsageError(f"--format must be one of {', '.join(DATASET_FORMATS)}, got {fmt!r}")
    options = index.store.storage_options
    rows = export_rows(index, hits, concepts)
    with local_folder(out, options) as folder, writing(out):
        return WRITERS[fmt](index, rows, folder)
