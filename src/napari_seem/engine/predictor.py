"""``SeemPredictor``: encode an image once, then answer prompts for one or many objects.

    predictor = SeemPredictor(model)
    predictor.set_image(plane)                      # encodes once (cached by content signature)
    results = predictor.predict([ObjectPrompt(points=[Point(120, 80)]),
                                 ObjectPrompt(text="nucleus")])
    refined = predictor.predict([ObjectPrompt(points=[Point(120, 80), Point(130, 95, positive=False)])],
                                previous=[results[0]])   # carries SEEM's memory prompt

    everything = predictor.segment_everything(["nucleus", "cell"])   # open-vocabulary instances

Visual prompts (points, boxes, scribbles, masks) of several objects are decoded together in one
pass (v1 keeps objects apart); a text-only object is grounded; a reference region is encoded on its
own image and applied here ("find objects like this one"). Results come back at the plane's full
resolution, with the low-resolution logits that the next round uses as memory.

Composition: an object with a visual prompt (or a reference) *and* text is decoded with the text's
tokens readable by its spatial queries (the official ``STROKE_SAMPLER.EVAL.GROUNDING`` hook, see
``layout.spatial_reads_text``); the answer is still selected by the visual prompt's embedding.
Objects with the same text share a pass.

Boxes: a box is prompted as its filled rectangle, and the answer is chosen among the object's
candidate queries by embedding match *and* fit to the box (``postprocess.select_box_aware``), then
clipped to the box grown by ``box_margin`` (ours; the official evaluation clicks the box centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model import ImageFeatures, SeemModel
from napari_seem.model.decoder import GroundingPrompt
from napari_seem.model.layout import AttentionLayout, spatial_reads_text
from napari_seem.model.postprocess import (
    BoxYX,
    assign_segments,
    confident_queries,
    expand_box,
    grounding_similarity,
    resize_mask_logits,
    select_box_aware,
    select_by_embedding,
)
from napari_seem.model.visual_sampler import VisualPrompt
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError, ReferenceRegion, Scribble, rasterize, validate

from .conversion import (
    CLIPPED_LOGIT,
    ObjectResult,
    best_class,
    follow_mask,
    logit_cell_size,
    obey_clicks,
    resize_mask_nearest,
    resize_nearest,
    restrict_to_prompt,
    stability_score,
    vocabulary_probabilities,
)
from .feature_cache import FeatureCache, encode_prepared
from .image import DEFAULT_TARGET_SIZE, PreparedImage, prepare_image
from .point_grid import PointGrid, segment_by_points

MAX_OBJECTS_PER_PASS = 32  # v1's 32 memory tokens are split among the objects of one pass
ENGINE_MODES = ("v1", "v0")  # the demo layout answers through object queries: not wired into the engine


def objects_per_pass(model: SeemModel) -> int:
    """Objects one decode can answer apart: v1 keeps each prompt object's tokens and queries apart
    and splits its memory tokens among them; v0 merges all prompts of a decode into one object."""
    if not model.layout.per_object_prompts:
        return 1
    return max(1, min(MAX_OBJECTS_PER_PASS, model.cfg.decoder.spatial_memories))


@dataclass
class EverythingResult:
    """Open-vocabulary instances of one plane (:meth:`SeemPredictor.segment_everything`).

    ``labels``: int32 ``[H, W]`` at the plane's resolution, instance ids 1..n, 0 = background; the
    instances do not overlap. Instance ``i`` (id ``i + 1``) is ``class_names[i]`` =
    ``vocabulary[class_ids[i]]`` with ``scores[i]`` (0..1): its class probability, or with the
    point-grid strategy its mask's stability.
    """

    labels: np.ndarray
    class_names: list[str]
    class_ids: list[int]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)


class SeemPredictor:
    """``box_weight`` (0..1): weight of the box fit against the embedding match when choosing the answer
    to a box prompt (0 = the plain embedding selection). ``box_margin``: a box-prompted mask is clipped
    to the box grown by this fraction of its height/width on each side (``None`` = no clipping).
    ``cache``: an on-disk :class:`FeatureCache` that encodes go through (``None``: memory only).
    ``keep_connected``: a visual prompt's mask keeps only its connected parts that touch the positive
    prompt (:func:`~napari_seem.engine.conversion.keep_prompted_parts`; cells are connected objects),
    and the memory for the next round drops the rest too. ``obey_clicks``: a clicked object's mask
    is made to agree with its clicks (:func:`~napari_seem.engine.conversion.obey_clicks`: negative
    clicks split off what is nearer to them, a missed positive click adds its region), and the
    memory with it."""

    def __init__(
        self,
        model: SeemModel,
        target_size: int = DEFAULT_TARGET_SIZE,
        seed: int = 0,
        box_weight: float = 0.5,
        box_margin: float | None = 0.1,
        cache: FeatureCache | None = None,
        keep_connected: bool = True,
        obey_clicks: bool = True,
    ) -> None:
        if not 0.0 <= box_weight <= 1.0:
            raise ValueError(f"box_weight must be in [0, 1], got {box_weight}")
        if box_margin is not None and box_margin < 0:
            raise ValueError(f"box_margin must be >= 0 (a fraction of the box size) or None, got {box_margin}")
        if model.layout.name not in ENGINE_MODES:
            raise ValueError(f"the engine runs SEEM's {' and '.join(ENGINE_MODES)} modes, not {model.layout.name!r} "
                             "(the official Gradio app's decoder); load the same v0 checkpoint as 'focalt_v0' or "
                             "'focall_v0', or call model.set_mode('v0')")
        self.model = model.eval()
        self.target_size = target_size
        self.seed = seed
        self.box_weight = box_weight
        self.box_margin = box_margin
        self.cache = cache
        self.keep_connected = keep_connected
        self.obey_clicks = obey_clicks
        self.prepared: PreparedImage | None = None
        self.features: ImageFeatures | None = None
        self.vocabulary: list[str] | None = None
        self._vocabulary_embeddings: torch.Tensor | None = None
        self._reference_cache: dict[str, ImageFeatures] = {}

    # ------------------------------------------------------------------ image and vocabulary
    def set_image(self, image: np.ndarray, channel_axis: int | None = None, channels=None) -> None:
        """Prepare and encode ``image`` (2D gray, RGB, or multichannel with a channel choice).
        Setting the same content again does not re-encode."""
        prepared = prepare_image(image, channel_axis, channels, self.target_size)
        if self.prepared is not None and prepared.signature == self.prepared.signature:
            return
        self.features = self._encode(prepared)
        self.prepared = prepared

    def set_vocabulary(self, names: Sequence[str] | None) -> None:
        """Class names for labelling results and for :meth:`segment_everything` (``None`` clears).

        The embeddings (81 prompt templates per name through the text encoder) are computed only when
        the names change; setting the same names again just re-installs the cached embeddings."""
        if not names:
            self.vocabulary = None
            self._vocabulary_embeddings = None
            self.model.set_vocabulary_embeddings(None)
            return
        names = list(names)
        if names != self.vocabulary or self._vocabulary_embeddings is None:
            with torch.no_grad():
                self._vocabulary_embeddings = self.model.set_vocabulary(names)
        else:  # the model may have been given another vocabulary meanwhile (it is shared)
            self.model.set_vocabulary_embeddings(self._vocabulary_embeddings)
        self.vocabulary = names

    def _encode(self, prepared: PreparedImage) -> ImageFeatures:
        if self.cache is not None:
            return self.cache.get_or_encode(self.model, prepared)
        return encode_prepared(self.model, prepared)

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        prompts: ObjectPrompt | Sequence[ObjectPrompt],
        previous: Sequence[ObjectResult | None] | None = None,
    ) -> list[ObjectResult]:
        """Segment one object per prompt; ``previous[i]`` (optional) is object i's last result."""
        if self.features is None or self.prepared is None:
            raise RuntimeError("call set_image() before predict()")
        prompts = [prompts] if isinstance(prompts, ObjectPrompt) else list(prompts)
        previous = list(previous) if previous is not None else [None] * len(prompts)
        if len(previous) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(previous)} previous results")
        for i, prompt in enumerate(prompts):
            try:
                validate(prompt, self.prepared.original_shape)
            except PromptError as err:
                raise PromptError(f"object {i}: {err}") from None
        results: list[ObjectResult | None] = [None] * len(prompts)
        size = objects_per_pass(self.model)
        with torch.no_grad():
            for text, group in _visual_passes(prompts, previous):
                for start in range(0, len(group), size):
                    chunk = group[start : start + size]
                    answers = self._predict_visual([prompts[i] for i in chunk], [previous[i] for i in chunk], text)
                    for i, result in zip(chunk, answers):
                        results[i] = result
            for i, prompt in enumerate(prompts):
                if prompt.has_visual:
                    continue
                if prompt.reference is not None:
                    results[i] = self._predict_reference(prompt.reference, previous[i], _text(prompt))
                else:
                    results[i] = self._predict_text(prompt.text)
        return results

    def _model_prompt(self, prompt: ObjectPrompt) -> ObjectPrompt:
        """The visual part of ``prompt`` in model-resolution coordinates (clicks stay 3x3 there)."""
        s = self.prepared.scale
        shape = self.prepared.model_shape
        clip = lambda v, n: min(max(v, 0.0), n - 1.0)  # noqa: E731  (rounding may touch the border)
        return ObjectPrompt(
            points=[Point(clip(p.y * s, shape[0]), clip(p.x * s, shape[1]), p.positive) for p in prompt.points],
            boxes=[Box(clip(b.y0 * s, shape[0]), clip(b.x0 * s, shape[1]), clip(b.y1 * s, shape[0]),
                       clip(b.x1 * s, shape[1])) for b in prompt.boxes],
            scribbles=[Scribble(tuple((clip(y * s, shape[0]), clip(x * s, shape[1])) for y, x in sc.points),
                                max(sc.width * s, 1.0), sc.positive) for sc in prompt.scribbles],
            masks=[MaskPrompt(resize_mask_nearest(m.mask, shape), m.positive) for m in prompt.masks],
        )

    def _with_text(self, text: str | None) -> tuple[GroundingPrompt | None, AttentionLayout | None]:
        """Grounding tokens of ``text`` and the layout in which spatial queries read them (or Nones)."""
        if text is None:
            return None, None
        grounding, _ = self.model.grounding_prompt([text], self.features)
        return grounding, spatial_reads_text(self.model.layout)

    def _predict_visual(
        self, prompts: list[ObjectPrompt], previous: list[ObjectResult | None], text: str | None = None
    ) -> list[ObjectResult]:
        """One decoder pass for the visual prompts of ``prompts`` (all with or all without memory),
        composed with ``text`` when given."""
        shape = self.prepared.model_shape
        model_prompts = [self._model_prompt(p) for p in prompts]
        rasters = [rasterize(p, shape) for p in model_prompts]
        pos = torch.from_numpy(np.stack([r[0] for r in rasters]))
        neg = torch.from_numpy(np.stack([r[1] for r in rasters]))
        generator = torch.Generator().manual_seed(self.seed)
        spatial = self.model.encode_visual_prompt(self.features, pos, neg, generator=generator)
        prev = None
        if previous[0] is not None:
            prev = torch.stack([r.logits for r in previous])[None]
        grounding, layout = self._with_text(text)
        out = self.model.decode(self.features, spatial=spatial, prev_mask=prev, generator=generator,
                                grounding=grounding, layout=layout, include_object_queries=False)
        pred = out.final["queries_spatial"]
        _, index, match = select_by_embedding(pred, spatial.pos_embedding, self.model.layout.per_object_prompts)
        results = []
        for n, (prompt, model_prompt) in enumerate(zip(prompts, model_prompts)):
            query = int(index[0, n])
            if prompt.boxes:
                query = self._select_for_box(pred.masks[0], match[0, :, n], _union_box(model_prompt.boxes))
            box = _union_box(prompt.boxes) if prompt.boxes else None
            anchor = rasterize(prompt, self.prepared.original_shape)[0] if self.keep_connected else None
            clicks = _clicks(prompt, self.prepared.original_shape) if self.obey_clicks else None
            results.append(self._result(pred.masks[0, query], pred.class_emb[0, query], box, anchor, clicks))
        return results

    def _select_for_box(self, masks: torch.Tensor, match: torch.Tensor, box: BoxYX) -> int:
        """Box-aware choice among the object's candidates: ``masks [Q, h, w]`` (1/4 resolution),
        ``match [Q]`` (-inf for queries of other objects), ``box`` at model resolution."""
        candidates = torch.isfinite(match).nonzero().flatten()
        if self.box_weight == 0:
            return int(candidates[match[candidates].argmax()])
        features = self.features
        # The fit is judged at model resolution: at 1/4 of it a small nucleus is a few cells wide.
        model_res = _model_resolution(masks[candidates], features)
        margin = 0.0 if self.box_margin is None else self.box_margin
        best, _ = select_box_aware(model_res, match[candidates], box, self.box_weight, margin)
        return int(candidates[best])

    def _predict_text(self, text: str) -> ObjectResult:
        grounding, sentence = self.model.grounding_prompt([text], self.features)
        out = self.model.decode(self.features, grounding=grounding, include_object_queries=False)
        pred = out.final["queries_grounding"]
        scale = self.model.predictor.lang_encoder.logit_scale
        best = int(grounding_similarity(pred.class_emb[0], sentence, scale)[:, 0].argmax())
        return self._result(pred.masks[0, best], pred.class_emb[0, best])

    def _predict_reference(
        self, reference: ReferenceRegion, previous: ObjectResult | None, text: str | None = None
    ) -> ObjectResult:
        """Encode the reference region on its own image, then apply its tokens here (the official
        v1 'refimg' path, completed: the per-object token indices travel with the tokens); ``text``
        composes as for visual prompts."""
        if isinstance(reference.image, (int, np.integer)):
            raise PromptError("a frame-index reference needs a video session; pass the reference image itself")
        prepared = prepare_image(reference.image, target_size=self.target_size)
        features = self._reference_cache.get(prepared.signature)
        if features is None:
            features = self._encode(prepared)
            self._reference_cache = {prepared.signature: features}  # keep one: references change rarely
        mask = torch.from_numpy(resize_mask_nearest(reference.mask, prepared.model_shape))[None]
        generator = torch.Generator().manual_seed(self.seed)
        ref_prompt: VisualPrompt = self.model.encode_visual_prompt(features, mask, generator=generator)
        prev = None if previous is None else previous.logits[None, None]
        grounding, layout = self._with_text(text)
        out = self.model.decode(self.features, spatial=ref_prompt, prev_mask=prev, generator=generator,
                                grounding=grounding, layout=layout, include_object_queries=False)
        pred = out.final["queries_spatial"]
        logits, index, _ = select_by_embedding(pred, ref_prompt.pos_embedding, per_object=True)
        return self._result(logits[0, 0], pred.class_emb[0, index[0, 0]])

    # ------------------------------------------------------------------ everything
    def segment_everything(
        self,
        vocabulary: Sequence[str],
        object_threshold: float = 0.4,
        overlap_threshold: float = 0.8,
        mask_threshold: float = 0.5,
        min_area: int = 0,
        image: np.ndarray | None = None,
        strategy: str = "queries",
        grid: PointGrid | None = None,
    ) -> EverythingResult:
        """All instances of the vocabulary's classes, without prompts.

        ``strategy="points"`` (ours) clicks a grid of points instead (:mod:`.point_grid`, settings
        ``grid``; the thresholds below are then unused, ``min_area`` applies): far better for the
        embedded default model, whose object queries are weak. Its scores are mask stabilities.

        ``strategy="queries"``: official panoptic inference, every class a "thing". The 101 object
        queries are decoded with no prompt; a query counts if its best class is not background
        with probability > ``object_threshold`` (the demo's 0.4 by default; the v1 eval config uses
        0.8); pixels go to the query with the largest ``probability * sigmoid(mask)``, and a query
        keeps its segment if that retains >= ``overlap_threshold`` of its own foreground
        (``sigmoid >= mask_threshold``). Segments under ``min_area`` pixels (at full resolution) are
        dropped and the rest renumbered 1..n in query order. ``image``: set (and encode) it first.
        """
        names = _check_vocabulary(vocabulary)
        _check_everything_thresholds(object_threshold, overlap_threshold, mask_threshold, min_area)
        if image is not None:
            self.set_image(image)
        if self.features is None or self.prepared is None:
            raise RuntimeError("call set_image() (or pass image=) before segment_everything()")
        self.set_vocabulary(names)
        if strategy == "points":
            labels_full, class_ids, scores = segment_by_points(self, names, grid or PointGrid(), min_area)
            return EverythingResult(labels_full, [names[c] for c in class_ids], class_ids, scores)
        if strategy != "queries":
            raise ValueError(f"strategy must be 'queries' or 'points', got {strategy!r}")
        features = self.features
        with torch.no_grad():
            pred = self.model.decode(features).final["queries_object"]
            index, scores, labels = confident_queries(pred.logits[0], object_threshold)
            # Segments are assigned at model resolution, then the id image is resized (nearest) to the
            # plane: the mask logits carry detail only at 1/4 of model resolution, so assigning at full
            # resolution would add cost (n_kept x H x W floats: GBs for large planes), not detail, and
            # nearest resizing of ids keeps segments disjoint by construction.
            masks = _model_resolution(pred.masks[0, index], features)
            panoptic, segments = assign_segments(scores, labels, masks, overlap_threshold, mask_threshold, index)
        labels_full = resize_nearest(panoptic.cpu().numpy(), self.prepared.original_shape)
        labels_full, segments = _drop_small(labels_full, segments, min_area)
        class_ids = [s["category_id"] for s in segments]
        return EverythingResult(labels_full, [names[c] for c in class_ids], class_ids, [s["score"] for s in segments])

    # ------------------------------------------------------------------ results
    def _result(self, logits: torch.Tensor, class_emb: torch.Tensor, box: BoxYX | None = None,
                anchor: np.ndarray | None = None, clicks: Clicks | None = None) -> ObjectResult:
        """``logits [h, w]`` (1/4 model resolution) -> full-resolution result; with a prompt ``box``
        (plane coordinates) and a ``box_margin``, the mask is clipped to the grown box; with
        ``clicks`` (positive and negative (y, x) pixels) it obeys them; with an ``anchor`` (bool
        plane mask of the positive prompt) it keeps the parts that touch it."""
        features, prepared = self.features, self.prepared
        model_res = resize_mask_logits(logits[None, None], features.padded_size, features.image_size)
        full = F.interpolate(model_res, size=prepared.original_shape, mode="bilinear", align_corners=False)[0, 0]
        mask = full > 0
        logits = logits.detach().clone()
        if box is not None and self.box_margin is not None:
            y0, x0, y1, x1 = expand_box(box, self.box_margin, prepared.original_shape)
            inside = torch.zeros_like(mask)
            inside[y0 : y1 + 1, x0 : x1 + 1] = True
            mask &= inside
            # The memory for the next round then covers no more than what the user sees.
            logits = torch.where(self._feature_region(box, logits.shape), logits, logits.clamp(max=CLIPPED_LOGIT))
        mask = mask.cpu().numpy()
        cell = logit_cell_size(features, logits.shape)
        if clicks is not None:
            obeyed = obey_clicks(mask, full.cpu().numpy(), *clicks)
            if obeyed is not mask:
                logits = follow_mask(logits, mask, obeyed, prepared.scale, cell)
                mask = obeyed
        if anchor is not None:  # the memory drops the cut parts too
            mask, logits = restrict_to_prompt(mask, logits, anchor, prepared.scale, cell)
        kept = torch.from_numpy(mask).to(full.device)
        clipped = (full > 0) & ~kept  # cut by the box or the parts: in neither threshold's mask
        score = stability_score(full.masked_fill(clipped, float("-inf")), kept)
        probabilities = vocabulary_probabilities(class_emb, self.model, self.vocabulary)
        name, class_score = best_class(probabilities, self.vocabulary)
        return ObjectResult(mask, logits.cpu(), score, name, class_score, probabilities)

    def _feature_region(self, box: BoxYX, shape: torch.Size) -> torch.Tensor:
        """Bool ``shape`` (1/4 of the padded model size): cells that may touch the grown ``box`` (plane
        coordinates), rounded outward by one cell so bilinear upsampling near its edge is unaffected."""
        s, (height, width) = self.prepared.scale, self.features.padded_size
        y0, x0, y1, x1 = expand_box(box, self.box_margin, self.prepared.original_shape)
        sy, sx = height / shape[0], width / shape[1]
        region = torch.zeros(shape, dtype=torch.bool, device=self.model.device)
        region[max(math.floor(y0 * s / sy) - 1, 0) : math.ceil((y1 + 1) * s / sy) + 1,
               max(math.floor(x0 * s / sx) - 1, 0) : math.ceil((x1 + 1) * s / sx) + 1] = True
        return region



def _model_resolution(logits: torch.Tensor, features: ImageFeatures) -> torch.Tensor:
    """``[n, h, w]`` mask logits (1/4 of the padded size) -> ``[n, H, W]`` at the model's input size
    (bilinear, cropped); n may be 0."""
    if logits.shape[0] == 0:
        return logits.new_zeros((0, *features.image_size))
    return resize_mask_logits(logits[None], features.padded_size, features.image_size)[0]


Clicks = tuple[list[tuple[int, int]], list[tuple[int, int]]]


def _clicks(prompt: ObjectPrompt, shape: tuple[int, int]) -> Clicks | None:
    """The prompt's positive and negative clicks as plane pixels, or ``None`` without points."""
    if not prompt.points:
        return None
    pixel = lambda p: (min(max(int(p.y), 0), shape[0] - 1), min(max(int(p.x), 0), shape[1] - 1))  # noqa: E731
    return [pixel(p) for p in prompt.points if p.positive], [pixel(p) for p in prompt.points if not p.positive]


def _text(prompt: ObjectPrompt) -> str | None:
    """The prompt's text for composition (stripped), or None."""
    return prompt.text.strip() if prompt.text else None


def _visual_passes(
    prompts: list[ObjectPrompt], previous: list[ObjectResult | None]
) -> list[tuple[str | None, list[int]]]:
    """Groups of visual objects that can share a decoder pass: same memory presence (the memory
    prompt is all or nothing per pass) and same text (the text tokens are shared by the pass)."""
    passes: dict[tuple[bool, str | None], list[int]] = {}
    for has_memory in (False, True):
        passes[(has_memory, None)] = []  # visual-only objects first, in their old order
        for i, prompt in enumerate(prompts):
            if prompt.has_visual and (previous[i] is not None) == has_memory:
                passes.setdefault((has_memory, _text(prompt)), []).append(i)
    return [(text, group) for (_, text), group in passes.items() if group]


def _union_box(boxes: Sequence[Box]) -> BoxYX:
    """Bounding box ``(y0, x0, y1, x1)`` of ``boxes``, corners rounded as the filled box is drawn."""
    ys = [round(v) for b in boxes for v in (b.y0, b.y1)]
    xs = [round(v) for b in boxes for v in (b.x0, b.x1)]
    return (min(ys), min(xs), max(ys), max(xs))


def _check_vocabulary(vocabulary: Sequence[str]) -> list[str]:
    if isinstance(vocabulary, str):
        raise ValueError(f"vocabulary must be a list of class names, not one string: use [{vocabulary!r}]")
    names = list(vocabulary) if vocabulary is not None else []
    if not names:
        raise ValueError("segment_everything needs a non-empty vocabulary: a list of class names, e.g. ['nucleus']")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"vocabulary entries must be non-blank strings, got {bad!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"vocabulary names must be unique, repeated: {duplicates!r}")
    return names


def _check_everything_thresholds(
    object_threshold: float, overlap_threshold: float, mask_threshold: float, min_area: int
) -> None:
    for name, value in (("object_threshold", object_threshold), ("overlap_threshold", overlap_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")


def _drop_small(labels: np.ndarray, segments: list[dict], min_area: int) -> tuple[np.ndarray, list[dict]]:
    """Remove segments of fewer than ``min_area`` pixels (and any that vanished in resizing) from the
    int32 id image ``labels [H, W]``; renumber the rest 1..n in their order."""
    areas = np.bincount(labels.ravel(), minlength=len(segments) + 1)
    kept = [s for s in segments if areas[s["id"]] >= max(min_area, 1)]
    new_ids = np.zeros(len(segments) + 1, dtype=np.int32)
    for new_id, segment in enumerate(kept, start=1):
        new_ids[segment["id"]] = new_id
    return new_ids[labels], kept
