"""``SeemPredictor``: encode an image once, then answer prompts for one or many objects.

    predictor = SeemPredictor(model)
    predictor.set_image(plane)                      # encodes once (cached by content signature)
    results = predictor.predict([ObjectPrompt(points=[Point(120, 80)]),
                                 ObjectPrompt(text="nucleus")])
    refined = predictor.predict([ObjectPrompt(points=[Point(120, 80), Point(130, 95, positive=False)])],
                                previous=[results[0]])   # carries SEEM's memory prompt

Visual prompts (points, boxes, scribbles, masks) of several objects are decoded together in one
pass (v1 keeps objects apart); a text-only object is grounded; a reference region is encoded on its
own image and applied here ("find objects like this one"). Results come back at the plane's full
resolution, with the low-resolution logits that the next round uses as memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model import ImageFeatures, SeemModel
from napari_seem.model.postprocess import grounding_similarity, resize_mask_logits, select_by_embedding
from napari_seem.model.visual_sampler import VisualPrompt
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError, ReferenceRegion, Scribble, rasterize, validate

from .image import DEFAULT_TARGET_SIZE, PreparedImage, prepare_image

MAX_OBJECTS_PER_PASS = 32  # v1's 32 memory tokens are split among the objects of one pass


@dataclass
class ObjectResult:
    """One object's answer. ``mask``: bool ``[H, W]`` at the plane's resolution. ``logits``:
    ``[h, w]`` mask logits at the model's 1/4 feature resolution (the memory for the next round).
    ``score``: mean foreground probability inside the mask (0..1). ``class_name``/``class_score``: the
    best vocabulary match (softmax probability) when a vocabulary is set."""

    mask: np.ndarray
    logits: torch.Tensor
    score: float
    class_name: str | None = None
    class_score: float | None = None


class SeemPredictor:
    def __init__(self, model: SeemModel, target_size: int = DEFAULT_TARGET_SIZE, seed: int = 0) -> None:
        self.model = model.eval()
        self.target_size = target_size
        self.seed = seed
        self.prepared: PreparedImage | None = None
        self.features: ImageFeatures | None = None
        self.vocabulary: list[str] | None = None
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
        """Class names for labelling results (computed once; ``None`` clears)."""
        if not names:
            self.vocabulary = None
            self.model.set_vocabulary_embeddings(None)
            return
        with torch.no_grad():
            self.model.set_vocabulary(list(names))
        self.vocabulary = list(names)

    def _encode(self, prepared: PreparedImage) -> ImageFeatures:
        with torch.no_grad():
            return self.model.encode(torch.from_numpy(prepared.rgb)[None])

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
        visual = [i for i, p in enumerate(prompts) if p.has_visual]
        with torch.no_grad():
            for has_memory in (False, True):
                group = [i for i in visual if (previous[i] is not None) == has_memory]
                for start in range(0, len(group), MAX_OBJECTS_PER_PASS):
                    chunk = group[start : start + MAX_OBJECTS_PER_PASS]
                    for i, result in zip(chunk, self._predict_visual([prompts[i] for i in chunk],
                                                                     [previous[i] for i in chunk])):
                        results[i] = result
            for i, prompt in enumerate(prompts):
                if prompt.has_visual:
                    continue
                if prompt.reference is not None:
                    results[i] = self._predict_reference(prompt.reference, previous[i])
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
            masks=[MaskPrompt(_resize_mask(m.mask, shape), m.positive) for m in prompt.masks],
        )

    def _predict_visual(self, prompts: list[ObjectPrompt], previous: list[ObjectResult | None]) -> list[ObjectResult]:
        shape = self.prepared.model_shape
        rasters = [rasterize(self._model_prompt(p), shape) for p in prompts]
        pos = torch.from_numpy(np.stack([r[0] for r in rasters]))
        neg = torch.from_numpy(np.stack([r[1] for r in rasters]))
        generator = torch.Generator().manual_seed(self.seed)
        spatial = self.model.encode_visual_prompt(self.features, pos, neg, generator=generator)
        prev = None
        if previous[0] is not None:
            prev = torch.stack([r.logits for r in previous])[None]
        out = self.model.decode(self.features, spatial=spatial, prev_mask=prev, generator=generator,
                                include_object_queries=False)
        pred = out.final["queries_spatial"]
        logits, index, _ = select_by_embedding(pred, spatial.pos_embedding, per_object=self.model.layout.name == "v1")
        return [self._result(logits[0, n], pred.class_emb[0, index[0, n]]) for n in range(len(prompts))]

    def _predict_text(self, text: str) -> ObjectResult:
        grounding, sentence = self.model.grounding_prompt([text], self.features)
        out = self.model.decode(self.features, grounding=grounding, include_object_queries=False)
        pred = out.final["queries_grounding"]
        scale = self.model.predictor.lang_encoder.logit_scale
        best = int(grounding_similarity(pred.class_emb[0], sentence, scale)[:, 0].argmax())
        return self._result(pred.masks[0, best], pred.class_emb[0, best])

    def _predict_reference(self, reference: ReferenceRegion, previous: ObjectResult | None) -> ObjectResult:
        """Encode the reference region on its own image, then apply its tokens here (the official
        v1 'refimg' path, completed: the per-object token indices travel with the tokens)."""
        if isinstance(reference.image, (int, np.integer)):
            raise PromptError("a frame-index reference needs a video session; pass the reference image itself")
        prepared = prepare_image(reference.image, target_size=self.target_size)
        features = self._reference_cache.get(prepared.signature)
        if features is None:
            features = self._encode(prepared)
            self._reference_cache = {prepared.signature: features}  # keep one: references change rarely
        mask = torch.from_numpy(_resize_mask(reference.mask, prepared.model_shape))[None]
        generator = torch.Generator().manual_seed(self.seed)
        ref_prompt: VisualPrompt = self.model.encode_visual_prompt(features, mask, generator=generator)
        prev = None if previous is None else previous.logits[None, None]
        out = self.model.decode(self.features, spatial=ref_prompt, prev_mask=prev, generator=generator,
                                include_object_queries=False)
        pred = out.final["queries_spatial"]
        logits, index, _ = select_by_embedding(pred, ref_prompt.pos_embedding, per_object=True)
        return self._result(logits[0, 0], pred.class_emb[0, index[0, 0]])

    # ------------------------------------------------------------------ results
    def _result(self, logits: torch.Tensor, class_emb: torch.Tensor) -> ObjectResult:
        features, prepared = self.features, self.prepared
        model_res = resize_mask_logits(logits[None, None], features.padded_size, features.image_size)
        full = F.interpolate(model_res, size=prepared.original_shape, mode="bilinear", align_corners=False)[0, 0]
        mask = (full > 0).numpy()
        prob = full.sigmoid()
        score = float(prob[full > 0].mean()) if mask.any() else 0.0
        name, class_score = self._classify(class_emb)
        return ObjectResult(mask, logits.detach().clone(), score, name, class_score)

    def _classify(self, class_emb: torch.Tensor) -> tuple[str | None, float | None]:
        if self.vocabulary is None:
            return None, None
        logits = self.model.predictor.class_logits(class_emb[None, None])[0, 0]
        probs = logits.softmax(-1)
        best = int(probs.argmax())
        name = self.vocabulary[best] if best < len(self.vocabulary) else "background"
        return name, float(probs[best])


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask; keeps at least one pixel of a non-empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask
    rows = np.minimum((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0], mask.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1], mask.shape[1] - 1).astype(int)
    out = mask[rows][:, cols]
    if mask.any() and not out.any():
        ys, xs = np.nonzero(mask)
        out[int(ys.mean() * shape[0] / mask.shape[0]), int(xs.mean() * shape[1] / mask.shape[1])] = True
    return out
