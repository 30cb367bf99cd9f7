"""``VideoSession``: segment objects on some frames of a stack and carry them through the others.

    session = VideoSession(predictor, frames)               # (T, H, W) or (T, H, W, C), read lazily
    session.add_prompts(0, 1, ObjectPrompt(points=[Point(120, 80)]))
    session.add_objects(0, {2: ObjectPrompt(masks=[MaskPrompt(cell)]), 3: ObjectPrompt(text="nucleus")})
    for frame in session.propagate("forward"):              # one FrameResult per computed frame
        show(frame.frame, frame.results, frame.lost)        # a GUI may stop here: gen.close()
    session.results[12][1].mask                             # bool [H, W] of object 1 on frame 12

**Time series and z-stacks alike.** The first axis of ``frames`` is the propagation axis: time for a
time-lapse, z for a volume. For a z-stack, annotate a middle slice and propagate ``"both"``: the
objects are carried up to the last slice, then down to the first, each slice from its neighbour.

**Frames** are any array-like with ``shape``/``len()`` and ``frames[t]`` (numpy, ``np.memmap``,
dask, zarr). A frame is read and encoded only when needed; at most ``max_cached_frames`` encoded
frames are kept (least recently used first out), so a stack much longer than memory allows streams
through.

**One step** carries all active objects from frame ``t-1`` to ``t`` in one decode (chunks of at
most ``MAX_OBJECTS_PER_PASS`` objects, and never more objects than the model has memory tokens).
Each object's prompt on frame ``t`` is built from frame ``t-1`` with SEEM's own mechanisms:

* the memory prompt: its mask logits on ``t-1`` (``prev_mask``, as in a refinement round);
* a reference region: point tokens and the mean embedding sampled from frame ``t-1``'s features
  inside its mask on ``t-1`` (the v1 reference-image path), decoded against frame ``t``.

Each object's answer is the best of its spatial queries by ``mask_emb . e``, where ``e`` is the
``t-1`` mean embedding, optionally blended with the embedding of the object on its user-prompted
(anchor) frame: ``e = (1 - anchor_weight) * e_prev + anchor_weight * e_anchor``, against drift.

**Lost objects.** An object whose new mask is empty, overlaps its previous mask with IoU below
``lost_iou``, or scores below ``lost_score`` (``ObjectResult.score``, the mask's stability under a
change of threshold: faint, uncertain blobs score low), is *lost* on that frame: it gets no mask there (SEEM
always returns some mask; this keeps it from inventing one), it is listed in ``FrameResult.lost``,
and it is carried no further in that direction (its stale results from earlier runs further along
are removed) unless a frame further along was prompted by the user, where it resumes.

**Corrections.** ``add_prompts`` on frame ``k`` replaces that object's result on ``k`` (with its
existing result there as SEEM's memory, i.e. a refinement round). Propagating afterwards starts
from ``k`` (the object's most recently prompted frame): frames after ``k`` are overwritten (forward),
frames before ``k`` are kept. Frames the user prompted are never overwritten by propagation; the
object continues from the user's result there.

**Cancelling.** ``propagate`` is a generator: results of a frame are stored in ``session.results``
in one go just before that frame is yielded, so closing the generator between frames (or breaking
out of the loop) leaves every completed frame and nothing half-written.

**Determinism.** Every decode draws its random choices (sampled prompt points, the v1 spatial
queries) from a generator seeded with the predictor's seed; memory tokens are split evenly among
the objects of a decode. The same inputs give the same outputs.

Not thread-safe: drive one session from one thread at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from napari_seem.model import ImageFeatures
from napari_seem.model.postprocess import select_by_embedding
from napari_seem.prompts import ObjectPrompt, PromptError, ReferenceRegion, validate

from .conversion import (
    CLIPPED_LOGIT,
    logit_cell_size,
    logits_to_model_masks,
    logits_to_results,
    mask_iou,
    resize_mask_nearest,
    restrict_to_prompt,
)
from .feature_cache import FeatureCache, encode_prepared
from .heap import release_free_memory
from .image import PreparedImage, percentile_limits, prepare_image, select_channels
from .predictor import ObjectResult, SeemPredictor, objects_per_pass
from .appearance import Appearance, appearance, cell_share, unit_features
from .carry import PropagationConfig, evidence, exclusive, given_mask_result, only_masks
from .presence import RULES, STACK_KINDS, PresenceRule, PresenceSignals, Track, contrast, mean_feature, signals

DIRECTIONS = ("forward", "backward", "both")


@dataclass
class FrameResult:
    """What one propagation step produced on ``frame``: the run's objects that have a mask there
    (``results``, id -> result) and those lost there (``lost``, no mask)."""

    frame: int
    results: dict[int, ObjectResult]
    lost: set[int] = field(default_factory=set)


@dataclass
class _EncodedFrame:
    prepared: PreparedImage
    features: ImageFeatures
    _unit: torch.Tensor | None = None

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


class VideoSession:
    """Per-stack state for propagating objects through frames (see the module docstring).

    ``frames``: ``(T, H, W)`` or ``(T, H, W, C)`` array-like. ``channel_axis``: the channel axis *of
    ``frames``* (not 0; default: a 4D stack's last axis) and ``channels`` the channel choice, as for
    :func:`prepare_image`. ``cache``: an on-disk :class:`FeatureCache` for the frames' encodings
    (default: the predictor's, ``predictor.cache``). State, readable at any time:

    * ``results[frame][object_id]``: :class:`ObjectResult` (full-resolution mask, logits, score);
    * ``lost[frame]``: ids of objects lost on that frame;
    * ``prompted_frames[object_id]``: frames the user prompted it on, least recently prompted first.
    """

    def __init__(
        self,
        predictor: SeemPredictor,
        frames,
        channel_axis: int | None = None,
        channels: Sequence[int] | int | None = None,
        max_cached_frames: int = 8,
        lost_iou: float = 0.1,
        lost_score: float = 0.3,
        anchor_weight: float = 0.0,
        cache: FeatureCache | None = None,
        given_masks: bool = True,
        stack_kind: str = "time",
        config: "PropagationConfig | None" = None,
        stretch: str = "plane",
        rule: PresenceRule | None = None,
    ) -> None:
        if max_cached_frames < 2:
            raise ValueError(f"max_cached_frames must be at least 2 (a step needs two frames), got {max_cached_frames}")
        if not 0.0 <= anchor_weight <= 1.0:
            raise ValueError(f"anchor_weight must be in [0, 1], got {anchor_weight}")
        self.predictor = predictor
        self.feature_cache = cache if cache is not None else getattr(predictor, "cache", None)
        self.frames = frames
        self.num_frames, self.plane_shape, self._plane_channel_axis = _stack_geometry(frames, channel_axis)
        self.channels = channels
        self.max_cached_frames = max_cached_frames
        self.lost_iou = lost_iou
        self.lost_score = lost_score
        self.anchor_weight = anchor_weight
        self.results: dict[int, dict[int, ObjectResult]] = {}
        self.lost: dict[int, set[int]] = {}
        self.prompted_frames: dict[int, list[int]] = {}
        self._anchor_embeddings: dict[int, dict[int, tuple[torch.Tensor | None, torch.Tensor | None]]] = {}
        self.signals: dict[int, dict[int, PresenceSignals]] = {}  # frame -> object -> its last decode's signals
        self.given_masks = given_masks
        self.config = config if config is not None else PropagationConfig()
        self._appearances: dict[int, dict[int, Appearance | None]] = {}
        if stretch not in ("plane", "stack"):
            raise ValueError(f"stretch must be 'plane' or 'stack', got {stretch!r}")
        self.stretch = stretch
        if stack_kind not in STACK_KINDS:
            raise ValueError(f"stack_kind must be one of {STACK_KINDS}, got {stack_kind!r}")
        self.stack_kind = stack_kind
        self.rule = rule if rule is not None else RULES[stack_kind]
        self._limits = None  # the stack's stretch limits (stretch="stack"), computed on first use
        self._contrasts: dict[int, dict[int, float]] = {}  # object -> anchor frame -> its contrast there
        self._cache: OrderedDict[int, _EncodedFrame] = OrderedDict()
        self.frame_reads = 0  # frames read from ``frames`` (each followed by one encode or disk-cache load)

    # ------------------------------------------------------------------ frames and features
    def __len__(self) -> int:
        return self.num_frames

    @property
    def model(self):
        return self.predictor.model

    @property
    def cached_frames(self) -> list[int]:
        """Frames whose features are cached, least recently used first."""
        return list(self._cache)

    @property
    def objects(self) -> list[int]:
        """Ids of all objects with a prompt or a result."""
        ids = set(self.prompted_frames)
        for per_frame in self.results.values():
            ids.update(per_frame)
        return sorted(ids)

    def prefetch(self, frame: int) -> None:
        """Read and encode ``frame`` now (e.g. the next frames while the user looks at this one)."""
        self._frame(self._check_frame(frame))

    def clear_cache(self) -> None:
        """Drop all cached frame features (the results stay)."""
        self._cache.clear()

    def _frame(self, frame: int) -> _EncodedFrame:
        """Frame ``frame`` prepared and encoded, from the LRU cache or read now."""
        entry = self._cache.get(frame)
        if entry is not None:
            self._cache.move_to_end(frame)
            return entry
        plane = np.asarray(self.frames[frame])  # dask/zarr/memmap: reads this frame only
        self.frame_reads += 1
        prepared = prepare_image(plane, self._plane_channel_axis, self.channels, self.predictor.target_size,
                                 limits=self._stack_limits())
        if prepared.original_shape != self.plane_shape:
            raise ValueError(f"frame {frame} has plane shape {prepared.original_shape}, expected {self.plane_shape}")
        # Make room first and hand what earlier frames freed back to the system, so that the encode
        # below reuses it instead of growing the process (resident memory would creep up per frame).
        while len(self._cache) >= self.max_cached_frames:
            self._cache.popitem(last=False)
        release_free_memory()
        if self.feature_cache is not None:
            features = _prompt_half(self.feature_cache.get_or_encode(self.model, prepared))
        else:
            features = _prompt_half(encode_prepared(self.model, prepared))
        entry = self._cache[frame] = _EncodedFrame(prepared, features)
        return entry

    def _stack_limits(self):
        """``None`` (each plane its own percentile stretch), or with ``stretch="stack"`` one stretch
        for the whole stack: the percentiles of up to 16 evenly spaced frames (a nucleus that fades
        towards its end in z then looks faint to the model, as it is)."""
        if self.stretch != "stack":
            return None
        if self._limits is None:
            picks = np.unique(np.linspace(0, self.num_frames - 1, min(self.num_frames, 16)).round().astype(int))
            sample = np.stack([select_channels(np.asarray(self.frames[t]), self._plane_channel_axis, self.channels)
                               for t in picks])
            self._limits = percentile_limits(sample.reshape(-1, *sample.shape[2:]))  # (n*H, W[, C])
        return self._limits

    # ------------------------------------------------------------------ prompts
    def add_prompts(
        self, frame: int, object_id: int, prompt: ObjectPrompt, previous: ObjectResult | None = None
    ) -> ObjectResult:
        """Segment object ``object_id`` on ``frame`` from ``prompt`` now, and store the result in place
        of the object's result on that frame. ``previous`` (default: that stored result, if any) is
        the memory prompt of this refinement round. A ``ReferenceRegion`` may name a frame index."""
        memory = None if previous is None else {object_id: previous}
        return self.add_objects(frame, {object_id: prompt}, memory)[object_id]

    def add_objects(
        self,
        frame: int,
        prompts: Mapping[int, ObjectPrompt],
        previous: Mapping[int, ObjectResult] | None = None,
    ) -> dict[int, ObjectResult]:
        """:meth:`add_prompts` for several objects of one frame at once: their visual prompts share
        one predictor call (one decode per group of objects, as in ``SeemPredictor.predict``).
        Nothing is stored unless every object succeeds."""
        frame = self._check_frame(frame)
        if not isinstance(prompts, Mapping) or not prompts:
            raise ValueError("prompts must be a non-empty mapping {object_id: ObjectPrompt}")
        ids = [_check_object_id(o) for o in prompts]
        for object_id, prompt in zip(ids, prompts.values()):
            self._check_prompt(frame, object_id, prompt)
        prompts = dict(zip(ids, prompts.values()))
        stored, given = self.results.get(frame, {}), dict(previous or {})
        memory = {o: given.get(o, stored.get(o)) for o in ids}
        entry = self._frame(frame)
        with torch.no_grad():
            results = {o: self._predict_frame_reference(frame, prompts[o].reference, memory[o])
                       for o in ids if _names_a_frame(prompts[o])}
            if self.given_masks:
                results.update({o: given_mask_result(only_masks(prompts[o]), entry.features, entry.prepared)
                                for o in ids if only_masks(prompts[o]) is not None})
            rest = [o for o in ids if o not in results]
            if rest:
                with self._predictor_on(entry):
                    answers = self.predictor.predict([prompts[o] for o in rest], previous=[memory[o] for o in rest])
                results.update(zip(rest, answers))
            anchors = {o: (self._embedding(entry, results[o]), mean_feature(entry.features.mask_features,
                                                                             results[o].logits)) for o in ids}
            for o in ids:
                share = cell_share(results[o].mask, entry.features, entry.prepared)
                self._appearances.setdefault(o, {})[frame] = appearance(entry.unit, share, self.config.ring)
                self._contrasts.setdefault(o, {})[frame] = self._contrast(entry, results[o].mask)
        for o in ids:
            self._store_prompted(frame, o, results[o], anchors[o])
        return {o: results[o] for o in ids}

    def _check_prompt(self, frame: int, object_id: int, prompt) -> None:
        if not isinstance(prompt, ObjectPrompt):
            raise TypeError(f"prompt must be an ObjectPrompt, got {type(prompt).__name__}")
        try:
            validate(prompt, self.plane_shape)
        except PromptError as err:
            raise PromptError(f"frame {frame}, object {object_id}: {err}") from None

    def remove(self, object_id: int, frame: int | None = None) -> None:
        """Forget object ``object_id`` on ``frame`` (its result, prompt and lost flag), or everywhere."""
        frames = range(self.num_frames) if frame is None else [self._check_frame(frame)]
        for t in frames:
            self._set(t, object_id, None, lost=False)
            if t in self.prompted_frames.get(object_id, []):
                self.prompted_frames[object_id].remove(t)
                self._anchor_embeddings[object_id].pop(t, None)
        if not self.prompted_frames.get(object_id, True):
            del self.prompted_frames[object_id]

    def labels(self, frame: int, dtype=np.uint32) -> np.ndarray:
        """Label image ``[H, W]`` of ``frame`` (0 = background; where objects overlap the higher id wins)."""
        frame = self._check_frame(frame)
        per_frame = self.results.get(frame, {})
        if per_frame and max(per_frame) > np.iinfo(dtype).max:
            raise ValueError(f"object id {max(per_frame)} does not fit in {np.dtype(dtype).name}")
        out = np.zeros(self.plane_shape, dtype=dtype)
        for object_id in sorted(per_frame):
            out[per_frame[object_id].mask] = object_id
        return out

    @contextmanager
    def _predictor_on(self, entry: _EncodedFrame):
        """Point the predictor at a cached frame for one call (its own image is restored after), so
        prompts on a frame take exactly the predictor's path."""
        saved = self.predictor.prepared, self.predictor.features
        self.predictor.prepared, self.predictor.features = entry.prepared, entry.features
        try:
            yield
        finally:
            self.predictor.prepared, self.predictor.features = saved

    def _predict_frame_reference(self, frame: int, reference: ReferenceRegion, previous) -> ObjectResult:
        """"Like this region of frame k": the reference tokens come from frame k's cached features."""
        source_frame = self._check_frame(reference.image, "reference frame")
        source, target = self._frame(source_frame), self._frame(frame)
        mask = torch.from_numpy(resize_mask_nearest(reference.mask, source.prepared.model_shape))[None]
        prev = None if previous is None else previous.logits[None, None]
        return self._decode_from(source, target, mask, prev, [None])[0]

    def _embedding(self, entry: _EncodedFrame, result: ObjectResult) -> torch.Tensor | None:
        """Mean embedding ``[C]`` of the frame's features inside the object's mask (None if empty)."""
        if not result.mask.any():
            return None
        masks = logits_to_model_masks(result.logits[None], entry.features)
        generator = torch.Generator().manual_seed(self.predictor.seed)
        prompt = self.model.encode_visual_prompt(entry.features, masks, generator=generator)
        return prompt.pos_embedding[0, 0].clone()

    def _store_prompted(self, frame: int, object_id: int, result: ObjectResult, anchor) -> None:
        self._set(frame, object_id, result, lost=False)
        order = self.prompted_frames.setdefault(object_id, [])
        if frame in order:
            order.remove(frame)
        order.append(frame)
        self._anchor_embeddings.setdefault(object_id, {})[frame] = anchor

    def _set(self, frame: int, object_id: int, result: ObjectResult | None, lost: bool) -> None:
        """Store (or with ``None`` remove) one object's result and lost flag on one frame."""
        per_frame = self.results.setdefault(frame, {})
        if result is None:
            per_frame.pop(object_id, None)
        else:
            per_frame[object_id] = result
        flags = self.lost.setdefault(frame, set())
        if lost:
            flags.add(object_id)
        else:
            flags.discard(object_id)
        if not per_frame:  # keep the state free of empty entries
            del self.results[frame]
        if not flags:
            del self.lost[frame]

    # ------------------------------------------------------------------ propagation
    def propagate(
        self,
        direction: str = "forward",
        start: int | None = None,
        stop: int | tuple[int, int] | None = None,
        objects: Sequence[int] | None = None,
    ) -> Iterator[FrameResult]:
        """Carry objects frame by frame; yields a :class:`FrameResult` per frame as it is computed.

        ``direction``: ``"forward"``, ``"backward"`` or ``"both"`` (forward, then backward).
        ``start``: frame to start all objects from (default: each object's most recently prompted
        frame). ``stop``: last frame, inclusive (default: the last / first frame); for ``"both"`` a
        ``(first, last)`` pair. ``objects``: ids to carry (default: all prompted objects, or with
        ``start`` all objects that have a result there). Arguments are checked now, frames are
        computed as the generator is consumed.
        """
        return self._run(self._plan(direction, start, stop, objects))

    def _plan(self, direction, start, stop, objects) -> list[_Pass]:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if self.model.layout.name != "v1":
            raise ValueError(f"propagation needs SEEM's v1 logic (a memory prompt per object); the model is in "
                             f"{self.model.layout.name!r} mode: choose a v1 model (the embedded default, "
                             "seem_focalt_v1, seem_focall_v1), or from Python call model.set_mode('v1')")
        sources = self._sources(start, objects)
        steps = {"forward": [1], "backward": [-1], "both": [1, -1]}[direction]
        return [_Pass(step, sources, last) for step, last in zip(steps, self._stops(direction, stop))]

    def _sources(self, start, objects) -> dict[int, int]:
        """Each carried object's first frame."""
        if objects is not None:
            objects = [_check_object_id(o) for o in objects]
            unknown = sorted(set(objects) - set(self.objects))
            if unknown:
                raise ValueError(f"unknown object ids {unknown}; known: {self.objects}")
        if start is not None:
            start = self._check_frame(start, "start")
            present = self.results.get(start, {})
            if objects is None:
                objects = [o for o in self.objects if o in present]
            missing = [o for o in objects if o not in present]
            if missing or not objects:
                raise ValueError(f"start frame {start} has no result for objects {missing or 'at all'}")
            return {o: start for o in objects}
        if objects is None:
            objects = sorted(self.prompted_frames)
            if not objects:
                raise ValueError("no prompted objects: call add_prompts() first")
        unprompted = [o for o in objects if not self.prompted_frames.get(o)]
        if unprompted:
            raise ValueError(f"objects {unprompted} have no prompted frame: give start=")
        return {o: self.prompted_frames[o][-1] for o in objects}

    def _stops(self, direction: str, stop) -> list[int]:
        last = self.num_frames - 1
        if direction == "both":
            if stop is None:
                return [last, 0]
            if not (isinstance(stop, (tuple, list)) and len(stop) == 2):
                raise ValueError(f"for 'both', stop must be None or a (first, last) pair, got {stop!r}")
            return [self._check_frame(stop[1], "stop"), self._check_frame(stop[0], "stop")]
        if stop is None:
            return [last if direction == "forward" else 0]
        return [self._check_frame(stop, "stop")]

    def _run(self, passes: list[_Pass]) -> Iterator[FrameResult]:
        for p in passes:
            yield from self._run_pass(p)

    def _run_pass(self, p: _Pass) -> Iterator[FrameResult]:
        """One direction. An object enters after its source frame, resumes at frames the user
        prompted (re-anchored there), and after being lost only has its stale results removed.
        An object that *misses* (:meth:`_misses`) gets no mask on that frame; it is carried on from
        its last mask, and lost once it misses more than ``rule.gap`` frames in a row (lost on the
        frame of that last miss; the missed frames before it stay without a mask)."""
        first = min(p.sources.values()) if p.step > 0 else max(p.sources.values())
        anchors: dict[int, int | None] = {}  # carried object -> its anchor frame
        last: dict[int, int] = {}  # carried object -> the frame of its last mask
        misses: dict[int, int] = {}  # carried object -> frames missed in a row since then
        tracks: dict[int, Track] = {}  # carried object -> what the presence rule remembers of it
        stopped: set[int] = set()  # lost earlier in this pass
        for t in range(first + p.step, p.stop + p.step, p.step):
            previous = t - p.step
            for o, source in p.sources.items():
                if source == previous:
                    anchors[o], last[o], misses[o], tracks[o] = self._anchor_frame(o, source), source, 0, Track()
            started = sorted(o for o, source in p.sources.items() if (t - source) * p.step > 0)
            kept = [o for o in started if t in self.prompted_frames.get(o, [])]
            for o in kept:
                anchors[o], last[o], misses[o], tracks[o] = t, t, 0, Track()
                stopped.discard(o)
            carried = [o for o in started if o in anchors and o not in kept]
            new, missed = self._advance({o: last[o] for o in carried}, t, anchors, tracks) if carried else ({}, set())
            lost = set()
            for o in new:
                last[o], misses[o] = t, 0
                tracks[o].keep(self.signals[t][o])
            for o in missed:
                misses[o] += 1
                if misses[o] > self.rule.gap:
                    lost.add(o)
                    del anchors[o]
            stale = [o for o in started if o in stopped or (o in missed and o not in lost)]
            stopped |= lost
            self._commit(t, new, lost, stale)
            shown = {o: self.results[t][o] for o in sorted(kept + list(new))}
            yield FrameResult(t, shown, lost)

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
                    logits_of[o], looks[o] = evidence(self.config, raw[n], before[o].mask, app, target.unit,
                                                      target.features, target.prepared)
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
                    self._contrast_ratio(o, anchors[o], target, result.mask))
                if self._misses(result, before[o], self.signals[frame][o], tracks[o]):
                    missed.add(o)
                else:
                    new[o] = result
        return new, missed

    def _anchor_embedding(self, object_id: int, frame: int | None) -> torch.Tensor | None:
        if frame is None or self.anchor_weight == 0:
            return None
        return self._anchor_embeddings.get(object_id, {}).get(frame, (None, None))[0]

    def _contrast(self, entry: _EncodedFrame, mask: np.ndarray) -> float:
        """:func:`~napari_seem.engine.presence.contrast` of a plane mask on an encoded frame (model resolution)."""
        return contrast(entry.prepared.rgb.mean(axis=0), resize_mask_nearest(mask, entry.prepared.model_shape))

    def _contrast_ratio(self, object_id: int, anchor: int | None, entry: _EncodedFrame, mask: np.ndarray) -> float:
        first = self._contrasts.get(object_id, {}).get(anchor) if anchor is not None else None
        if not first:
            return 1.0
        return self._contrast(entry, mask) / first

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
        if mask_iou(new.mask, before.mask) < self.lost_iou or new.score < self.lost_score:
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
        """:meth:`_decode_from` before the conversion to results: logits ``[N, h, w]`` and class
        embeddings ``[N, C]`` of each object's chosen query."""
        generator = torch.Generator().manual_seed(self.predictor.seed)
        prompt = self.model.encode_visual_prompt(source.features, masks, generator=generator)
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
        """Regions ``masks [N, H_img, W_img]`` of ``source`` as reference prompts on ``target``, with
        ``prev_logits [1, N, h, w]`` as memory; one result per region (v1 layout: per-object prompts)."""
        generator = torch.Generator().manual_seed(self.predictor.seed)
        prompt = self.model.encode_visual_prompt(source.features, masks, generator=generator)
        # The generator draws the spatial queries; memory tokens stay split evenly among the objects.
        out = self.model.decode(target.features, spatial=prompt, prev_mask=prev_logits, generator=generator,
                                include_object_queries=False)
        pred = out.final["queries_spatial"]
        embedding = self._blend(prompt.pos_embedding, anchors)
        logits, index, _ = select_by_embedding(pred, embedding, per_object=True)
        class_emb = pred.class_emb[0, index[0]]  # [N, C]
        return logits_to_results(logits[0], class_emb, target.features, target.prepared, self.model,
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

    # ------------------------------------------------------------------ checks
    def _check_frame(self, frame, what: str = "frame") -> int:
        if not _is_index(frame):
            raise ValueError(f"{what} must be an integer frame index, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise ValueError(f"{what} {frame} is outside this stack's frames 0..{self.num_frames - 1}")
        return int(frame)


def _prompt_half(features: ImageFeatures) -> ImageFeatures:
    """What the prompt half reads of an encoding, to cache more frames in the same memory (a third
    less at focal-T 512x512): the backbone and pixel-decoder maps go (only ``encode`` uses them).
    The mask features are held once: ``memory.mask_features_by_pixel`` views them."""
    return replace(features, backbone={}, multi_scale=[])


def _names_a_frame(prompt: ObjectPrompt) -> bool:
    """A reference-only prompt whose reference is a frame of this stack (the predictor cannot do that)."""
    return not prompt.has_visual and prompt.reference is not None and _is_index(prompt.reference.image)


def _is_index(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_object_id(object_id) -> int:
    """Object ids are positive integers (0 is the background of a label image)."""
    if not _is_index(object_id) or object_id < 1:
        raise ValueError(f"object id must be a positive integer, got {object_id!r}")
    return int(object_id)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stack_geometry(frames, channel_axis: int | None) -> tuple[int, tuple[int, int], int | None]:
    """``(T, (H, W), channel axis within a frame)`` of a ``(T, H, W[, C])`` stack, from its shape only."""
    shape = tuple(getattr(frames, "shape", ()))
    if not shape:
        shape = (len(frames), *np.shape(frames[0]))
    if len(shape) not in (3, 4):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, C), got shape {shape}")
    if shape[0] < 1:
        raise ValueError("frames is empty")
    if channel_axis is None:
        return shape[0], (shape[1], shape[2]), None
    if len(shape) != 4 or not -4 <= channel_axis < 4 or channel_axis % 4 == 0:
        raise ValueError(f"channel_axis {channel_axis} is not a channel axis of frames with shape {shape}")
    axis = channel_axis % 4 - 1  # the same axis within one frame
    plane = tuple(s for i, s in enumerate(shape[1:]) if i != axis)
    return shape[0], plane, axis
