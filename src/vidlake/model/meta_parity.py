"""Where transformers' SAM 3 video port departs from Meta's predictor, Meta's behaviour back.

`enable_meta_parity(model)` installs, on one `Sam3VideoModel` instance (`vidlake.model.overrides`,
as `batched_tracker` does), the fixes below. Each was found by the differential harness
(tests/model/test_meta_reference.py, bench/fidelity_meta.py): Meta's own `sam3` package and the
same weights converted by `vidlake.model.convert`, on the same frames and prompts, at Meta's
settings. Departures that remain are measured in bench/RESULTS.md ("Fidelity to Meta's SAM 3").

1. The geometry encoder's CLS token on text prompts. Meta's detector always encodes the
   geometric prompt, an empty one for a text prompt, and its geometry encoder adds a CLS token
   (refined by attention to the frame's features) that is appended to the text tokens: the DETR
   encoder, decoder, scorer and mask head all see 32 text tokens + 1. transformers'
   `Sam3Model.forward` runs the geometry encoder only when boxes are given, so a text prompt is
   32 tokens and every detection score and mask differs (on the harness's small model a score
   of 0.67 in Meta's is 0.84 in transformers'). The override runs the geometry encoder with no
   boxes on the frame's features, as Meta does, and appends its output to the text tokens.
   A prompt that already carries geometry tokens (vidlake's exemplar prompts, longer than the
   text encoder's context) is left as is.
2. The mask a new object starts from. Meta resizes the detection's mask logits to the
   tracker's input-mask size (4x the low-resolution mask, bilinear) and keeps pixels > 0;
   transformers keeps low-resolution logits >= 0.5. The override does what Meta does.
"""

from __future__ import annotations

from vidlake.model.overrides import override


def enable_meta_parity(model) -> None:
    """MODEL (a transformers `Sam3VideoModel`) behaves as Meta's predictor where they differ
    and vidlake can fix it (see the module docstring); this instance only."""
    detector = model.detector_model
    override(detector, "forward", _forward_with_empty_geometry_prompt(type(detector).forward))
    override(model, "_tracker_add_new_objects", _tracker_add_new_objects)
    override(model, "_associate_det_trk", _per_prompt_association(type(model)._associate_det_trk))


def _per_prompt_association(upstream_associate):
    """`Sam3VideoModel._associate_det_trk`, with every detection of a prompt that has no tracked
    object new, as in Meta's one-prompt session with no tracks."""

    def associate(
        self, det_masks, det_scores, trk_masks, trk_obj_ids, det_prompt_ids, trk_prompt_ids
    ):
        out = upstream_associate(
            self, det_masks, det_scores, trk_masks, trk_obj_ids, det_prompt_ids, trk_prompt_ids
        )
        if trk_masks.size(0) == 0 or det_masks.size(0) == 0:
            return out  # upstream's shortcuts already hold for every prompt
        tracked = set(trk_prompt_ids.tolist())
        untracked = [i for i, p in enumerate(det_prompt_ids.tolist()) if p not in tracked]
        if not untracked:
            return out
        return (sorted(set(out[0]) | set(untracked)), *out[1:])

    return associate


def _tracker_add_new_objects(
    self, inference_session, frame_idx, new_obj_ids, new_obj_masks, reverse=False
):
    """`Sam3VideoModel._tracker_add_new_objects` with Meta's mask for a new object: the
    detection's logits resized to the tracker's input-mask size, > 0."""
    import torch.nn.functional as F

    size = 4 * self.low_res_mask_size
    masks = F.interpolate(
        new_obj_masks.unsqueeze(1).float(), size=(size, size), mode="bilinear",
        align_corners=False,
    ) > 0  # fmt: skip
    for obj_id, mask in zip(new_obj_ids, masks, strict=True):
        obj_idx = inference_session.obj_id_to_idx(obj_id)
        inference_session.add_mask_inputs(obj_idx, frame_idx, mask.unsqueeze(0))
    inference_session.obj_with_new_inputs = list(new_obj_ids)
    self.tracker_model(
        inference_session=inference_session,
        frame_idx=frame_idx,
        reverse=reverse,
        run_mem_encoder=True,
    )


def _forward_with_empty_geometry_prompt(upstream_forward):
    """`Sam3Model.forward`, with a text-only prompt extended by the geometry encoder's output
    for an empty geometric prompt (its CLS token), as Meta's detector encodes it."""

    def forward(
        self,
        pixel_values=None,
        vision_embeds=None,
        input_ids=None,
        attention_mask=None,
        text_embeds=None,
        input_boxes=None,
        input_boxes_labels=None,
        **kwargs,
    ):
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        call = dict(input_boxes=input_boxes, input_boxes_labels=input_boxes_labels, **kwargs)
        context = self.config.text_config.max_position_embeddings
        if input_boxes is not None and input_boxes.numel() > 0:
            return upstream_forward(
                self, pixel_values=pixel_values, vision_embeds=vision_embeds,
                input_ids=input_ids, attention_mask=attention_mask, text_embeds=text_embeds,
                **call,
            )  # fmt: skip
        if vision_embeds is None:
            vision_embeds = self.vision_encoder(pixel_values)
        if text_embeds is None:
            text_embeds = self.get_text_features(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=True
            )
        text = text_embeds.pooler_output
        if text.shape[1] > context:
            # Already text + geometry tokens (an exemplar prompt encoded by vidlake).
            return upstream_forward(
                self, vision_embeds=vision_embeds, attention_mask=attention_mask,
                text_embeds=text_embeds, **call,
            )  # fmt: skip
        batch = text.shape[0]
        device = text.device
        geometry = self.geometry_encoder(
            box_embeddings=torch.zeros(batch, 0, 4, dtype=text.dtype, device=device),
            box_mask=torch.zeros(batch, 0, dtype=torch.bool, device=device),
            box_labels=torch.zeros(batch, 0, dtype=torch.long, device=device),
            img_feats=vision_embeds.fpn_hidden_states[:-1],
            img_pos_embeds=vision_embeds.fpn_position_encoding[:-1],
        )
        text_mask = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones(text.shape[:2], dtype=torch.bool, device=device)
        )
        combined = BaseModelOutputWithPooling(
            last_hidden_state=text_embeds.last_hidden_state,
            pooler_output=torch.cat([text, geometry.last_hidden_state.to(text.dtype)], dim=1),
        )
        mask = torch.cat([text_mask, geometry.attention_mask.bool()], dim=1)
        return upstream_forward(
            self, vision_embeds=vision_embeds, attention_mask=mask, text_embeds=combined, **call
        )

    return forward
