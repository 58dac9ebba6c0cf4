"""Prompts beyond plain text: exemplar boxes on a reference frame, parsed, checked and loaded.

Two ways in, both giving `Prompt` records (vidlake.records):
- `--exemplar VIDEO:FRAME:x0,y0,x1,y1[:neg]` (repeatable): boxes on the same VIDEO:FRAME form
  one prompt, named by the matching `--exemplar-name` (in order of first appearance) or
  "exemplar-N"; `--exemplar-text` adds a phrase to it. Boxes are xyxy in pixels of the source
  video's frame (its native size, whatever `--max-side` the job decodes at).
- `--prompts FILE`: JSON, a list (or {"prompts": [...]}) of
  {"name", "text"?, "video"?, "frame"?, "boxes"?: [[x0,y0,x1,y1]...], "negative_boxes"?: [...]}.

Checks come in two steps, both on the driver before any Ray work: `validate_prompts` (syntax,
names, a conservative token estimate; cheap, run when the IndexConfig is built) and
`check_prompts` (probes each reference video: frame index within the video, boxes within the
frame; counts tokens with the checkpoint's own tokenizer). Each failure is one `UsageError`
line naming the offending value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vidlake.errors import UsageError, VidlakeError
from vidlake.records import Prompt

if TYPE_CHECKING:
    from vidlake.config import IndexConfig

logger = logging.getLogger(__name__)

# SAM 3's text encoder has 32 positions, BOS and EOS included (the processor pads to 32 and
# does not truncate, so a longer phrase fails inside the model, on every clip).
MAX_TEXT_TOKENS = 32
# The text a prompt with boxes and no phrase is encoded with, as transformers' Sam3Processor does.
VISUAL_PROMPT_TEXT = "visual"

_NEGATIVE = {"neg", "negative", "-"}
_POSITIVE = {"pos", "positive", "+"}
# BPE never merges across words or punctuation: every word and symbol is at least one token.
_WORD_PIECES = re.compile(r"\w+|[^\w\s]")


def prompt_text(prompt: Prompt) -> str:
    """The phrase a prompt is encoded with: its text, or "visual" for boxes alone."""
    return prompt.text if prompt.text else VISUAL_PROMPT_TEXT


def parse_exemplars(
    specs: Sequence[str],
    names: Sequence[str] = (),
    texts: Sequence[str] = (),
) -> tuple[Prompt, ...]:
    """Prompts from `--exemplar VIDEO:FRAME:x0,y0,x1,y1[:neg]` values.

    Boxes sharing VIDEO:FRAME make one prompt; prompts are in order of first appearance and
    take names[i] / texts[i] when given ("exemplar-1", ... and no text otherwise). VIDEO may
    itself hold colons (s3://...): the value is split from the right.
    """
    groups: dict[tuple[str, int], list[tuple[tuple[float, ...], bool]]] = {}
    for spec in specs:
        video, frame, box, positive = _parse_exemplar(spec)
        groups.setdefault((video, frame), []).append((box, positive))
    if len(names) > len(groups):
        raise UsageError(
            f"{len(names)} --exemplar-name values for {len(groups)} exemplar prompts "
            f"(boxes on one VIDEO:FRAME form one prompt): extra name {names[len(groups)]!r}"
        )
    if len(texts) > len(groups):
        raise UsageError(
            f"{len(texts)} --exemplar-text values for {len(groups)} exemplar prompts: "
            f"extra text {texts[len(groups)]!r}"
        )
    prompts = []
    for i, ((video, frame), boxes) in enumerate(groups.items()):
        name = names[i] if i < len(names) else f"exemplar-{i + 1}"
        text = texts[i] if i < len(texts) else None
        prompts.append(
            Prompt(
                name=_normalise(name),
                text=(_normalise(text) or None) if text is not None else None,
                boxes=tuple(b for b, _ in boxes),
                positive=tuple(p for _, p in boxes),
                video_uri=video,
                frame_index=frame,
            )
        )
    return tuple(prompts)


def load_prompt_file(path: str | Path) -> tuple[Prompt, ...]:
    """Prompts from a JSON prompt file (see the module docstring for its shape)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"prompt file {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("prompts")
    if not isinstance(data, list):
        raise UsageError(f"prompt file {path} must hold a list of prompts or {{'prompts': [...]}}")
    return tuple(_prompt_from_json(item, path, i) for i, item in enumerate(data))


def validate_prompts(concepts: Sequence[str], prompts: Sequence[Prompt]) -> None:
    """Raises a one-line UsageError for prompts that are wrong whatever the videos hold.

    Checks: at least one concept or prompt; names unique among concepts and prompts; every
    prompt has a positive box or a text; boxes well formed (x0 < x1, y0 < y1, not negative);
    an exemplar has a reference video and frame >= 0; every phrase fits SAM 3's 32-token text
    context by a conservative estimate (each word or symbol at least one token, plus BOS/EOS).
    """
    if not concepts and not prompts:
        raise UsageError(
            "no concepts given: pass --concepts 'red umbrella,person', --exemplar or --prompts"
        )
    seen = set(concepts)
    for p in prompts:
        if not p.name:
            raise UsageError(f"a prompt has an empty name: {p.describe()}")
        if p.name in seen:
            raise UsageError(f"prompt name {p.name!r} is used twice (names must be unique)")
        seen.add(p.name)
        if len(p.boxes) != len(p.positive):
            raise UsageError(f"prompt {p.name!r}: {len(p.boxes)} boxes, {len(p.positive)} labels")
        if not p.text and not any(p.positive):
            raise UsageError(f"prompt {p.name!r} needs a positive box or a text phrase")
        for box in p.boxes:
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 and 0 <= y0 < y1):
                raise UsageError(
                    f"exemplar box {_box_text(box)} of prompt {p.name!r} is not x0,y0,x1,y1 "
                    "with 0 <= x0 < x1 and 0 <= y0 < y1"
                )
        if p.boxes and (not p.video_uri or p.frame_index is None or p.frame_index < 0):
            raise UsageError(
                f"prompt {p.name!r} has boxes but no reference video and frame >= 0 "
                f"(video {p.video_uri!r}, frame {p.frame_index!r})"
            )
    for text in [*concepts, *(p.text for p in prompts if p.text)]:
        estimate = estimate_tokens(text)
        if estimate > MAX_TEXT_TOKENS:
            raise UsageError(_too_long(text, f"at least {estimate}"))


def check_prompts(config: IndexConfig) -> None:
    """Raises a one-line UsageError if a prompt or concept of config cannot run; no model loaded.

    Probes each reference video once (frame index within it, boxes within its frame) and, for
    a SAM 3 checkpoint, counts every phrase's tokens with the checkpoint's own tokenizer. Meant
    for the driver, after `check_model` and before any cluster work.
    """
    from vidlake.operators.probe import probe_video

    validate_prompts(config.concepts, config.prompts)
    infos = {}
    for p in config.prompts:
        if not p.boxes:
            continue
        if p.video_uri not in infos:
            try:
                infos[p.video_uri] = probe_video(p.video_uri, config.storage_options or None)
            except VidlakeError as exc:
                raise UsageError(
                    f"exemplar video {p.video_uri} of prompt {p.name!r} cannot be read: {exc}"
                ) from exc
        info = infos[p.video_uri]
        if p.frame_index >= info.n_frames:
            raise UsageError(
                f"exemplar frame {p.frame_index} of prompt {p.name!r} is past the end of "
                f"{p.video_uri} ({info.n_frames} frames, 0-{info.n_frames - 1})"
            )
        for box in p.boxes:
            if box[2] > info.width or box[3] > info.height:
                raise UsageError(
                    f"exemplar box {_box_text(box)} of prompt {p.name!r} is outside the "
                    f"{info.width}x{info.height} frame of {p.video_uri}"
                )
    count = _checkpoint_token_counter(config.model, config.storage_options)
    if count is None:
        return
    texts = [*config.concepts, *(prompt_text(p) for p in config.prompts)]
    for text in texts:
        n = count(text)
        if n > MAX_TEXT_TOKENS:
            raise UsageError(_too_long(text, str(n)))


def with_reference_frames(
    prompts: Iterable[Prompt], storage_options: dict | None = None
) -> tuple[Prompt, ...]:
    """The prompts with their reference frames' pixels attached, each frame decoded once.

    Frames are decoded at the video's native size, the coordinates exemplar boxes are in.
    """
    from vidlake.operators.decode import decode_clip
    from vidlake.records import ClipSpec

    frames: dict[tuple[str, int], np.ndarray] = {}
    out = []
    for p in prompts:
        if not p.boxes or p.reference_frame is not None:
            out.append(p)
            continue
        key = (p.video_uri, int(p.frame_index))
        if key not in frames:
            spec = ClipSpec(
                video_id="reference",
                video_uri=p.video_uri,
                clip_index=0,
                start_s=0.0,
                end_s=0.0,
                sampled_fps=1.0,
                frame_indices=np.array([p.frame_index], np.int64),
                times_s=np.zeros(1),
            )
            frames[key] = decode_clip(spec, storage_options=storage_options, max_side=None)[0]
        out.append(replace(p, reference_frame=frames[key]))
    return tuple(out)


def estimate_tokens(text: str) -> int:
    """A lower bound of the CLIP BPE token count of text, BOS and EOS included."""
    return len(_WORD_PIECES.findall(text)) + 2


def normalised_boxes(prompt: Prompt) -> np.ndarray:
    """(N, 4) float32 boxes (cx, cy, w, h) in [0, 1] of the reference frame, as SAM 3 takes them."""
    if prompt.reference_frame is None:
        raise UsageError(f"prompt {prompt.name!r} has exemplar boxes but no reference frame")
    h, w = prompt.reference_frame.shape[:2]
    b = np.asarray(prompt.boxes, dtype=np.float64).reshape(-1, 4)
    cxcywh = np.stack(
        [
            (b[:, 0] + b[:, 2]) / 2 / w,
            (b[:, 1] + b[:, 3]) / 2 / h,
            (b[:, 2] - b[:, 0]) / w,
            (b[:, 3] - b[:, 1]) / h,
        ],
        axis=1,
    )
    return cxcywh.astype(np.float32)


def _checkpoint_token_counter(model: str, storage_options: dict | None):
    """A function counting a phrase's tokens with SAM 3's tokenizer; None for other segmenters."""
    if ":" in model and "://" not in model:  # synthetic:color or a plug-in: no tokenizer
        return None
    from vidlake.model.checkpoint import checkpoint_file, load_error, resolve_checkpoint

    path = resolve_checkpoint(model, storage_options=storage_options or None)
    fast = checkpoint_file(model, path, "tokenizer.json")
    if fast is not None:
        # The `tokenizers` file is what transformers' fast tokenizer runs, without importing
        # transformers on the driver.
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(fast))
        return lambda text: len(tokenizer.encode(text).ids)
    from transformers import AutoTokenizer

    try:
        slow = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(model, exc) from exc
    return lambda text: len(slow(text).input_ids)


def _parse_exemplar(spec: str) -> tuple[str, int, tuple[float, ...], bool]:
    """(video, frame, box xyxy, positive) of one --exemplar value."""
    body = spec.strip()
    positive = True
    head, sep, last = body.rpartition(":")
    if sep and last.strip().lower() in _NEGATIVE | _POSITIVE:
        positive = last.strip().lower() in _POSITIVE
        body = head
    elif sep and "," not in last and "," in head.rpartition(":")[2]:
        raise UsageError(
            f"--exemplar {spec!r}: ends with {last!r} after the box; the one suffix allowed is "
            ":neg (or :pos)"
        )
    parts = body.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise UsageError(f"--exemplar {spec!r} is not VIDEO:FRAME:x0,y0,x1,y1[:neg]")
    video, frame_text, box_text = parts
    try:
        frame = int(frame_text)
    except ValueError:
        raise UsageError(f"--exemplar {spec!r}: frame {frame_text!r} is not an integer") from None
    box = _parse_box(box_text, f"--exemplar {spec!r}")
    if frame < 0:
        raise UsageError(f"--exemplar {spec!r}: frame {frame} is negative")
    return _absolute(video), frame, box, positive


def _parse_box(value, where: str) -> tuple[float, float, float, float]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        box = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: box {value!r} is not four numbers x0,y0,x1,y1") from None
    if len(box) != 4 or not all(np.isfinite(box)):
        raise UsageError(f"{where}: box {value!r} is not four numbers x0,y0,x1,y1")
    return box


def _prompt_from_json(item, path: Path, i: int) -> Prompt:
    where = f"prompt {i} of {path}"
    if not isinstance(item, dict):
        raise UsageError(f"{where} is not an object with a name")
    unknown = set(item) - {"name", "text", "video", "frame", "boxes", "negative_boxes"}
    if unknown:
        raise UsageError(f"{where} has unknown keys {sorted(unknown)}")
    name = _normalise(str(item.get("name") or ""))
    if not name:
        raise UsageError(f"{where} has no name")
    text = item.get("text")
    text = (_normalise(str(text)) or None) if text is not None else None
    boxes = [_parse_box(b, f"{where} ({name!r})") for b in item.get("boxes") or []]
    negatives = [_parse_box(b, f"{where} ({name!r})") for b in item.get("negative_boxes") or []]
    video = item.get("video")
    frame = item.get("frame")
    if boxes or negatives:
        if not video or frame is None:
            raise UsageError(f"{where} ({name!r}) has boxes but no 'video' and 'frame'")
        if not isinstance(frame, int) or isinstance(frame, bool):
            raise UsageError(f"{where} ({name!r}): frame {frame!r} is not an integer")
        if frame < 0:
            raise UsageError(f"{where} ({name!r}): frame {frame} is negative")
        video = _absolute(str(video))
    else:
        video, frame = None, None
    return Prompt(
        name=name,
        text=text,
        boxes=tuple(boxes + negatives),
        positive=tuple([True] * len(boxes) + [False] * len(negatives)),
        video_uri=video,
        frame_index=frame,
    )


def _absolute(uri: str) -> str:
    """A local path made absolute (Ray workers may not share the driver's cwd); URIs unchanged."""
    return uri if "://" in uri else str(Path(uri).expanduser().resolve())


def _normalise(text: str) -> str:
    """Stripped, lower-cased, single-spaced, as concepts are."""
    return " ".join(text.strip().lower().split())


def _box_text(box: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in box)


def _too_long(text: str, n: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return (
        f"concept {shown!r} is {n} tokens, longer than SAM 3's text context of "
        f"{MAX_TEXT_TOKENS} tokens: shorten it"
    )
