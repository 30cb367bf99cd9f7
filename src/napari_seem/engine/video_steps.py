"""The stepping half of :class:`~napari_seem.engine.video.VideoSession`: one propagation pass, frame
by frame, and one step of it (decode, evidence, presence), as a mixin over the session's state.

A step carries the active objects from their last masks to the next frame in one decode per chunk
(see the ``video`` module docstring), builds each object's logits (:mod:`~napari_seem.engine.carry`),
measures its :class:`~napari_seem.engine.presence.PresenceSignals` and asks the session's presence
rule whether the object *misses* the frame. The pass bridges up to ``rule.gap`` misses in a row
(no mask there; the next step starts from the last mask) and ends the object after one more.

The mixin also fits a session to the first objects it is given: the frames' model size
(``scale_to_objects``) and, for objects given as masks, their logit offset (``calibrate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping

import numpy as np
import torch

from napari_seem.model import ImageFeatures
from napari_seem.model.postprocess import select_by_embedding
from napari_seem.prompts import ObjectPrompt

from .appearance import cell_share, unit_features
from .carry import area_offset, calibration_offset, daughters, evidence, exclusive, given_mask_result, only_masks
from .conversion import (
    logit_cell_size,
    logits_to_model_masks,
    logits_to_results,
    resize_mask_nearest,
    restrict_to_prompt,
)
from .image import PreparedImage, target_size_for
from .motion import SHIFT_PENALTY, object_shift, shift_mask
from .predictor import ObjectResult, objects_per_pass
from .presence import PresenceSignals, Track, contrast, signals

@dataclass
class FrameResult:
    """What one propagation step produced on ``frame``: the run's objects that have a mask there
    (``results``, id -> result) and those lost there (``lost``, no mask)."""

    frame: int
    results: dict[int, ObjectResult]
    lost: set[int] = field(default_factory=set)
    divided: dict[int, tuple[int, ...]] = field(default_factory=dict)  # mother -> daughters born here


MOTION_RADIUS = 4  # an object's radius, in blocks of model pixels, when its motion is sought (engine.motion)


@dataclass
class _EncodedFrame:
    prepared: PreparedImage
    features: ImageFeatures
    _unit: torch.Tensor | None = None
    _gray: np.ndarray | None = None
    _coarse_gray: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def gray(self) -> np.ndarray:
        """The prepared plane's gray level averaged over each logit cell: float ``[h, w]`` (once per frame)."""
        if self._gray is None:
            self._gray = gray_cells(self.prepared, self.features)
        return self._gray

    def coarse_gray(self, factor: int) -> np.ndarray:
        """The prepared plane's gray level averaged over ``factor x factor`` blocks of model pixels:
        float ``[h_model // factor, w_model // factor]`` (once per frame and factor)."""
        if factor not in self._coarse_gray:
            gray = self.prepared.rgb.mean(axis=0)
            height, width = gray.shape[0] // factor, gray.shape[1] // factor
            self._coarse_gray[factor] = gray[: height * factor, : width * factor].reshape(
                height, factor, width, factor).mean(axis=(1, 3))
        return self._coarse_gray[factor]

    @property
    def unit(self) -> torch.Tensor:
        """The mask features as unit vectors per cell (computed once per frame)."""
        if self._unit is None:
            self._unit = unit_features(self.features)
        return self._unit


@dataclass
class _Pass:
    """One direction of a propagation: ``step`` +1 (forward) or -1, each object's source frame, and
    the last frame (inclusive)."""

    step: int
    sources: dict[int, int]
    stop: int


class _Stepping:
    """Propagation passes and steps of a :class:`VideoSession` (its state: ``results``, ``lost``,
    ``signals``, the anchors, the frame cache, ``rule``, ``config``)."""
    def _run(self, passes: list[_Pass]) -> Iterator[FrameResult]:
        for p in passes:
            yield from self._run_pass(p)

    def _run_pass(self, p: _Pass) -> Iterator[FrameResult]:
        """One direction. An object enters after its source frame, resumes at frames the user
        prompted (re-anchored there), and after being lost only has its stale results removed.
        An object that *misses* (:meth:`_misses`) gets no mask on that frame; it is carried on from
        its last mask, and lost once it misses more than ``rule.gap`` frames in a row (lost on the
        frame of that last miss; the missed frames before it stay without a mask)."""
        sources = dict(p.sources)  # daughters born in this pass join it (not the other direction's)
        first = min(sources.values()) if p.step > 0 else max(sources.values())
        splitting = self.divisions == "split" and p.step > 0
        if splitting:
            self._forget_daughters(sources)
        anchors: dict[int, int | None] = {}  # carried object -> its anchor frame
        last: dict[int, int] = {}  # carried object -> the frame of its last mask
        misses: dict[int, int] = {}  # carried object -> frames missed in a row since then
        tracks: dict[int, Track] = {}  # carried object -> what the presence rule remembers of it
        stopped: set[int] = set()  # lost (or divided) earlier in this pass
        for t in range(first + p.step, p.stop + p.step, p.step):
            previous = t - p.step
            for o, source in sources.items():
                if source == previous and o not in anchors:
                    anchors[o], last[o], misses[o], tracks[o] = self._anchor_frame(o, source), source, 0, Track()
            started = sorted(o for o, source in sources.items() if (t - source) * p.step > 0)
            kept = [o for o in started if t in self.prompted_frames.get(o, [])]
            for o in kept:
                anchors[o], last[o], misses[o], tracks[o] = t, t, 0, Track()
                stopped.discard(o)
            carried = [o for o in started if o in anchors and o not in kept]
            new, missed = self._advance({o: last[o] for o in carried}, t, anchors, tracks) if carried else ({}, set())
            divided = self._divide(t, new, {o: self.results[last[o]][o].mask for o in new}) if splitting else {}
            for mother, born in divided.items():
                del anchors[mother]
                for d in born:
                    sources[d], anchors[d], last[d], misses[d], tracks[d] = t, t, t, 0, Track()
            lost = set()
            for o in new:
                last[o], misses[o] = t, 0
                if self.births.get(o) != t:  # a daughter born here has no step (no signals) yet
                    tracks[o].keep(self.signals[t][o])
            for o in missed:
                misses[o] += 1
                if misses[o] > self.rule.gap:
                    lost.add(o)
                    del anchors[o]
            stale = [o for o in started if o in stopped or o in divided or (o in missed and o not in lost)]
            stopped |= lost | set(divided)
            self._commit(t, new, lost, stale)
            shown = {o: self.results[t][o] for o in sorted(kept + list(new))}
            yield FrameResult(t, shown, lost, divided)

    def _divide(self, frame: int, new: dict[int, ObjectResult], previous: dict[int, np.ndarray]
                ) -> dict[int, tuple[int, ...]]:
        """``divisions="split"``: each object of ``new`` whose mask split into daughters
        (:func:`~napari_seem.engine.carry.daughters`) is replaced in ``new`` by one new object per
        daughter (its mask kept as given, its anchor on ``frame``). Returns mother -> daughter ids."""
        out: dict[int, tuple[int, ...]] = {}
        for o in sorted(new):
            parts = daughters(new[o].mask, previous[o])
            if not parts:
                continue
            entry = self._frame(frame)
            born = []
            for part in parts:
                d = self._new_id()
                result = replace(given_mask_result(part, entry.features, entry.prepared),
                                 class_name=new[o].class_name, class_score=new[o].class_score)
                self._remember_anchor(frame, d, entry, result)
                self.parents[d], self.births[d] = o, frame
                new[d] = result
                born.append(d)
            del new[o]
            out[o] = tuple(born)
        return out

    def _new_id(self) -> int:
        """An object id above every id this session knows (and at least ``first_new_id``)."""
        known = set(self.prompted_frames) | set(self.parents) | {o for r in self.results.values() for o in r}
        return max([self.first_new_id - 1, *known]) + 1

    def _forget_daughters(self, sources: dict[int, int]) -> None:
        """Before a forward pass re-propagates an object, the daughters it divided into after its
        source frame (and theirs), unless the user prompted them, are removed with all their results."""
        children: dict[int, list[int]] = {}
        for d, mother in self.parents.items():
            children.setdefault(mother, []).append(d)
        stack = [d for o, source in sources.items() for d in children.get(o, []) if self.births[d] > source]
        while stack:
            d = stack.pop()
            stack.extend(children.get(d, []))
            if self.prompted_frames.get(d):
                continue
            for frame in sorted(set(self.results) | set(self.lost)):
                self._set(frame, d, None, lost=False)
            del self.parents[d], self.births[d]
            self._anchor_embeddings.pop(d, None)
            self._appearances.pop(d, None)
            self._contrasts.pop(d, None)
            self._offsets.pop(d, None)
            self._anchor_cells.pop(d, None)

    def _anchor_frame(self, object_id: int, source: int) -> int | None:
        """The source if the user prompted it there, else the object's most recently prompted frame."""
        prompted = self.prompted_frames.get(object_id, [])
        if source in prompted:
            return source
        return prompted[-1] if prompted else None

    def _commit(self, frame: int, new: dict[int, ObjectResult], lost: set[int], stale: list[int]) -> None:
        """All of one frame's changes at once (nothing is written before the frame is computed)."""
        for o in stale:
            self._set(frame, o, None, lost=False)
        for o in lost:
            self._set(frame, o, None, lost=True)
        for o, result in new.items():
            self._set(frame, o, result, lost=False)

    def _advance(
        self, sources: dict[int, int], frame: int, anchors: dict[int, int | None], tracks: dict[int, Track]
    ) -> tuple[dict[int, ObjectResult], set[int]]:
        """One step to ``frame`` for the objects of ``sources`` (object -> the frame of its last
        mask, the one before ``frame`` unless it missed since): their new results and the ids that
        miss (:meth:`_misses`) there."""
        before = {o: self.results[src][o] for o, src in sources.items()}
        missed = {o for o in sources if not before[o].mask.any()}  # nothing to carry
        carried = [o for o in sources if o not in missed]
        new: dict[int, ObjectResult] = {}
        if not carried:
            return new, missed
        target = self._frame(frame)
        logits_of: dict[int, torch.Tensor] = {}
        looks: dict[int, torch.Tensor | None] = {}
        class_embs: dict[int, torch.Tensor] = {}
        measure_contrast = self.detailed_signals or getattr(self.rule, "reads_contrast", True)
        with torch.no_grad():
            groups = [[o for o in carried if sources[o] == src] for src in sorted({sources[o] for o in carried})]
            for chunk in (c for group in groups for c in _chunks(group, self.objects_per_pass)):
                source = self._frame(sources[chunk[0]])
                logits = torch.stack([before[o].logits for o in chunk])  # [N, h, w]
                masks = logits_to_model_masks(logits, source.features)  # [N, H_img, W_img]
                anchor = [self._anchor_embedding(o, anchors[o]) for o in chunk]
                raw, class_emb = self._decode_raw(source, target, masks, logits[None], anchor)
                for n, o in enumerate(chunk):
                    app = self._appearances.get(o, {}).get(anchors[o]) if anchors[o] is not None else None
                    logits_of[o], looks[o] = evidence(self.config, raw[n], self._moved(before[o].mask, source, target),
                                                      app, target.unit,
                                                      target.features, target.prepared)
                    logits_of[o] = self._kept_area(o, anchors[o], logits_of[o] + self._offset(o, anchors[o]))
                    class_embs[o] = class_emb[n : n + 1]
            if self.config.exclusive and len(logits_of) > 1:
                logits_of = exclusive(logits_of)
            for o in carried:
                result = logits_to_results(logits_of[o][None], class_embs[o], target.features, target.prepared,
                                           self.model, self.predictor.vocabulary)[0]
                result = self._restrict(result, before[o], target)
                self.signals.setdefault(frame, {})[o] = signals(
                    result.logits, result.mask, before[o].mask, target.features.mask_features,
                    self._anchor_feature(o, anchors[o]), looks[o], self._anchor_area(o, anchors[o]),
                    self._contrast_ratio(o, anchors[o], target, result.logits) if measure_contrast else float("nan"),
                    self.detailed_signals)
                if self._misses(result, before[o], self.signals[frame][o], tracks[o]):
                    missed.add(o)
                else:
                    new[o] = result
        return new, missed

    # ------------------------------------------------------------------ fitting to the first objects
    def _scale_to(self, frame: int, prompts: Mapping[int, ObjectPrompt]) -> None:
        """``scale_to_objects``: the first objects added, before any frame was read, set the frames'
        model size so that their median radius is the one the model was trained on
        (:func:`~napari_seem.engine.image.target_size_for`). Objects given as masks tell their size;
        otherwise (clicks, boxes, scribbles) the model answers them once at the default size and its
        answers tell it, then the frame is prepared again. A 27-pixel cell of a 512-pixel frame is
        then seen at 224 pixels, an 8-pixel nucleus of a 122-pixel slice at 180."""
        if not self.scale_to_objects or self.frame_reads:
            return
        masks = [m for m in (only_masks(p) for p in prompts.values()) if m is not None]
        if not masks:
            asked = [p for p in prompts.values() if not _names_a_frame(p)]
            if not asked:
                return
            entry = self._frame(frame)
            with torch.no_grad(), self._predictor_on(entry):
                masks = [a.mask for a in self.predictor.predict(asked) if a.mask.any()]
            if not masks:
                return
        radius = float(np.median([np.sqrt(np.count_nonzero(m) / np.pi) for m in masks]))
        size = target_size_for(self.plane_shape, radius, self.predictor.target_size)
        if size != self.target_size:
            self.target_size = size
            self.clear_cache()

    def _calibrate(self, frame: int, object_id: int, entry: _EncodedFrame, given: ObjectResult) -> None:
        """``PropagationConfig.calibrate``: the logit offset of an object given as a mask on ``frame``,
        from a step of the object onto its own frame (:func:`~napari_seem.engine.carry.calibration_offset`)."""
        masks = logits_to_model_masks(given.logits[None], entry.features)
        anchor = [self._anchor_embedding(object_id, frame)]
        raw, _ = self._decode_raw(entry, entry, masks, given.logits[None, None], anchor)
        app = self._appearances.get(object_id, {}).get(frame)
        logits, _ = evidence(self.config, raw[0], given.mask, app, entry.unit, entry.features, entry.prepared)
        target = cell_share(given.mask, entry.features, entry.prepared) > 0.5
        offset = calibration_offset(logits.cpu(), target, self.config.max_offset)
        self._offsets.setdefault(object_id, {})[frame] = offset

    def _anchor_embedding(self, object_id: int, frame: int | None) -> torch.Tensor | None:
        if frame is None or self.anchor_weight == 0:
            return None
        return self._anchor_embeddings.get(object_id, {}).get(frame, (None, None))[0]

    def _contrast(self, entry: _EncodedFrame, logits: torch.Tensor) -> float:
        """:func:`~napari_seem.engine.presence.contrast` of an answer (its cells with logit > 0) on an
        encoded frame, at the logit grid (cheap: a few hundred cells per object)."""
        return contrast(entry.gray, (logits > 0).numpy())

    def _contrast_ratio(self, object_id: int, anchor: int | None, entry: _EncodedFrame, logits: torch.Tensor) -> float:
        first = self._contrasts.get(object_id, {}).get(anchor) if anchor is not None else None
        if not first:
            return 1.0
        return self._contrast(entry, logits) / first

    def _offset(self, object_id: int, anchor: int | None) -> float:
        """The object's logit offset from its anchor frame (``PropagationConfig.calibrate``; else 0)."""
        return self._offsets.get(object_id, {}).get(anchor, 0.0) if anchor is not None else 0.0

    def _moved(self, mask: np.ndarray, source: _EncodedFrame, target: _EncodedFrame) -> np.ndarray:
        """``PropagationConfig.follow_motion``: the plane ``mask`` of ``source`` moved as its patch of the
        image moved onto ``target`` (:func:`~napari_seem.engine.motion.object_shift`, by at most
        ``follow_motion`` object radii). The search runs on blocks of model pixels small enough that
        the object spans about ``MOTION_RADIUS`` of them (refined to a fraction of a block). ``mask``
        itself when off or when the move empties it."""
        if self.config.follow_motion <= 0:
            return mask
        prepared = source.prepared
        radius = np.sqrt(np.count_nonzero(mask) / np.pi) * prepared.scale  # model pixels
        factor = max(1, int(radius // MOTION_RADIUS))
        gray = source.coarse_gray(factor)
        small = resize_mask_nearest(mask, gray.shape)
        reach = max(1, int(round(self.config.follow_motion * radius / factor)))
        dy, dx = object_shift(gray, target.coarse_gray(factor), small, reach, penalty=SHIFT_PENALTY * factor**2)
        per_pixel = factor / prepared.scale  # plane pixels per block
        moved = shift_mask(mask, int(round(dy * per_pixel)), int(round(dx * per_pixel)))
        return moved if moved.any() else mask

    def _kept_area(self, object_id: int, anchor: int | None, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` raised so that a time-lapse object keeps ``config.keep_area`` of its anchor's area
        (:func:`~napari_seem.engine.carry.area_offset`); unchanged in z-stacks or without an anchor."""
        cells = self._anchor_cells.get(object_id, {}).get(anchor) if anchor is not None else None
        if self.stack_kind != "time" or not self.config.keep_area or not cells:
            return logits
        return logits + area_offset(logits, self.config.keep_area * cells, self.config.max_offset)

    def _anchor_area(self, object_id: int, frame: int | None) -> int | None:
        result = self.results.get(frame, {}).get(object_id) if frame is not None else None
        return None if result is None else int(np.count_nonzero(result.mask))

    def _anchor_feature(self, object_id: int, frame: int | None) -> torch.Tensor | None:
        if frame is None:
            return None
        return self._anchor_embeddings.get(object_id, {}).get(frame, (None, None))[1]

    def _restrict(self, result: ObjectResult, before: ObjectResult, frame: _EncodedFrame) -> ObjectResult:
        """``result`` cut to its parts that overlap the object's previous mask, when the predictor keeps
        connected parts (a cell is connected and moves little between frames; what spilled onto a
        separate neighbour is dropped, from the memory too). The score stays the whole mask's."""
        if not self.predictor.keep_connected:
            return result
        mask, logits = restrict_to_prompt(result.mask, result.logits, before.mask, frame.prepared.scale,
                                          logit_cell_size(frame.features, result.logits.shape))
        return replace(result, mask=mask, logits=logits)

    def _misses(self, new: ObjectResult, before: ObjectResult, evidence: PresenceSignals, track: Track) -> bool:
        """Whether the object is absent from its new result's frame: an empty mask, an overlap with its
        previous mask below ``lost_iou``, a score below ``lost_score``, or the presence rule."""
        if not new.mask.any():
            return True
        if evidence.iou < self.lost_iou or new.score < self.lost_score:  # evidence.iou: new vs before
            return True
        return self.rule.misses(evidence, track)

    @property
    def objects_per_pass(self) -> int:
        """Objects decoded together: v1 splits its memory tokens among them, so never more than those."""
        return objects_per_pass(self.model)

    def _decode_raw(
        self,
        source: _EncodedFrame,
        target: _EncodedFrame,
        masks: torch.Tensor,
        prev_logits: torch.Tensor | None,
        anchors: list[torch.Tensor | None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Regions ``masks [N, H_img, W_img]`` of ``source`` as reference prompts on ``target``, with
        ``prev_logits [1, N, h, w]`` as memory (v1 layout: per-object prompts): logits ``[N, h, w]``
        and class embeddings ``[N, C]`` of each object's chosen query."""
        generator = torch.Generator().manual_seed(self.predictor.seed)
        prompt = self.model.encode_visual_prompt(source.features, masks, generator=generator)
        # The generator draws the spatial queries; memory tokens stay split evenly among the objects.
        out = self.model.decode(target.features, spatial=prompt, prev_mask=prev_logits, generator=generator,
                                include_object_queries=False)
        pred = out.final["queries_spatial"]
        embedding = self._blend(prompt.pos_embedding, anchors)
        logits, index, _ = select_by_embedding(pred, embedding, per_object=True)
        return logits[0], pred.class_emb[0, index[0]]

    def _decode_from(
        self,
        source: _EncodedFrame,
        target: _EncodedFrame,
        masks: torch.Tensor,
        prev_logits: torch.Tensor | None,
        anchors: list[torch.Tensor | None],
    ) -> list[ObjectResult]:
        """:meth:`_decode_raw` as one result per region."""
        logits, class_emb = self._decode_raw(source, target, masks, prev_logits, anchors)
        return logits_to_results(logits, class_emb, target.features, target.prepared, self.model,
                                 self.predictor.vocabulary)

    def _blend(self, embedding: torch.Tensor, anchors: list[torch.Tensor | None]) -> torch.Tensor:
        """``[1, N, C]`` selection embeddings: the previous frame's, pulled towards each anchor."""
        w = self.anchor_weight
        if w == 0 or all(a is None for a in anchors):
            return embedding
        blended = embedding.clone()
        for n, anchor in enumerate(anchors):
            if anchor is not None:
                blended[0, n] = (1 - w) * embedding[0, n] + w * anchor
        return blended


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def gray_cells(prepared: PreparedImage, features: ImageFeatures) -> np.ndarray:
    """The mean gray level (``prepared.rgb`` averaged over channels) of each logit cell ``[h, w]``."""
    import torch.nn.functional as F

    gray = torch.zeros(features.padded_size)
    height, width = prepared.model_shape
    gray[:height, :width] = torch.from_numpy(prepared.rgb.mean(axis=0))
    return F.adaptive_avg_pool2d(gray[None, None], tuple(features.mask_features.shape[-2:]))[0, 0].numpy()


def _names_a_frame(prompt: ObjectPrompt) -> bool:
    """A reference-only prompt whose reference is a frame of this stack (the predictor cannot do that)."""
    return not prompt.has_visual and prompt.reference is not None and _is_index(prompt.reference.image)


def _is_index(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
