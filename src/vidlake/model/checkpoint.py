"""Where a SAM 3 checkpoint comes from: a hub id, a local folder, or an object-store URI.

`resolve_checkpoint` turns the user's spec into something `from_pretrained` can load (a hub id
or a local folder) and `load_error` turns whatever loading raised into one `CheckpointError`
line that says how to fix it. The real `facebook/sam3` is gated, so the most common failures
(no licence accepted, no token, no network) must read as instructions, not as tracebacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from vidlake.errors import CheckpointError, one_line

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam3"
SAM3_VIDEO_MODEL_TYPE = "sam3_video"
DEFAULT_CACHE_DIR = Path("~/.cache/vidlake/checkpoints")
COMPLETE_MARKER = ".vidlake-complete"

# "name" or "owner/name", as the hub spells repo ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

_TINY_HINT = "`vidlake model tiny DIR` writes a small random test model that works offline"
_ACCESS_HINT = (
    f"accept the licence at https://huggingface.co/{DEFAULT_MODEL} and run `hf auth login` "
    f"or set HF_TOKEN; or pass a local checkpoint folder or s3:// URI ({_TINY_HINT})"
)


def resolve_checkpoint(
    spec: str = DEFAULT_MODEL,
    cache_dir: str | None = None,
    storage_options: dict | None = None,
) -> str:
    """A hub id or local folder that `from_pretrained` can load, for a checkpoint spec.

    spec: a hub id (passed through unchanged: the hub client downloads and caches it), a local
    folder (checked: it must exist, hold config.json and be a SAM 3 video config), or an fsspec
    URI such as s3://bucket/sam3, gs://…, https://…, file://… (downloaded once into
    cache_dir/<hash of the URI>, default ~/.cache/vidlake/checkpoints, and reused when the
    download completed). storage_options go to fsspec (credentials, endpoint, anon, …).
    """
    spec = spec.strip()
    if not spec:
        raise CheckpointError("empty checkpoint: pass a hub id (facebook/sam3), folder or URI")
    if "://" in spec:
        folder = download_checkpoint(spec, cache_dir=cache_dir, storage_options=storage_options)
        check_checkpoint_folder(folder, spec)
        return str(folder)
    local = Path(spec).expanduser()
    if local.exists() or not _HUB_ID.match(spec):
        check_checkpoint_folder(local, spec)
        return str(local.resolve())
    return spec


def checkpoint_file(spec: str, path: str, filename: str) -> Path | None:
    """One file of a resolved checkpoint (local folder or hub id); None if it has no such file.

    For a hub id only that file is fetched (into the hub cache), so gated, missing or
    unreachable checkpoints fail here, in one line, before any weights or cluster work.
    """
    local = Path(path)
    if local.is_dir():
        found = local / filename
        return found if found.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(path, filename))
    except LocalEntryNotFoundError as exc:  # offline or unreachable, not a missing file
        raise load_error(spec, exc) from exc
    except EntryNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # hub errors are OSErrors; load_error words them
        raise load_error(spec, exc) from exc


# SAM 3's decision settings as Meta ships them (sam3.model_builder.build_sam3_video_model),
# which are also transformers' Sam3VideoConfig defaults (tests/model/test_checkpoint.py checks
# both): what a checkpoint's config.json runs with where it does not say otherwise.
SAM3_SETTINGS: dict[str, float | int] = {
    "score_threshold_detection": 0.5,
    "det_nms_thresh": 0.1,
    "new_det_thresh": 0.7,
    "hotstart_delay": 15,
    "hotstart_unmatch_thresh": 8,
    "hotstart_dup_thresh": 8,
    "suppress_overlapping_based_on_recent_occlusion_threshold": 0.7,
    "fill_hole_area": 16,
    "recondition_every_nth_frame": 16,
}


def sam3_settings(config: dict) -> dict[str, float | int]:
    """The decision settings a SAM 3 video config.json (as a dict) runs with."""
    return {key: config.get(key, default) for key, default in SAM3_SETTINGS.items()}


def quality_steps_off(settings: dict) -> list[str]:
    """The quality steps SETTINGS turn off, in words ("mask NMS (det_nms_thresh 0)")."""
    off = []
    if settings.get("det_nms_thresh", 1) <= 0:
        off.append(f"mask NMS (det_nms_thresh {settings['det_nms_thresh']})")
    if settings.get("fill_hole_area", 1) <= 0:
        off.append(
            f"hole filling and sprinkle removal (fill_hole_area {settings['fill_hole_area']})"
        )
    return off


def check_checkpoint_config(spec: str, path: str) -> dict[str, float | int]:
    """SAM 3's decision settings (`sam3_settings`) of the resolved checkpoint; CheckpointError
    unless it is a reachable SAM 3 video checkpoint.

    Reads config.json as JSON rather than through transformers: the driver checks the model
    without importing transformers (seconds and hundreds of MiB it never uses otherwise).
    """
    config_path = checkpoint_file(spec, path, "config.json")
    if config_path is None:
        raise CheckpointError(f"checkpoint {spec} has no config.json; {_ACCESS_HINT}")
    try:
        config = json.loads(config_path.read_text())
        model_type = config.get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {spec}: unreadable config.json ({exc})") from exc
    if model_type != SAM3_VIDEO_MODEL_TYPE:
        raise CheckpointError(wrong_model_message(spec, model_type))
    if Path(path).is_dir():
        check_weight_files(spec, Path(path))
    return sam3_settings(config)


def check_weight_files(spec: str, folder: Path) -> None:
    """CheckpointError unless FOLDER's safetensors weights are whole, read from their headers.

    A truncated or partly copied model.safetensors otherwise fails inside every segment actor
    once Ray has started; its header (an 8-byte length, then JSON with each tensor's byte
    range) says how long the file must be, without reading the weights.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {spec}: unreadable {index.name} ({exc})") from None
    elif (folder / "model.safetensors").is_file():
        names = ["model.safetensors"]
    elif any(folder.glob("*.bin")):
        return  # PyTorch pickles: no header to check without loading them
    else:
        raise CheckpointError(
            f"checkpoint folder {spec} has no weights (model.safetensors): copy the whole "
            "folder saved with save_pretrained"
        )
    for name in names:
        _check_safetensors(spec, folder / name)


def _check_safetensors(spec: str, file: Path) -> None:
    def broken(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {spec}: {file.name} is {why}; copy or download it again"
        )

    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise broken(f"truncated or not a safetensors file ({size} bytes)")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise broken(f"unreadable ({exc.strerror or exc})") from None
    except ValueError:
        raise broken("not a safetensors file (its header is not JSON)") from None
    ends = [
        t["data_offsets"][1]
        for key, t in header.items()
        if key != "__metadata__" and isinstance(t, dict) and "data_offsets" in t
    ]
    if 8 + n + max(ends, default=0) > size:
        raise broken(f"truncated ({size} of {8 + n + max(ends)} bytes)")


def load_checkpoint_config(spec: str, path: str):
    """The transformers config of a resolved checkpoint; CheckpointError unless SAM 3 video."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(spec, exc) from exc
    if config.model_type != SAM3_VIDEO_MODEL_TYPE:
        raise CheckpointError(wrong_model_message(spec, config.model_type))
    return config


def check_checkpoint_folder(folder: Path, spec: str) -> None:
    """Raises CheckpointError unless folder is a saved SAM 3 video checkpoint."""
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise CheckpointError(
            f"checkpoint folder {spec} {what}: pass a folder saved with "
            f"Sam3VideoModel.save_pretrained, a hub id such as {DEFAULT_MODEL}, or an s3:// URI "
            f"({_TINY_HINT})"
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"checkpoint folder {spec} has no config.json: it is not a saved transformers model "
            f"(expected config.json, model.safetensors and the processor files)"
        )
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {config_file}: {exc}") from exc
    if model_type != SAM3_VIDEO_MODEL_TYPE:
        raise CheckpointError(wrong_model_message(spec, model_type))


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What fsspec raises for a bad URI or store; botocore's own (no credentials, timeouts)
    pass through s3fs untranslated."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, ImportError)
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return errors
    return (*errors, BotoCoreError)


def download_checkpoint(
    uri: str, cache_dir: str | None = None, storage_options: dict | None = None
) -> Path:
    """The local cache folder holding a copy of the checkpoint folder at an fsspec URI.

    The copy goes to a temporary sibling folder that is renamed into place with a completion
    marker, so concurrent workers (one per Ray actor) never load a half-written checkpoint;
    a folder with the marker is reused without touching the remote store.
    """
    import fsspec

    root = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    target = root / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (target / COMPLETE_MARKER).is_file():
        logger.debug("reusing cached checkpoint %s for %s", target, uri)
        return target

    try:
        fs, remote = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if not fs.isdir(remote):
            raise CheckpointError(
                f"checkpoint URI {uri} is not a folder: point it at the folder holding "
                "config.json, model.safetensors and the processor files"
            )
        root.mkdir(parents=True, exist_ok=True)
        partial = root / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
        logger.info("downloading checkpoint %s to %s", uri, target)
        fs.get(remote.rstrip("/") + "/", str(partial), recursive=True)
    except _storage_errors() as exc:
        raise CheckpointError(
            f"cannot download checkpoint {uri}: {one_line(exc)} "
            "(check the URI, credentials and storage options)"
        ) from exc

    (partial / COMPLETE_MARKER).write_text(uri + "\n")
    try:
        partial.rename(target)
    except OSError:
        # Another worker finished first: keep its copy if complete, else take ours.
        if not (target / COMPLETE_MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        else:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def load_error(spec: str, exc: BaseException) -> CheckpointError:
    """A one-line CheckpointError saying how to fix a failure to load checkpoint spec.

    transformers wraps hub failures in OSError; the huggingface_hub exception it wraps (gated
    repo, missing repo, no connection) is found by walking the exception chain.
    """
    from huggingface_hub import errors as hub_errors

    chain = _exception_chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    status = next((_status_code(e) for e in chain if _status_code(e) is not None), None)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}

    if (
        any(isinstance(e, hub_errors.GatedRepoError) for e in chain)
        or status in (401, 403)
        or ("gated repo" in text)
    ):
        message = f"no access to {spec} (gated model, HTTP {status or '401/403'}): {_ACCESS_HINT}"
    elif any(isinstance(e, hub_errors.LocalEntryNotFoundError) for e in chain) or (
        offline or "couldn't connect" in text or "offline mode" in text
    ):
        reason = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub is unreachable"
        message = (
            f"cannot load {spec}: {reason} and it is not in the local hub cache; "
            f"connect once to download it: {_ACCESS_HINT}"
        )
    elif any(isinstance(e, hub_errors.RepositoryNotFoundError) for e in chain) or (
        "not a valid model identifier" in text
    ):
        message = (
            f"no model {spec} on the Hugging Face hub (or it is private): check the id; "
            f"for SAM 3, {_ACCESS_HINT}"
        )
    else:
        message = f"cannot load SAM 3 checkpoint {spec}: {one_line(exc)}"
    return CheckpointError(message)


def wrong_model_message(spec: str, model_type: str | None) -> str:
    """The one-line message for a checkpoint whose config is not a SAM 3 video config."""
    found = f" (model_type {model_type!r})" if model_type else ""
    return (
        f"{spec} is not a SAM 3 video checkpoint{found}: use {DEFAULT_MODEL} or a folder saved "
        f"from Sam3VideoModel (model_type {SAM3_VIDEO_MODEL_TYPE!r})"
    )


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)
