"""Meta's SAM 3 video model (package `sam3`, the reference) built small, on CPU, and run on frames.

Shared by tests/model/test_meta_reference.py and bench/fidelity_meta.py. Meta's builder
(`sam3.model_builder.build_sam3_video_model`) hard-codes the full 1008 px, 860M-parameter model;
`build_meta_video_model` calls the same constructors with the same arguments except the
dimensions (`MetaDims`), and Meta's video settings unchanged (detection 0.5, NMS 0.1, new
detection 0.7, hotstart 15/8/8, occlusion 0.7, fill 16, recondition every 16, memory selection).

Meta's code assumes CUDA in places (`PositionEmbeddingSine` precomputes on "cuda", `decoder.py`
and `io_utils.py` move tensors there, `pin_memory()` in the tracker); `cpu_shim()` runs it on a
machine without CUDA, in fp32 throughout. On a CUDA machine it is not needed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Meta's settings for the video model, as `build_sam3_video_model` passes them (with
# apply_temporal_disambiguation=True, its default).
META_SETTINGS = dict(
    score_threshold_detection=0.5,
    assoc_iou_thresh=0.1,
    det_nms_thresh=0.1,
    new_det_thresh=0.7,
    hotstart_delay=15,
    hotstart_unmatch_thresh=8,
    hotstart_dup_thresh=8,
    suppress_unmatched_only_within_hotstart=True,
    min_trk_keep_alive=-1,
    max_trk_keep_alive=30,
    init_trk_keep_alive=30,
    suppress_overlapping_based_on_recent_occlusion_threshold=0.7,
    suppress_det_close_to_boundary=False,
    fill_hole_area=16,
    recondition_every_nth_frame=16,
    masklet_confirmation_enable=False,
    decrease_trk_keep_alive_for_empty_masklets=False,
)


@dataclass(frozen=True)
class MetaDims:
    """Dimensions of a Meta SAM 3 video model; the defaults are a small one (112 px, width 128).

    `full()` gives Meta's own (1008 px, ViT-L width 1024 x 32, d_model 256).
    """

    image_size: int = 112
    patch_size: int = 14
    vit_width: int = 128
    vit_depth: int = 2
    vit_heads: int = 2
    vit_window: int = 4
    vit_global_blocks: tuple[int, ...] = (1,)
    vit_pretrain_size: int = 112
    vit_mlp_ratio: float = 2.0
    d_model: int = 128
    heads: int = 2
    ffn: int = 256
    text_width: int = 128
    text_heads: int = 2
    text_layers: int = 1
    encoder_layers: int = 1
    decoder_layers: int = 1
    num_queries: int = 16
    geometry_layers: int = 1
    memory_layers: int = 1
    memory_ffn: int = 256
    memory_out: int = 64  # the tracker memory encoder's output: 64 in Meta's model

    @classmethod
    def full(cls) -> MetaDims:
        return cls(
            image_size=1008, vit_width=1024, vit_depth=32, vit_heads=16, vit_window=24,
            vit_global_blocks=(7, 15, 23, 31), vit_pretrain_size=336, vit_mlp_ratio=4.625,
            d_model=256, heads=8, ffn=2048, text_width=1024, text_heads=16, text_layers=24,
            encoder_layers=6, decoder_layers=6, num_queries=200, geometry_layers=3,
            memory_layers=4, memory_ffn=2048,
        )  # fmt: skip

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def bpe_path() -> str:
    """Meta's CLIP BPE vocabulary: not in the sam3 wheel; open_clip ships the same file."""
    import open_clip

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


class _CudaToCpu(torch.overrides.TorchFunctionMode):
    """Rewrites every device="cuda" (keyword or positional, string or torch.device) to CPU, and
    keeps fp32 where Meta casts to bf16 for storage (`Tensor.to(torch.bfloat16)`: the tracker's
    backbone features before its all-gather, memory features): on a GPU autocast makes them
    bf16 anyway, on CPU a bf16 input meets fp32 weights and fails, and the comparison is fp32."""

    @staticmethod
    def _cpu(value):
        if isinstance(value, str) and value.startswith("cuda"):
            return "cpu"
        if isinstance(value, torch.device) and value.type == "cuda":
            return torch.device("cpu")
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:
            kwargs["device"] = self._cpu(kwargs["device"])
        args = tuple(self._cpu(a) for a in args)
        if func is torch.Tensor.to:
            args = tuple(torch.float32 if a is torch.bfloat16 else a for a in args)
            if kwargs.get("dtype") is torch.bfloat16:
                kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


@contextlib.contextmanager
def cpu_shim() -> Iterator[None]:
    """Meta's sam3 on a machine without CUDA: "cuda" devices become CPU, `.cuda()` and
    `.pin_memory()` return the tensor itself. A no-op where CUDA is available."""
    if torch.cuda.is_available():
        yield
        return
    import sam3.perflib.connected_components as cc

    saved = torch.Tensor.cuda, torch.Tensor.pin_memory, cc.connected_components_cpu
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.Tensor.pin_memory = lambda self, *a, **k: self
    cc.connected_components_cpu = _empty_safe(cc.connected_components_cpu)
    try:
        with _CudaToCpu():
            yield
    finally:
        torch.Tensor.cuda, torch.Tensor.pin_memory, cc.connected_components_cpu = saved


def _empty_safe(connected_components_cpu):
    """Meta's CPU connected components fail on an empty batch (`torch.stack([])`), which its
    GPU path never meets; an empty batch has empty labels and counts."""

    def wrapped(input_tensor: torch.Tensor):
        if input_tensor.shape[0] == 0:
            empty = torch.zeros(input_tensor.shape, dtype=torch.int64, device=input_tensor.device)
            return empty, empty.clone()
        return connected_components_cpu(input_tensor)

    return wrapped


def build_meta_video_model(dims: MetaDims = MetaDims(), seed: int = 0):
    """Meta's `Sam3VideoInferenceWithInstanceInteractivity` at DIMS, random weights (SEED), eval.

    The same constructors and arguments as `sam3.model_builder.build_sam3_video_model`, the
    dimensions aside. Call inside `cpu_shim()` on a machine without CUDA.
    """
    from sam3.model.decoder import (
        TransformerDecoder,
        TransformerDecoderLayer,
        TransformerDecoderLayerv2,
        TransformerEncoderCrossAttention,
    )
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import MLP, DotProductScoring, TransformerWrapper
    from sam3.model.model_misc import MultiheadAttentionWrapper as MultiheadAttention
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_image import Sam3ImageOnVideoMultiGPU
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor
    from sam3.model.sam3_video_inference import Sam3VideoInferenceWithInstanceInteractivity
    from sam3.model.text_encoder_ve import VETextEncoder
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone
    from sam3.sam.transformer import RoPEAttention
    from torch import nn

    d, size = dims.d_model, dims.image_size
    torch.manual_seed(seed)

    def attention(batch_first: bool | None = None, dropout: float = 0.1):
        extra = {} if batch_first is None else {"batch_first": batch_first}
        return MultiheadAttention(num_heads=dims.heads, dropout=dropout, embed_dim=d, **extra)

    def position_encoding(precompute: int | None = None):
        return PositionEmbeddingSine(
            num_pos_feats=d, normalize=True, scale=None, temperature=10000,
            precompute_resolution=precompute,
        )  # fmt: skip

    def cx_block():
        return CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1.0e-06,
                       use_dwconv=True)  # fmt: skip

    # Tracker (build_tracker, apply_temporal_disambiguation=True).
    maskmem_backbone = SimpleMaskEncoder(
        out_dim=dims.memory_out,
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=dims.memory_out, normalize=True, scale=None, temperature=10000,
            precompute_resolution=size,
        ),
        mask_downsampler=SimpleMaskDownSampler(
            embed_dim=d, kernel_size=3, stride=2, padding=1,
            interpol_size=[dims.grid * 16, dims.grid * 16],
        ),
        fuser=SimpleFuser(layer=cx_block(), num_layers=2),
        in_dim=d,
    )  # fmt: skip
    rope = dict(embedding_dim=d, num_heads=1, downsample_rate=1, dropout=0.1,
                rope_theta=10000.0, feat_sizes=[dims.grid, dims.grid], use_fa3=False,
                use_rope_real=False)  # fmt: skip
    memory_layer = TransformerDecoderLayerv2(
        cross_attention_first=False, activation="relu", dim_feedforward=dims.memory_ffn,
        dropout=0.1, pos_enc_at_attn=False, pre_norm=True, self_attention=RoPEAttention(**rope),
        d_model=d, pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        cross_attention=RoPEAttention(**rope, kv_in_dim=dims.memory_out, rope_k_repeat=True),
    )  # fmt: skip
    memory_attention = TransformerWrapper(
        encoder=TransformerEncoderCrossAttention(
            remove_cross_attention_layers=[], batch_first=True, d_model=d, frozen=False,
            pos_enc_at_input=True, layer=memory_layer, num_layers=dims.memory_layers,
            use_act_checkpoint=False,
        ),
        decoder=None,
        d_model=d,
    )  # fmt: skip
    tracker = Sam3TrackerPredictor(
        image_size=size, num_maskmem=7, backbone=None, backbone_stride=dims.patch_size,
        transformer=memory_attention, maskmem_backbone=maskmem_backbone,
        multimask_output_in_sam=True, forward_backbone_per_frame_for_eval=True,
        trim_past_non_cond_mem_for_eval=False, multimask_output_for_tracking=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, always_start_from_first_ann_frame=False,
        non_overlap_masks_for_mem_enc=False, non_overlap_masks_for_output=False,
        max_cond_frames_in_attn=4, offload_output_to_cpu_for_eval=False,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        clear_non_cond_mem_around_input=True, fill_hole_area=0, use_memory_selection=True,
    )  # fmt: skip

    # Detector.
    vit = ViT(
        img_size=size, pretrain_img_size=dims.vit_pretrain_size, patch_size=dims.patch_size,
        embed_dim=dims.vit_width, depth=dims.vit_depth, num_heads=dims.vit_heads,
        mlp_ratio=dims.vit_mlp_ratio, norm_layer="LayerNorm", drop_path_rate=0.1, qkv_bias=True,
        use_abs_pos=True, tile_abs_pos=True, global_att_blocks=dims.vit_global_blocks,
        rel_pos_blocks=(), use_rope=True, use_interp_rope=True, window_size=dims.vit_window,
        pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
        return_interm_layers=False, bias_patch_embed=False,
    )  # fmt: skip
    neck = Sam3DualViTDetNeck(
        position_encoding=position_encoding(precompute=size), d_model=d,
        scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=vit, add_sam2_neck=True,
    )  # fmt: skip
    text = VETextEncoder(
        tokenizer=SimpleTokenizer(bpe_path=bpe_path()), d_model=d, width=dims.text_width,
        heads=dims.text_heads, layers=dims.text_layers,
    )  # fmt: skip
    backbone = SAM3VLBackbone(scalp=1, visual=neck, text=text)
    encoder = TransformerEncoderFusion(
        layer=TransformerEncoderLayer(
            activation="relu", d_model=d, dim_feedforward=dims.ffn, dropout=0.1,
            pos_enc_at_attn=True, pos_enc_at_cross_attn_keys=False,
            pos_enc_at_cross_attn_queries=False, pre_norm=True,
            self_attention=attention(batch_first=True), cross_attention=attention(batch_first=True),
        ),
        num_layers=dims.encoder_layers, d_model=d, num_feature_levels=1, frozen=False,
        use_act_checkpoint=True, add_pooled_text_to_img_feat=False, pool_text_with_mask=True,
    )  # fmt: skip
    decoder = TransformerDecoder(
        layer=TransformerDecoderLayer(
            activation="relu", d_model=d, dim_feedforward=dims.ffn, dropout=0.1,
            cross_attention=attention(), n_heads=dims.heads, use_text_cross_attention=True,
        ),
        num_layers=dims.decoder_layers, num_queries=dims.num_queries, return_intermediate=True,
        box_refine=True, num_o2m_queries=0, dac=True, boxRPB="log", d_model=d, frozen=False,
        interaction_layer=None, dac_use_selfatt_ln=True, resolution=size,
        stride=dims.patch_size, use_act_checkpoint=True, presence_token=True,
    )  # fmt: skip
    segmentation_head = UniversalSegmentationHead(
        hidden_dim=d, upsampling_stages=3, aux_masks=False, presence_head=False,
        dot_product_scorer=None, act_ckpt=True, cross_attend_prompt=attention(dropout=0),
        pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode="nearest",
                                   hidden_dim=d),
    )  # fmt: skip
    geometry_encoder = SequenceGeometryEncoder(
        pos_enc=position_encoding(), encode_boxes_as_points=False, points_direct_project=True,
        points_pool=True, points_pos_enc=True, boxes_direct_project=True, boxes_pool=True,
        boxes_pos_enc=True, d_model=d, num_layers=dims.geometry_layers,
        layer=TransformerEncoderLayer(
            activation="relu", d_model=d, dim_feedforward=dims.ffn, dropout=0.1,
            pos_enc_at_attn=False, pre_norm=True, self_attention=attention(batch_first=False),
            pos_enc_at_cross_attn_queries=False, pos_enc_at_cross_attn_keys=True,
            cross_attention=attention(batch_first=False),
        ),
        use_act_ckpt=True, add_cls=True, add_post_encode_proj=True,
    )  # fmt: skip
    scoring = DotProductScoring(
        d_model=d, d_proj=d,
        prompt_mlp=MLP(input_dim=d, hidden_dim=dims.ffn, output_dim=d, num_layers=2,
                       dropout=0.1, residual=True, out_norm=nn.LayerNorm(d)),
    )  # fmt: skip
    detector = Sam3ImageOnVideoMultiGPU(
        num_feature_levels=1, backbone=backbone,
        transformer=TransformerWrapper(encoder=encoder, decoder=decoder, d_model=d),
        segmentation_head=segmentation_head, semantic_segmentation_head=None,
        input_geometry_encoder=geometry_encoder, use_early_fusion=True,
        use_dot_prod_scoring=True, dot_prod_scoring=scoring, supervise_joint_box_scores=True,
    )  # fmt: skip
    model = Sam3VideoInferenceWithInstanceInteractivity(
        detector=detector, tracker=tracker, image_size=size, image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5), compile_model=False, **META_SETTINGS,
    )  # fmt: skip
    with torch.no_grad():
        # Meta's TextTransformer leaves these as torch.empty (its training code initialises
        # them; a checkpoint fills them): CLIP's initialisation.
        encoder = text.encoder
        nn.init.normal_(encoder.positional_embedding, std=0.01)
        nn.init.normal_(encoder.text_projection, std=encoder.width**-0.5)
        for name, value in model.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise RuntimeError(f"{name} is not initialised")
    return model.eval()


def calibrate(
    model,
    class_scale: float = 10.0,
    presence_bias: float = 4.0,
    object_bias: float = 2.0,
    mask_scale: float = 5.0,
    mask_bias: float = 0.3,
) -> None:
    """Makes random weights decide: scores that cross Meta's thresholds, tracks that live.

    Random weights give every query a class logit near 0 (std ~0.1 at width 128) and a presence
    near 0.7, so every detection scores ~0.37 and none crosses 0.5. Scaling the dot-product
    scorer's query projection by CLASS_SCALE spreads the logits (std ~1: per prompt a few
    queries above 0.5, some above 0.7, most below); PRESENCE_BIAS on the presence head's output
    makes the concept present. The tracker's masks are logits of +-0.1 whose few positive pixels
    sprinkle removal deletes, so every track is empty from its second frame: MASK_SCALE on the
    mask hypernetworks' output and MASK_BIAS on the last upscaling convolution give masks of
    about half the frame, and OBJECT_BIAS on the object-score head keeps objects visible
    (sigmoid(2) = 0.88, above the 0.8 reconditioning bar).
    """
    with torch.no_grad():
        projection = model.detector.dot_prod_scoring.hs_proj
        projection.weight.mul_(class_scale)
        projection.bias.mul_(class_scale)
        model.detector.transformer.decoder.presence_token_head.layers[-1].bias.add_(presence_bias)
        decoder = model.tracker.sam_mask_decoder
        decoder.pred_obj_score_head.layers[-1].bias.add_(object_bias)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(mask_scale)
            mlp.layers[-1].bias.mul_(mask_scale)
        decoder.output_upscaling[-2].bias.add_(mask_bias)


@dataclass
class MetaEvents:
    """How often Meta's model took each decision (counted on its own methods)."""

    detections_over_05: int = 0  # after NMS
    detections_over_07: int = 0
    removed_by_nms: int = 0
    new_objects: int = 0
    unmatched_tracks: int = 0
    removed_by_hotstart: int = 0
    reconditioned: int = 0
    suppressed_by_occlusion: int = 0

    def line(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in vars(self).items())


def count_meta_events(model) -> MetaEvents:
    """A MetaEvents that counts MODEL's decisions from now on (wrappers on this instance and
    on the NMS function Meta's detector calls)."""
    import sam3.model.sam3_image as sam3_image

    events = MetaEvents()

    def wrap(owner, name, after):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            after(out, *args, **kwargs)
            return out

        setattr(owner, name, wrapped)

    def on_detection(out, *args, **kwargs):
        scores = out["scores"]
        events.detections_over_05 += int((scores > 0.5).sum())
        events.detections_over_07 += int((scores >= 0.7).sum())

    def on_association(out, *args, **kwargs):
        events.new_objects += len(out[0])
        events.unmatched_tracks += len(out[1])

    def on_hotstart(out, *args, **kwargs):
        events.removed_by_hotstart += len(out[0])

    reconditioning = [False]

    def recondition(original):
        def wrapped(*args, **kwargs):
            reconditioning[0] = True
            try:
                return original(*args, **kwargs)
            finally:
                reconditioning[0] = False

        return wrapped

    def on_new_mask(out, *args, **kwargs):
        events.reconditioned += reconditioning[0]

    def on_occlusion(out, *args, **kwargs):
        events.suppressed_by_occlusion += int(out.sum())

    wrap(model, "run_backbone_and_detection", on_detection)
    nms = getattr(sam3_image.nms_masks, "__wrapped__", sam3_image.nms_masks)

    def counted_nms(pred_probs, pred_masks, prob_threshold, iou_threshold):
        keep = nms(pred_probs, pred_masks, prob_threshold, iou_threshold)
        events.removed_by_nms += int((pred_probs > prob_threshold).sum() - keep.sum())
        return keep

    counted_nms.__wrapped__ = nms
    sam3_image.nms_masks = counted_nms
    wrap(model, "_associate_det_trk", on_association)
    wrap(model, "_process_hotstart", on_hotstart)
    model._recondition_masklets = recondition(model._recondition_masklets)
    wrap(model.tracker, "add_new_mask", on_new_mask)
    wrap(model, "_get_objects_to_suppress_based_on_most_recently_occluded", on_occlusion)
    return events


def run_meta(model, frames: np.ndarray, prompt: str) -> dict[int, dict[int, np.ndarray]]:
    """{object id: {frame: (H, W) bool mask}} from Meta's model on FRAMES for one text PROMPT
    (Meta's video predictor takes one text prompt per session), propagated forward from frame 0.

    FRAMES: (T, S, S, 3) uint8 at the model's image size S, so Meta's resize is the identity;
    the pixels go in as float32 (Meta's loader stores them as float16).
    """
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with torch.inference_mode():
        state = model.init_state(resource_path=images, offload_video_to_cpu=True)
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        state["input_batch"].img_batch = (pixels - 0.5) / 0.5
        model.add_prompt(state, frame_idx=0, text_str=prompt)
        out: dict[int, dict[int, np.ndarray]] = {}
        for frame_idx, outputs in model.propagate_in_video(
            state, start_frame_idx=0, max_frame_num_to_track=len(frames), reverse=False
        ):
            if outputs is None:
                continue
            for object_id, mask in zip(
                outputs["out_obj_ids"], outputs["out_binary_masks"], strict=True
            ):
                if mask.any():
                    out.setdefault(int(object_id), {})[int(frame_idx)] = np.asarray(mask, bool)
    return out


def run_meta_prompts(
    model, frames: np.ndarray, prompts: Sequence[str]
) -> dict[tuple[str, int], dict[int, np.ndarray]]:
    """{(prompt, object id): {frame: mask}}: one Meta session per prompt."""
    return {
        (prompt, object_id): masks
        for prompt in prompts
        for object_id, masks in run_meta(model, frames, prompt).items()
    }


def run_vidlake(segmenter, frames: np.ndarray, prompts: Sequence[str]):
    """{(prompt, object id): {frame: (H, W) bool mask}} from vidlake's `Sam3Segmenter.segment`
    on FRAMES with every prompt in one session, as the index job runs it."""
    from pycocotools import mask as mask_utils

    out: dict[tuple[str, int], dict[int, np.ndarray]] = {}
    for masklet in segmenter.segment(frames, list(prompts)):
        masks = {}
        for frame, rle in zip(masklet.frame_idx.tolist(), masklet.masks, strict=True):
            mask = mask_utils.decode(rle).astype(bool)
            if mask.any():
                masks[int(frame)] = mask
        if masks:
            out[(masklet.concept, masklet.object_id)] = masks
    return out


def mean_iou(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    """Mean mask IoU of two objects over the frames where both are visible (0 if none)."""
    common = sorted(set(a) & set(b))
    if not common:
        return 0.0
    ious = [(a[f] & b[f]).sum() / max(1, (a[f] | b[f]).sum()) for f in common]
    return float(np.mean(ious))


@dataclass
class ClipReport:
    """How vidlake's objects on one clip compare with Meta's (matched greedily by mean IoU)."""

    n_reference: int
    n_ours: int
    # (reference key, our key, mean IoU, frames where only one side has the object)
    matched: list[tuple[tuple, tuple, float, int]]
    unmatched_reference: list[tuple]
    unmatched_ours: list[tuple]

    @property
    def mean_iou(self) -> float:
        return float(np.mean([m[2] for m in self.matched])) if self.matched else float("nan")

    @property
    def min_iou(self) -> float:
        return min((m[2] for m in self.matched), default=float("nan"))

    @property
    def frames_differing(self) -> int:
        return sum(m[3] for m in self.matched)

    def line(self) -> str:
        return (
            f"objects Meta {self.n_reference}, vidlake {self.n_ours}; matched {len(self.matched)}"
            f" (mean IoU {self.mean_iou:.4f}, min {self.min_iou:.4f}, frames where one side"
            f" lacks the object {self.frames_differing}); unmatched Meta "
            f"{len(self.unmatched_reference)}, vidlake {len(self.unmatched_ours)}"
        )


def compare_objects(reference: dict, ours: dict) -> ClipReport:
    """Matches objects of the same prompt, greedily by mean IoU over common frames (> 0)."""
    pairs = sorted(
        (
            (mean_iou(r_masks, o_masks), r_key, o_key)
            for r_key, r_masks in reference.items()
            for o_key, o_masks in ours.items()
            if r_key[0] == o_key[0]
        ),
        key=lambda p: -p[0],
    )
    used_r, used_o, matched = set(), set(), []
    for iou, r_key, o_key in pairs:
        if iou <= 0 or r_key in used_r or o_key in used_o:
            continue
        used_r.add(r_key)
        used_o.add(o_key)
        differing = len(set(reference[r_key]) ^ set(ours[o_key]))
        matched.append((r_key, o_key, iou, differing))
    return ClipReport(
        n_reference=len(reference),
        n_ours=len(ours),
        matched=matched,
        unmatched_reference=sorted(set(reference) - used_r),
        unmatched_ours=sorted(set(ours) - used_o),
    )


def synthetic_clip(seed: int, n_frames: int, size: int = 112) -> np.ndarray:
    """(T, S, S, 3) uint8: two to four coloured rectangles moving over a grey background."""
    rng = np.random.default_rng(seed)
    frames = np.full((n_frames, size, size, 3), 40, dtype=np.uint8)
    for _ in range(rng.integers(2, 5)):
        h, w = rng.integers(size // 6, size // 2, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        dy, dx = rng.integers(-2, 3, size=2)
        colour = rng.integers(0, 256, size=3)
        for t in range(n_frames):
            top = int(np.clip(y + dy * t, 0, size - h))
            left = int(np.clip(x + dx * t, 0, size - w))
            frames[t, top : top + h, left : left + w] = colour
    return frames


@dataclass
class FidelityRun:
    """Per clip, how vidlake compared with Meta; and what Meta decided over all clips."""

    reports: list[ClipReport]
    events: MetaEvents
    meta_s: float
    vidlake_s: float


def run_fidelity(
    clips: Sequence[np.ndarray],
    prompts: Sequence[str],
    model_dir,
    dims: MetaDims = MetaDims(),
    seed: int = 0,
    parity: bool = True,
) -> FidelityRun:
    """Meta's model (DIMS, SEED, calibrated) and vidlake's on the same weights (converted into
    MODEL_DIR by `vidlake.model.convert`, loaded by `load_segmenter`) on every clip.

    Meta: one session per prompt (its predictor takes one text prompt), Meta's settings.
    vidlake: `Sam3Segmenter.segment` with every prompt in one session, NMS and hole filling
    by vidlake's own (`vidlake.model.quality`, equal to Meta's CPU algorithms: tested), with
    or without (PARITY) `meta_parity`.
    """
    import time
    from pathlib import Path

    from vidlake.model import load_segmenter
    from vidlake.model.convert import convert_sam3

    with cpu_shim():
        meta = build_meta_video_model(dims, seed=seed)
        calibrate(meta)
        convert_sam3(meta.state_dict(), Path(model_dir))
        events = count_meta_events(meta)
        start = time.perf_counter()
        references = [run_meta_prompts(meta, clip, prompts) for clip in clips]
        meta_s = time.perf_counter() - start

    segmenter = load_segmenter(str(model_dir), device="cpu", meta_parity=parity)
    start = time.perf_counter()
    ours = [run_vidlake(segmenter, clip, prompts) for clip in clips]
    vidlake_s = time.perf_counter() - start
    reports = [compare_objects(r, o) for r, o in zip(references, ours, strict=True)]
    return FidelityRun(reports=reports, events=events, meta_s=meta_s, vidlake_s=vidlake_s)
