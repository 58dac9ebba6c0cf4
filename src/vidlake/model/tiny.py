"""A tiny, randomly initialised SAM 3 video checkpoint for tests and offline demos.

The real `facebook/sam3` weights are gated and large; tests and laptops without a token still
need to run the exact code path users run. `build_tiny_sam3` writes a folder that loads with
`Sam3VideoModel.from_pretrained` / `Sam3VideoProcessor.from_pretrained` like the real checkpoint,
so `Sam3Segmenter(str(out_dir))` works on it unchanged. Its outputs are meaningless but
deterministic.

It keeps Meta's decision settings (detection 0.5, NMS 0.1, new detection 0.7, hotstart 15/8/8,
occlusion 0.7, fill 16, recondition every 16): tests must see SAM 3 decide. Random weights
alone decide nothing (every query scores ~0.25, detector and tracker masks never agree), so a
few output weights are calibrated (`calibrate`, values in `CALIBRATION`) to put detections on
both sides of 0.5 and 0.7, make detector masks overlap (NMS drops duplicates) and carry holes
and specks, and let tracker masks match detections or not: on tests/model's decision clip,
detections cross both thresholds, NMS drops duplicates, hotstart removes unconfirmed tracks,
holes are filled, sprinkles removed and tracks reconditioned (tests/model/test_tiny.py counts
each).
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

from vidlake.errors import UsageError

logger = logging.getLogger(__name__)

TINY_IMAGE_SIZE = 112
TINY_PATCH_SIZE = 14
TINY_HIDDEN_SIZE = 128

# Whole words the tiny tokenizer knows as single tokens; anything else still tokenizes
# (byte-level fallback to one token per character), only into more tokens.
TINY_WORDS = (
    "a an the of in on with and or red green blue yellow white black orange purple pink brown "
    "gray grey person people man woman child car truck bus bike bicycle dog cat bird horse cow "
    "ball box square circle rectangle shape object thing umbrella tree house road sky water "
    "boat chair table cup bottle phone"
).split()

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def build_tiny_vocabulary(words: tuple[str, ...] | list[str] = TINY_WORDS) -> tuple[dict, list]:
    """A CLIP-style byte-level BPE vocabulary and merge list covering every byte and `words`.

    Returns (vocab: token -> id, merges: ["a b", ...]). The merges are learnt with the
    `tokenizers` BPE trainer on the word list (offline, deterministic), because hand-written
    merge chains conflict: BPE applies merges by global rank, so "o n</w>" learnt for "on"
    would stop "person" from merging into one token. Every byte and its end-of-word form
    ("</w>", as CLIP marks the last symbol of a word) is in the vocabulary, so any text
    tokenizes; the special tokens come last, as in CLIP.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    # One word per training sequence, no regex split: no space marker ("Ġ") enters the merges.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=10_000,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
    )
    bpe.train_from_iterator(list(words), trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in trained["merges"]]
    learnt = sorted(trained["vocab"], key=trained["vocab"].get)
    tokens = alphabet + [c + "</w>" for c in alphabet] + learnt + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tiny_tokenizer(out_dir: Path):
    """A `CLIPTokenizer` built offline from a small vocabulary written to out_dir.

    vocab.json and merges.txt are written first so the tokenizer is a plain CLIP BPE
    tokenizer that any transformers version can rebuild from those two files.
    """
    from transformers import CLIPTokenizer

    vocab, merges = build_tiny_vocabulary()
    vocab_file = out_dir / "vocab.json"
    merges_file = out_dir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab=str(vocab_file),
        merges=str(merges_file),
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=32,
    )


def build_tiny_config(vocab_size: int, bos_token_id: int, eos_token_id: int):
    """A `Sam3VideoConfig` shrunk to 112 px input, width 128 and one or two layers per stack.

    Constraints that are not obvious: the detector's FPN width is shared with the tracker
    (hidden sizes must agree); the tracker's memory encoder output must stay 64 channels;
    feature-map sizes and the memory-attention RoPE grid follow image_size / patch_size;
    the low-resolution mask size is 4x the patch grid. SAM 3's decision settings are Meta's.
    """
    from transformers import (
        CLIPTextConfig,
        Sam3Config,
        Sam3TrackerVideoConfig,
        Sam3VideoConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
    )
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
    )

    size, patch, hidden = TINY_IMAGE_SIZE, TINY_PATCH_SIZE, TINY_HIDDEN_SIZE
    grid = size // patch
    feature_sizes = [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]]

    def vision_config(num_layers: int) -> Sam3VisionConfig:
        backbone = Sam3ViTConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=num_layers,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
            window_size=grid // 2,
            global_attn_indexes=[num_layers - 1],
            pretrain_image_size=size,
        )
        return Sam3VisionConfig(
            backbone_config=backbone, fpn_hidden_size=hidden, backbone_feature_sizes=feature_sizes
        )

    detector = Sam3Config(
        vision_config=vision_config(num_layers=2),
        text_config=CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            projection_dim=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=eos_token_id,
        ),
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=2 * hidden
        ),
        detr_encoder_config=Sam3DETREncoderConfig(
            hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=2 * hidden
        ),
        detr_decoder_config=Sam3DETRDecoderConfig(
            hidden_size=hidden,
            num_layers=1,
            num_queries=16,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
        ),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=hidden, num_attention_heads=2),
    )
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision_config(num_layers=1),
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(
            hidden_size=hidden, image_size=size, patch_size=patch
        ),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(
            hidden_size=hidden,
            mlp_dim=2 * hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            iou_head_hidden_dim=hidden,
        ),
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=2 * hidden,
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_num_layers=1,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=2 * hidden,
        image_size=size,
    )
    config = Sam3VideoConfig(
        detector_config=detector,
        tracker_config=tracker,
        low_res_mask_size=4 * grid,
        # Meta's decision settings are transformers' defaults: kept (see the module docstring).
        max_num_objects=8,
    )
    config.image_size = size
    return config


# Found by a search over these knobs on the decision clip (seed 0); each is one output weight
# group, so the model stays a plain checkpoint that loads like any other.
CALIBRATION = {
    "presence_bias": 6.0,  # the detector's presence head: concepts "present" (~1.0)
    "score_scale": 40.0,  # query projection of the dot-product scoring: scores spread 0.1-0.95
    "detector_mask_offset": 0.0,  # constant added to every detector mask logit
    "detector_mask_spread": 100.0,  # gain of the query-dependent part of detector masks
    "tracker_mask_offset": 2.0,  # constant added to tracker mask logits (x gelu(1))
    "object_score_bias": 2.0,  # the tracker's "object is visible" logit
}


def calibrate(model, calibration: dict[str, float] | None = None) -> None:
    """Sets the few output weights of a random `Sam3VideoModel` named in CALIBRATION (see the
    module docstring): in place, under no_grad."""
    import torch

    knobs = {**CALIBRATION, **(calibration or {})}
    detector = model.detector_model
    tracker = model.tracker_model.mask_decoder
    with torch.no_grad():
        detector.detr_decoder.presence_head.layer3.bias.fill_(knobs["presence_bias"])
        scoring = detector.dot_product_scoring.query_proj
        scoring.weight.mul_(knobs["score_scale"])
        scoring.bias.mul_(knobs["score_scale"])
        # Detector masks are einsum(mask embedding of a query, instance embedding of a pixel):
        # channel 0 becomes the constant 1 on the pixel side and the offset on the query side.
        masks = detector.mask_decoder
        masks.instance_projection.weight[0] = 0.0
        masks.instance_projection.bias[0] = 1.0
        last = _last_linear(masks.mask_embedder)
        last.weight[1:] *= knobs["detector_mask_spread"]
        last.bias[1:] *= knobs["detector_mask_spread"]
        last.weight[0] = 0.0
        last.bias[0] = knobs["detector_mask_offset"]
        # Tracker masks are hypernetwork(token) @ upscaled embedding: the same trick, channel 0
        # of the upscaled embedding made constant (gelu(1)) and each hypernetwork's offset.
        tracker.conv_s0.weight[0] = 0.0
        tracker.conv_s0.bias[0] = 0.0
        tracker.upscale_conv2.weight[:, 0] = 0.0
        tracker.upscale_conv2.bias[0] = 1.0
        for mlp in tracker.output_hypernetworks_mlps:
            head = _last_linear(mlp)
            head.weight[0] = 0.0
            head.bias[0] = knobs["tracker_mask_offset"]
        tracker.pred_obj_score_head.proj_out.bias.fill_(knobs["object_score_bias"])


def _last_linear(module):
    import torch

    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]


def make_folder(folder: Path) -> Path:
    """FOLDER, created with its parents if missing; a one-line UsageError says why it cannot be
    ("cannot create /tmp/notes.txt: it is a file"). A local folder only: "s3://b/x" (which
    Path reads as "s3:/b/x") is refused rather than made as ./s3:/b/x."""
    from vidlake.store.object_store import looks_like_uri

    if looks_like_uri(str(folder)):
        raise UsageError(
            f"{folder} looks like a URI; this takes a local folder (./{folder} if you mean one)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {_why_not_a_folder(folder, exc)}") from exc
    return folder


def _why_not_a_folder(folder: Path, exc: OSError) -> str:
    """Why mkdir -p FOLDER failed, in words, from the nearest part of the path that exists."""
    if folder.is_symlink() and not folder.exists():
        return "it is a broken symbolic link"
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return "it is a file" if existing == folder else f"{existing} is a file"
    if exc.errno == errno.ENOENT and existing is not None:
        # Its parent exists: a file system that takes no new folders (/proc, /sys).
        return f"{existing} does not allow new folders"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def is_tiny_sam3(folder: Path) -> bool:
    """Whether FOLDER holds a tiny SAM 3 written by build_tiny_sam3 (its config.json says so)."""
    try:
        config = json.loads((folder / "config.json").read_text())
        return (
            config.get("model_type") == "sam3_video"
            and config["tracker_config"]["image_size"] == TINY_IMAGE_SIZE
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_tiny_sam3(out_dir: str | Path, seed: int = 0) -> Path:
    """The folder of a tiny random SAM 3 video checkpoint (model, processor, tokenizer) in out_dir.

    Same seed, same weights. Loads through the same path as a real checkpoint:
    `Sam3Segmenter(str(out_dir))` or `load_segmenter(str(out_dir))`.

    out_dir must be missing, empty, or hold a tiny model (which is overwritten): model files
    written among other files (a folder of videos, a real checkpoint) would mix with them, so
    any other folder is a UsageError, as is one that cannot be created or written.
    """
    out = make_folder(Path(out_dir))
    if any(out.iterdir()) and not is_tiny_sam3(out):
        raise UsageError(
            f"{out} is not empty and holds no tiny model; "
            "write the tiny model into a new or empty folder"
        )
    try:
        return _write_tiny_sam3(out, seed)
    except OSError as exc:
        raise UsageError(f"cannot write the tiny model into {out}: {exc.strerror or exc}") from exc


def _write_tiny_sam3(out: Path, seed: int) -> Path:
    import torch
    from transformers import Sam3ImageProcessor, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    tokenizer = build_tiny_tokenizer(out)
    config = build_tiny_config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Sam3VideoModel(config)
    calibrate(model)
    model.save_pretrained(out)

    size = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    low_res = 4 * (TINY_IMAGE_SIZE // TINY_PATCH_SIZE)
    processor = Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size=size, mask_size={"height": low_res, "width": low_res}
        ),
        video_processor=Sam2VideoVideoProcessor(size=size),
        tokenizer=tokenizer,
        target_size=TINY_IMAGE_SIZE,
    )
    processor.save_pretrained(out)
    logger.info("wrote tiny SAM 3 (%d parameters) to %s", model.num_parameters(), out)
    return out
