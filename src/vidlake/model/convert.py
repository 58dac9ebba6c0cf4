"""Meta's SAM 3 checkpoint (`sam3.pt`) as a transformers `Sam3VideoModel` folder vidlake loads.

People who have only Meta's checkpoint (from facebookresearch/sam3, or a model trained with
Meta's code) get a folder that `Sam3VideoModel.from_pretrained` and
`Sam3VideoProcessor.from_pretrained` load, so `vidlake index --model DIR` works on it:
`vidlake model convert sam3.pt DIR`.

The key mapping follows transformers' own conversion script
(`models/sam3_video/convert_sam3_video_to_hf.py` in the transformers repository, not shipped in
its wheel), rewritten here as rules per component; Meta's video checkpoint names its two halves
`detector.` and `tracker.` where that script reads Meta's internal names. Fused projections
(ViT `qkv`, `nn.MultiheadAttention`'s `in_proj_*`) are split into q/k/v; the ViT position table
loses its class-token row; CLIP's text projection is transposed; the tracker's four point
embeddings become one table; the tracker's FPN convolutions (`sam2_convs`) become the video
model's `tracker_neck`.

Every tensor must land: a converted key the model lacks, or a model parameter the checkpoint does
not fill, is a UsageError naming them (as sam2's `build_sam` refuses a checkpoint with missing or
unexpected keys), never a half-initialised model. The ViT's RoPE tables (`freqs_cis`), which
transformers computes itself, size the config and are dropped; so are the geometry encoder's
point-prompt projections, which transformers' `Sam3Model` (boxes only) has no place for.

The config is derived from the tensor shapes (widths, depths, vocabulary, query count, image
size from the global-attention RoPE table), so a small model trained or built with Meta's
constructors converts to a matching small transformers config. Head counts: the ViT's from its
RoPE table's width, the DETR and geometry transformers' from the box relative-position bias
(one output per head), the CLIP text encoder's at CLIP's head width of 64 (no shape holds it;
`text_heads` overrides). The video settings are Meta's (`META_VIDEO_SETTINGS`).

The tokenizer is CLIP's BPE vocabulary (`bpe_simple_vocab_16e6.txt.gz`, which Meta's
`SimpleTokenizer` reads); Meta's wheel does not ship it, open_clip_torch does, and `--bpe`
points at another copy.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from vidlake.errors import UsageError

logger = logging.getLogger(__name__)

# Meta's video-model settings (sam3.model_builder.build_sam3_video_model), in the names
# Sam3VideoConfig uses for them. Meta reconditions a track with the detection's mask
# (`recondition_on_trk_masks=False`); its occlusion, hotstart and keep-alive settings have
# the same names in both. Meta's other reconditioning thresholds (tracker score > 0.8, IoU
# with the detection > 0.8) are transformers' defaults `high_conf_thresh`, `high_iou_thresh`.
META_VIDEO_SETTINGS = {
    "score_threshold_detection": 0.5,
    "det_nms_thresh": 0.1,
    "assoc_iou_thresh": 0.1,
    "trk_assoc_iou_thresh": 0.5,
    "new_det_thresh": 0.7,
    "hotstart_delay": 15,
    "hotstart_unmatch_thresh": 8,
    "hotstart_dup_thresh": 8,
    "suppress_unmatched_only_within_hotstart": True,
    "init_trk_keep_alive": 30,
    "max_trk_keep_alive": 30,
    "min_trk_keep_alive": -1,
    "suppress_overlapping_based_on_recent_occlusion_threshold": 0.7,
    "decrease_trk_keep_alive_for_empty_masklets": False,
    "fill_hole_area": 16,
    "recondition_every_nth_frame": 16,
    "recondition_on_trk_masks": False,
    "high_conf_thresh": 0.8,
    "high_iou_thresh": 0.8,
}

TEXT_HEAD_WIDTH = 64  # CLIP's (Meta: width 1024, 16 heads)
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"

_DET = "detector."
_TRK = "tracker."
_VIT = _DET + "backbone.vision_backbone.trunk."
_TEXT = _DET + "backbone.language_backbone.encoder."

# (pattern, replacement) applied in order to each Meta key (after the detector./tracker. prefix
# is replaced), first the component prefixes, then names inside components. Derived from
# transformers' conversion script and checked by loading every tensor strictly.
_PREFIX_RULES = [
    (r"^detector\.backbone\.vision_backbone\.trunk\.", "detector_model.vision_encoder.backbone."),
    (
        r"^detector\.backbone\.vision_backbone\.convs\.",
        "detector_model.vision_encoder.neck.fpn_layers.",
    ),
    (r"^detector\.backbone\.vision_backbone\.sam2_convs\.", "tracker_neck.fpn_layers."),
    (r"^detector\.backbone\.language_backbone\.encoder\.", "detector_model.text_encoder."),
    (r"^detector\.backbone\.language_backbone\.resizer\.", "detector_model.text_projection."),
    (r"^detector\.transformer\.encoder\.", "detector_model.detr_encoder."),
    (r"^detector\.transformer\.decoder\.", "detector_model.detr_decoder."),
    (r"^detector\.geometry_encoder\.", "detector_model.geometry_encoder."),
    (r"^detector\.dot_prod_scoring\.", "detector_model.dot_product_scoring."),
    (r"^detector\.segmentation_head\.", "detector_model.mask_decoder."),
    (r"^tracker\.", "tracker_model."),
]  # fmt: skip

_NAME_RULES = [
    # ViT backbone
    (r"(vision_encoder\.backbone\.)pos_embed$", r"\1embeddings.position_embeddings"),
    (
        r"(vision_encoder\.backbone\.)patch_embed\.proj\.",
        r"\1embeddings.patch_embeddings.projection.",
    ),
    (r"(vision_encoder\.backbone\.)ln_pre\.", r"\1layer_norm."),
    (r"(backbone\.)blocks\.(\d+)\.norm(\d)\.", r"\1layers.\2.layer_norm\3."),
    (r"(backbone\.)blocks\.(\d+)\.attn\.proj\.", r"\1layers.\2.attention.o_proj."),
    (r"(backbone\.)blocks\.(\d+)\.attn\.qkv\.", r"\1layers.\2.attention.qkv."),
    (r"(backbone\.)blocks\.(\d+)\.mlp\.", r"\1layers.\2.mlp."),
    # FPN necks (detector's and tracker's)
    (r"(fpn_layers\.\d+\.)dconv_2x2_1\.", r"\1scale_layers.2."),
    (r"(fpn_layers\.\d+\.)dconv_2x2(_0)?\.", r"\1scale_layers.0."),
    (r"(fpn_layers\.\d+\.)conv_1x1\.", r"\1proj1."),
    (r"(fpn_layers\.\d+\.)conv_3x3\.", r"\1proj2."),
    # CLIP text encoder
    (r"(text_encoder\.)token_embedding\.", r"\1text_model.embeddings.token_embedding."),
    (
        r"(text_encoder\.)positional_embedding$",
        r"\1text_model.embeddings.position_embedding.weight",
    ),
    (r"(text_encoder\.)ln_final\.", r"\1text_model.final_layer_norm."),
    (r"(text_encoder\.)text_projection$", r"\1text_projection.weight"),
    (
        r"(text_encoder\.)transformer\.resblocks\.(\d+)\.attn\.",
        r"\1text_model.encoder.layers.\2.self_attn.",
    ),
    (
        r"(text_encoder\.)transformer\.resblocks\.(\d+)\.ln_(\d)\.",
        r"\1text_model.encoder.layers.\2.layer_norm\3.",
    ),
    (
        r"(text_encoder\.)transformer\.resblocks\.(\d+)\.mlp\.c_fc\.",
        r"\1text_model.encoder.layers.\2.mlp.fc1.",
    ),
    (
        r"(text_encoder\.)transformer\.resblocks\.(\d+)\.mlp\.c_proj\.",
        r"\1text_model.encoder.layers.\2.mlp.fc2.",
    ),
    # geometry encoder and DETR encoder (the same layer type)
    (r"(geometry_encoder\.)encode\.(\d+)\.", r"\1layers.\2."),
    (r"(geometry_encoder\.)img_pre_norm\.", r"\1vision_layer_norm."),
    (r"(geometry_encoder\.)norm\.", r"\1prompt_layer_norm."),
    (r"(geometry_encoder\.)encode_norm\.", r"\1output_layer_norm."),
    (r"((?:geometry_encoder|detr_encoder)\.layers\.\d+\.)cross_attn_image\.", r"\1cross_attn."),
    (r"((?:geometry_encoder|detr_encoder)\.layers\.\d+\.)linear(\d)\.", r"\1mlp.fc\2."),
    (r"((?:geometry_encoder|detr_encoder)\.layers\.\d+\.)norm(\d)\.", r"\1layer_norm\2."),
    # DETR decoder
    (
        r"(detr_decoder\.)presence_token_head\.layers\.(\d)\.",
        lambda m: f"{m[1]}presence_head.layer{int(m[2]) + 1}.",
    ),
    (r"(detr_decoder\.)presence_token_out_norm\.", r"\1presence_layer_norm."),
    (r"(detr_decoder\.)norm\.", r"\1output_layer_norm."),
    (
        r"(detr_decoder\.)bbox_embed\.layers\.(\d)\.",
        lambda m: f"{m[1]}box_head.layer{int(m[2]) + 1}.",
    ),
    (
        r"(detr_decoder\.)ref_point_head\.layers\.(\d)\.",
        lambda m: f"{m[1]}ref_point_head.layer{int(m[2]) + 1}.",
    ),
    (
        r"(detr_decoder\.)boxRPB_embed_([xy])\.layers\.(\d)\.",
        lambda m: f"{m[1]}box_rpb_embed_{m[2]}.layer{int(m[3]) + 1}.",
    ),
    (r"(detr_decoder\.layers\.\d+\.)ca_text\.", r"\1text_cross_attn."),
    (r"(detr_decoder\.layers\.\d+\.)cross_attn\.", r"\1vision_cross_attn."),
    (r"(detr_decoder\.layers\.\d+\.)linear(\d)\.", r"\1mlp.fc\2."),
    (r"(detr_decoder\.layers\.\d+\.)norm1\.", r"\1vision_cross_attn_layer_norm."),
    (r"(detr_decoder\.layers\.\d+\.)catext_norm\.", r"\1text_cross_attn_layer_norm."),
    (r"(detr_decoder\.layers\.\d+\.)norm2\.", r"\1self_attn_layer_norm."),
    (r"(detr_decoder\.layers\.\d+\.)norm3\.", r"\1mlp_layer_norm."),
    # dot-product scoring
    (
        r"(dot_product_scoring\.)prompt_mlp\.layers\.(\d)\.",
        lambda m: f"{m[1]}text_mlp.layer{int(m[2]) + 1}.",
    ),
    (r"(dot_product_scoring\.)prompt_mlp\.out_norm\.", r"\1text_mlp_out_norm."),
    (r"(dot_product_scoring\.)prompt_proj\.", r"\1text_proj."),
    (r"(dot_product_scoring\.)hs_proj\.", r"\1query_proj."),
    # detector mask decoder (segmentation head)
    (r"(detector_model\.mask_decoder\.)mask_predictor\.mask_embed\.", r"\1mask_embedder."),
    (r"(detector_model\.mask_decoder\.)instance_seg_head\.", r"\1instance_projection."),
    (r"(detector_model\.mask_decoder\.)semantic_seg_head\.", r"\1semantic_projection."),
    (r"(detector_model\.mask_decoder\.)cross_attend_prompt\.", r"\1prompt_cross_attn."),
    (r"(detector_model\.mask_decoder\.)cross_attn_norm\.", r"\1prompt_cross_attn_norm."),
    # tracker: SAM prompt encoder and mask decoder
    (r"(tracker_model\.)sam_prompt_encoder\.", r"\1prompt_encoder."),
    (r"(tracker_model\.)sam_mask_decoder\.", r"\1mask_decoder."),
    (
        r"(prompt_encoder\.)pe_layer\.positional_encoding_gaussian_matrix$",
        r"\1shared_embedding.positional_embedding",
    ),
    (r"(prompt_encoder\.)point_embeddings\.", r"\1point_embed."),
    (
        r"(prompt_encoder\.)mask_downscaling\.(\d)\.",
        lambda m: f"{m[1]}mask_embed.{_MASK_DOWNSCALING[m[2]]}.",
    ),
    (r"(mask_decoder\.)output_upscaling\.(\d)\.", lambda m: f"{m[1]}{_OUTPUT_UPSCALING[m[2]]}."),
    (
        r"(tracker_model\.mask_decoder\.(?:iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+)\.)layers\.(\d)\.",
        lambda m: f"{m[1]}{_MLP3[m[2]]}.",
    ),
    (
        r"(tracker_model\.mask_decoder\.transformer\.layers\.\d+\.mlp\.)lin(\d)\.",
        lambda m: f"{m[1]}{'proj_in' if m[2] == '1' else 'proj_out'}.",
    ),
    (r"(tracker_model\.mask_decoder\.transformer\.layers\.\d+\.)norm(\d)\.", r"\1layer_norm\2."),
    (r"(tracker_model\.mask_decoder\.transformer\.)norm_final_attn\.", r"\1layer_norm_final_attn."),
    (
        r"^(tracker_model\.mask_decoder\..*|detector_model\.(?!text_encoder).*)\.out_proj\.",
        r"\1.o_proj.",
    ),
    # tracker: memory attention
    (r"(tracker_model\.)transformer\.encoder\.", r"\1memory_attention."),
    (r"(memory_attention\.layers\.\d+\.)norm(\d)\.", r"\1layer_norm\2."),
    (r"(memory_attention\.)norm\.", r"\1layer_norm."),
    (r"(memory_attention\.layers\.\d+\.)(self_attn|cross_attn_image)\.out_proj\.", r"\1\2.o_proj."),
    # tracker: memory encoder
    (r"(tracker_model\.)maskmem_backbone\.", r"\1memory_encoder."),
    (r"(memory_encoder\.)fuser\.", r"\1memory_fuser."),
    (r"(memory_fuser\.layers\.\d+\.)dwconv\.", r"\1depthwise_conv."),
    (r"(memory_fuser\.layers\.\d+\.)pwconv(\d)\.", r"\1pointwise_conv\2."),
    (r"(memory_fuser\.layers\.\d+\.)norm\.", r"\1layer_norm."),
    (r"(memory_fuser\.layers\.\d+\.)gamma$", r"\1scale"),
    (r"(memory_encoder\.)pix_feat_proj\.", r"\1feature_projection."),
    (r"(memory_encoder\.)out_proj\.", r"\1projection."),
    (r"(mask_downsampler\.)encoder\.(\d+)\.", lambda m: f"{m[1]}{_downsampler_layer(int(m[2]))}."),
    # tracker: top-level parameters
    (r"(tracker_model\.)maskmem_tpos_enc$", r"\1memory_temporal_positional_encoding"),
    (r"(tracker_model\.)no_mem_embed$", r"\1no_memory_embedding"),
    (r"(tracker_model\.)no_mem_pos_enc$", r"\1no_memory_positional_encoding"),
    (r"(tracker_model\.)no_obj_embed_spatial$", r"\1occlusion_spatial_embedding_parameter"),
    (r"(tracker_model\.)no_obj_ptr$", r"\1no_object_pointer"),
    (r"(tracker_model\.)obj_ptr_tpos_proj\.", r"\1temporal_positional_encoding_projection_layer."),
    (
        r"(tracker_model\.)obj_ptr_proj\.layers\.(\d)\.",
        lambda m: f"{m[1]}object_pointer_proj.{_MLP3[m[2]]}.",
    ),
]  # fmt: skip

# Meta's geometry encoder also encodes point prompts; transformers' Sam3Model takes boxes only
# (points go to the tracker), so these three projections have no place there and are dropped.
_UNUSED_POINT_PROJECTIONS = tuple(
    f"{_DET}geometry_encoder.points_{name}_project." for name in ("direct", "pool", "pos_enc")
)

_MLP3 = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
_MASK_DOWNSCALING = {
    "0": "conv1",
    "1": "layer_norm1",
    "3": "conv2",
    "4": "layer_norm2",
    "6": "conv3",
}
_OUTPUT_UPSCALING = {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}


def _downsampler_layer(index: int) -> str:
    """Meta's mask downsampler is one nn.Sequential (conv, norm, act) x 4 + a final conv."""
    if index % 3 == 0 and index >= 12:
        return "final_conv"
    return f"layers.{index // 3}.{'conv' if index % 3 == 0 else 'layer_norm'}"


def converted_key(key: str) -> str:
    """The transformers Sam3VideoModel name of Meta's state-dict KEY (fused q/k/v not split)."""
    for pattern, replacement in (*_PREFIX_RULES, *_NAME_RULES):
        key = re.sub(pattern, replacement, key)
    return key


def is_meta_sam3(state_dict: Mapping) -> bool:
    """Whether STATE_DICT looks like Meta's SAM 3 video model (detector ViT and tracker)."""
    return (_VIT + "patch_embed.proj.weight") in state_dict and any(
        k.startswith(_TRK + "sam_mask_decoder.") for k in state_dict
    )


def load_meta_state_dict(path: str | Path) -> dict:
    """The tensors of Meta's checkpoint at PATH (`sam3.pt`: a state dict, or one under "model").

    UsageError (one line) when the file is missing, not a torch checkpoint, or not SAM 3's.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise UsageError(f"checkpoint {path} {what}: pass Meta's sam3.pt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch.load raises anything on a file that is not its own
        raise UsageError(
            f"{path} is not a PyTorch checkpoint (torch.load cannot read it); pass Meta's sam3.pt"
        ) from None
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping) or not is_meta_sam3(checkpoint):
        raise UsageError(
            f"{path} is not a SAM 3 video checkpoint from Meta's sam3 (no detector ViT and "
            "tracker mask decoder weights); pass sam3.pt from facebook/sam3"
        )
    return dict(checkpoint)


def _count(state_dict: Mapping, prefix: str) -> int:
    """How many numbered blocks PREFIX<n>. has in STATE_DICT."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m[1]) for k in state_dict if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def config_from_state_dict(
    state_dict: Mapping,
    *,
    vocab_size: int | None = None,
    bos_token_id: int = 49406,
    eos_token_id: int = 49407,
    text_heads: int | None = None,
    detr_heads: int | None = None,
):
    """A `Sam3VideoConfig` whose shapes are STATE_DICT's (Meta's names), at Meta's settings.

    Widths, depths, vocabulary, query count and sizes come from tensor shapes; the image size
    from the global-attention RoPE table of the ViT (its grid is the image's patch grid); head
    counts as the module docstring says. KeyError names a tensor it needs and lacks.
    """
    from transformers import CLIPTextConfig, Sam3Config, Sam3TrackerVideoConfig, Sam3VideoConfig
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
    )

    sd = state_dict
    patch_weight = sd[_VIT + "patch_embed.proj.weight"]
    vit_width, patch = int(patch_weight.shape[0]), int(patch_weight.shape[-1])
    vit_depth = _count(sd, _VIT + "blocks.")
    rope = [sd[f"{_VIT}blocks.{i}.attn.freqs_cis"] for i in range(vit_depth)]
    rope_sizes = [int(r.shape[0]) for r in rope]
    grid = math.isqrt(max(rope_sizes))
    image_size = grid * patch
    global_blocks = [i for i, n in enumerate(rope_sizes) if n == grid * grid]
    window = math.isqrt(min(rope_sizes))
    vit_heads = vit_width // (2 * int(rope[0].shape[-1]))
    pretrain_grid = math.isqrt(int(sd[_VIT + "pos_embed"].shape[1]) - 1)  # less the class token

    d = int(sd[_DET + "backbone.vision_backbone.convs.0.conv_1x1.weight"].shape[0])
    # The box relative-position bias has one output per attention head of the DETR decoder.
    rpb = _DET + "transformer.decoder.boxRPB_embed_x.layers.1.weight"
    detr_heads = detr_heads or int(sd[rpb].shape[0])
    text_width = int(sd[_TEXT + "token_embedding.weight"].shape[1])
    text_heads = text_heads or max(1, text_width // TEXT_HEAD_WIDTH)
    feature_sizes = [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]]

    def ffn(prefix: str) -> int:
        return int(sd[prefix + "linear1.weight"].shape[0])

    def vision_config() -> Sam3VisionConfig:
        return Sam3VisionConfig(
            backbone_config=Sam3ViTConfig(
                hidden_size=vit_width,
                intermediate_size=int(sd[_VIT + "blocks.0.mlp.fc1.weight"].shape[0]),
                num_hidden_layers=vit_depth,
                num_attention_heads=vit_heads,
                image_size=image_size,
                patch_size=patch,
                window_size=window,
                global_attn_indexes=global_blocks,
                pretrain_image_size=pretrain_grid * patch,
            ),
            fpn_hidden_size=d,
            backbone_feature_sizes=feature_sizes,
        )

    detector = Sam3Config(
        vision_config=vision_config(),
        text_config=CLIPTextConfig(
            vocab_size=vocab_size or int(sd[_TEXT + "token_embedding.weight"].shape[0]),
            hidden_size=text_width,
            intermediate_size=int(sd[_TEXT + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            projection_dim=int(sd[_TEXT + "text_projection"].shape[1]),
            num_hidden_layers=_count(sd, _TEXT + "transformer.resblocks."),
            num_attention_heads=text_heads,
            max_position_embeddings=int(sd[_TEXT + "positional_embedding"].shape[0]),
            hidden_act="gelu",
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=eos_token_id,
        ),
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            hidden_size=d,
            num_layers=_count(sd, _DET + "geometry_encoder.encode."),
            num_attention_heads=detr_heads,
            intermediate_size=ffn(_DET + "geometry_encoder.encode.0."),
        ),
        detr_encoder_config=Sam3DETREncoderConfig(
            hidden_size=d,
            num_layers=_count(sd, _DET + "transformer.encoder.layers."),
            num_attention_heads=detr_heads,
            intermediate_size=ffn(_DET + "transformer.encoder.layers.0."),
        ),
        detr_decoder_config=Sam3DETRDecoderConfig(
            hidden_size=d,
            num_layers=_count(sd, _DET + "transformer.decoder.layers."),
            num_queries=int(sd[_DET + "transformer.decoder.query_embed.weight"].shape[0]),
            num_attention_heads=detr_heads,
            intermediate_size=ffn(_DET + "transformer.decoder.layers.0."),
        ),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=d, num_attention_heads=detr_heads),
    )
    memory_out = int(sd[_TRK + "maskmem_backbone.out_proj.weight"].shape[0])
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision_config(),
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(
            hidden_size=d, image_size=image_size, patch_size=patch
        ),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(
            hidden_size=d,
            mlp_dim=int(
                sd[_TRK + "sam_mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
            ),
            num_hidden_layers=_count(sd, _TRK + "sam_mask_decoder.transformer.layers."),
            iou_head_hidden_dim=int(
                sd[_TRK + "sam_mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
            ),
        ),
        memory_attention_hidden_size=d,
        memory_attention_num_layers=_count(sd, _TRK + "transformer.encoder.layers."),
        memory_attention_feed_forward_hidden_size=ffn(_TRK + "transformer.encoder.layers.0."),
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=d,
        memory_encoder_output_channels=memory_out,
        mask_downsampler_embed_dim=d,
        memory_fuser_num_layers=_count(sd, _TRK + "maskmem_backbone.fuser.layers."),
        memory_fuser_embed_dim=d,
        memory_fuser_intermediate_dim=int(
            sd[_TRK + "maskmem_backbone.fuser.layers.0.pwconv1.weight"].shape[0]
        ),
        num_maskmem=int(sd[_TRK + "maskmem_tpos_enc"].shape[0]),
        image_size=image_size,
    )
    config = Sam3VideoConfig(
        detector_config=detector,
        tracker_config=tracker,
        low_res_mask_size=4 * grid,
        **META_VIDEO_SETTINGS,
    )
    config.image_size = image_size
    config.architectures = ["Sam3VideoModel"]
    return config


def convert_state_dict(state_dict: Mapping) -> dict:
    """STATE_DICT (Meta's names) in Sam3VideoModel's names, q/k/v split, buffers dropped."""
    import torch

    out: dict = {}
    point_embeds: dict[int, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key.endswith(".attn.freqs_cis"):
            continue  # the ViT's RoPE tables: transformers computes them from the config
        if key.startswith(_UNUSED_POINT_PROJECTIONS):
            continue
        new = converted_key(key)
        if new.endswith("backbone.embeddings.position_embeddings"):
            tensor = tensor[:, 1:, :]  # drop the class-token position
        elif new.endswith("text_encoder.text_projection.weight"):
            tensor = tensor.T  # CLIP stores x @ W; nn.Linear stores W.T
        if m := re.search(r"prompt_encoder\.point_embed\.(\d+)\.weight$", new):
            point_embeds[int(m[1])] = tensor
            continue
        if ".qkv." in new or ".in_proj_" in new:
            base = new.replace(".qkv.", ".").replace("in_proj_", "")
            stem, _, leaf = base.rpartition(".")
            for name, part in zip(
                ("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True
            ):
                out[f"{stem}.{name}.{leaf}"] = part
            continue
        out[new] = tensor
    if point_embeds:
        out["tracker_model.prompt_encoder.point_embed.weight"] = torch.cat(
            [point_embeds[i] for i in sorted(point_embeds)], dim=0
        )
    shared = "tracker_model.prompt_encoder.shared_embedding.positional_embedding"
    if shared in out:
        out["tracker_model.shared_image_embedding.positional_embedding"] = out[shared]
    return out


def load_converted(model, state_dict: Mapping) -> None:
    """Loads converted STATE_DICT into MODEL; UsageError naming keys that do not match.

    A key is missing when the model has a parameter or persistent buffer the checkpoint does
    not fill, unexpected when the checkpoint has a tensor the model lacks; a shape mismatch is
    an error too.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {label} ({shown})")
    if problems:
        raise UsageError("checkpoint does not convert to Sam3VideoModel: " + "; ".join(problems))
    model.load_state_dict(dict(state_dict), strict=True)


def find_bpe_file() -> Path | None:
    """CLIP's BPE vocabulary as an installed package ships it (sam3's assets, open_clip)."""
    import importlib.util

    for package, relative in (("sam3", "../assets"), ("open_clip", ".")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            candidate = (Path(location) / relative / BPE_FILE).resolve()
            if candidate.is_file():
                return candidate
    return None


def write_clip_tokenizer(bpe_path: str | Path, out_dir: Path, max_length: int = 32):
    """A CLIPTokenizer with Meta's vocabulary (the BPE file Meta's SimpleTokenizer reads),
    vocab.json and merges.txt written into OUT_DIR; pads to MAX_LENGTH tokens as SAM 3 does.

    The vocabulary is built as OpenAI's CLIP tokenizer builds it: the 256 byte symbols, the
    same with "</w>", one token per merge, then the start and end tokens (49408 in all).
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    try:
        lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the BPE vocabulary {bpe_path}: {exc}") from None
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    merges_file.write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return CLIPTokenizer(
        vocab=str(vocab_file),
        merges=str(merges_file),
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=max_length,
    )


def convert_sam3(
    checkpoint: str | Path | Mapping,
    out_dir: str | Path,
    *,
    bpe_path: str | Path | None = None,
    text_heads: int | None = None,
    detr_heads: int | None = None,
) -> Path:
    """OUT_DIR holding CHECKPOINT (Meta's sam3.pt, or a Meta model's state_dict()) as a
    transformers Sam3VideoModel folder: config, weights (safetensors), processor, tokenizer.

    OUT_DIR must be missing or empty, and is so again if the conversion fails. UsageError (one
    line) for a missing or foreign checkpoint, keys that do not convert, no BPE vocabulary, or a
    folder that is not empty.
    """
    from vidlake.model.tiny import make_folder

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} is not an empty folder; convert into a new or empty folder")
    bpe = Path(bpe_path) if bpe_path is not None else find_bpe_file()
    if bpe is None or not bpe.is_file():
        raise UsageError(
            f"no CLIP BPE vocabulary {bpe or BPE_FILE}: pass --bpe PATH to "
            f"{BPE_FILE} (open_clip_torch and Meta's sam3 repository ship it)"
        )
    if isinstance(checkpoint, Mapping):
        if not is_meta_sam3(checkpoint):
            raise UsageError("state dict is not a SAM 3 video model from Meta's sam3")
        state_dict = dict(checkpoint)
    else:
        state_dict = load_meta_state_dict(checkpoint)
    existed = out.exists()
    make_folder(out)
    try:
        return _write_converted(state_dict, out, bpe, text_heads, detr_heads)
    except BaseException:
        # Never a half-written model folder: it was missing or empty, so it is again.
        if existed:
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_converted(state_dict, out: Path, bpe: Path, text_heads, detr_heads) -> Path:
    import torch
    from transformers import Sam3ImageProcessor, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    tokenizer = write_clip_tokenizer(bpe, out)
    try:
        config = config_from_state_dict(
            state_dict,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            text_heads=text_heads,
            detr_heads=detr_heads,
        )
    except KeyError as exc:
        raise UsageError(
            f"checkpoint lacks {exc.args[0]}, which sizes the model: not a whole SAM 3 checkpoint"
        ) from None
    if config.detector_config.text_config.vocab_size != len(tokenizer):
        raise UsageError(
            f"the checkpoint's text vocabulary has {config.detector_config.text_config.vocab_size} "
            f"tokens, the BPE file {bpe} {len(tokenizer)}: pass the vocabulary it was trained with"
        )
    converted = convert_state_dict(state_dict)
    with torch.device("meta"):
        model = Sam3VideoModel(config)
    model.to_empty(device="cpu")
    load_converted(model, converted)
    model.save_pretrained(out)

    size = {"height": config.image_size, "width": config.image_size}
    low_res = config.low_res_mask_size
    processor = Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size=size, mask_size={"height": low_res, "width": low_res}
        ),
        video_processor=Sam2VideoVideoProcessor(
            size=size, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
        ),
        tokenizer=tokenizer,
        target_size=config.image_size,
    )
    processor.save_pretrained(out)
    logger.info("converted SAM 3 (%d parameters) into %s", model.num_parameters(), out)
    return out
