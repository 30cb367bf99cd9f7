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

**Presence and lost objects.** SEEM always answers with some mask, so each step measures what the
answer says anyway (``session.signals[frame][object]``, :class:`~napari_seem.engine.presence.PresenceSignals`)
and decides whether the object *misses* the frame: its new mask is empty, overlaps its previous mask
with IoU below ``lost_iou``, scores below ``lost_score`` (``ObjectResult.score``, the mask's stability),
or the presence rule of the stack's kind says so (``stack_kind``: ``"time"``, no further rule;
``"z"``, :data:`~napari_seem.engine.presence.RULES`: a nucleus that faded below a quarter of its
peak contrast, or that faded and brightens again, or whose mask moved off half of the previous one,
has ended). A missed frame gets no mask. ``rule.gap`` misses in a row are bridged (z: one slice;
the object is carried on from its last mask and is the same object when found again); one more and
it is *lost*: listed in ``FrameResult.lost``, carried no further in that direction (its stale
results from earlier runs further along are removed) unless a frame further along was prompted by
the user, where it resumes. An object lost above its top slice stays lost further up.

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
from dataclasses import replace
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from napari_seem.model import ImageFeatures
from napari_seem.prompts import ObjectPrompt, PromptError, ReferenceRegion, validate

from .appearance import Appearance, appearance, cell_share
from .carry import PropagationConfig, given_mask_result, only_masks
from .conversion import logits_to_model_masks, resize_mask_nearest
from .feature_cache import FeatureCache, encode_prepared
from .heap import release_free_memory
from .image import percentile_limits, prepare_image, select_channels
from .predictor import ObjectResult, SeemPredictor
from .presence import RULES, STACK_KINDS, PresenceRule, PresenceSignals, mean_feature
from .video_steps import FrameResult, _EncodedFrame, _is_index, _names_a_frame, _Pass, _Stepping

DIRECTIONS = ("forward", "backward", "both")
DIVISIONS = ("lineage", "split")


class VideoSession(_Stepping):
    """Per-stack state for propagating objects through frames (see the module docstring).

    ``frames``: ``(T, H, W)`` or ``(T, H, W, C)`` array-like. ``channel_axis``: the channel axis *of
    ``frames``* (not 0; default: a 4D stack's last axis) and ``channels`` the channel choice, as for
    :func:`prepare_image`. ``cache``: an on-disk :class:`FeatureCache` for the frames' encodings
    (default: the predictor's, ``predictor.cache``). ``stack_kind``: ``"time"`` or ``"z"``, which
    presence rule decides that an object has ended (``rule``: another
    :class:`~napari_seem.engine.presence.PresenceRule`). ``given_masks``: an object prompted with
    masks only keeps that mask on its frame (not SEEM's answer to it). ``config``: how a step builds
    a mask (:class:`~napari_seem.engine.carry.PropagationConfig`). ``stretch``: ``"plane"`` (each
    frame its own percentile stretch) or ``"stack"`` (one for all frames). ``divisions``:
    ``"lineage"`` (a cell that divides keeps both daughters under its id) or ``"split"`` (going
    forward, each daughter becomes a new object, ids from ``first_new_id`` up and above every id the
    session knows; ``parents[daughter]`` is the mother, ``births[daughter]`` its first frame; the
    mother ends there). State, readable at any time:

    * ``results[frame][object_id]``: :class:`ObjectResult` (full-resolution mask, logits, score);
    * ``lost[frame]``: ids of objects lost on that frame;
    * ``prompted_frames[object_id]``: frames the user prompted it on, least recently prompted first;
    * ``signals[frame][object_id]``: the :class:`~napari_seem.engine.presence.PresenceSignals` of the
      object's last step onto that frame (kept, missed or lost).
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
        config: PropagationConfig | None = None,
        stretch: str = "plane",
        rule: PresenceRule | None = None,
        divisions: str = "lineage",
        first_new_id: int = 1,
        scale_to_objects: bool = True,
    ) -> None:
        if max_cached_frames < 2:
            raise ValueError(f"max_cached_frames must be at least 2 (a step needs two frames), got {max_cached_frames}")
        if not 0.0 <= anchor_weight <= 1.0:
            raise ValueError(f"anchor_weight must be in [0, 1], got {anchor_weight}")
        self.predictor = predictor
        # The frames' long side at model scale; with ``scale_to_objects`` the first objects set it.
        self.target_size = predictor.target_size
        self.scale_to_objects = scale_to_objects
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
        self._offsets: dict[int, dict[int, float]] = {}  # object -> anchor frame -> logit offset (calibrate)
        self._anchor_cells: dict[int, dict[int, float]] = {}  # object -> anchor frame -> its logit cells there
        self.detailed_signals = False  # also measure the signals no rule reads (PresenceSignals)
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
        if divisions not in DIVISIONS:
            raise ValueError(f"divisions must be one of {DIVISIONS}, got {divisions!r}")
        self.divisions = divisions
        self.first_new_id = int(first_new_id)
        self.parents: dict[int, int] = {}  # daughter id -> its mother's (divisions="split")
        self.births: dict[int, int] = {}  # daughter id -> the frame it was born on
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
        prepared = prepare_image(plane, self._plane_channel_axis, self.channels, self.target_size,
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
        self._scale_to(frame, prompts)
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
            for o in ids:
                self._remember_anchor(frame, o, entry, results[o])
                if self.config.calibrate and self.given_masks and only_masks(prompts[o]) is not None:
                    self._calibrate(frame, o, entry, results[o])
        for o in ids:
            self._store_prompted(frame, o, results[o])
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
                self._offsets.get(object_id, {}).pop(t, None)
                self._anchor_cells.get(object_id, {}).pop(t, None)
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

    def _store_prompted(self, frame: int, object_id: int, result: ObjectResult) -> None:
        self._set(frame, object_id, result, lost=False)
        order = self.prompted_frames.setdefault(object_id, [])
        if frame in order:
            order.remove(frame)
        order.append(frame)

    def _remember_anchor(self, frame: int, object_id: int, entry: _EncodedFrame, result: ObjectResult) -> None:
        """What later steps compare the object with, from its result on ``frame`` (its anchor there):
        its embedding and mean feature, its appearance prototypes, its contrast and its area in cells."""
        self._anchor_embeddings.setdefault(object_id, {})[frame] = (
            self._embedding(entry, result), mean_feature(entry.features.mask_features, result.logits))
        share = cell_share(result.mask, entry.features, entry.prepared)
        self._appearances.setdefault(object_id, {})[frame] = appearance(entry.unit, share, self.config.ring)
        self._anchor_cells.setdefault(object_id, {})[frame] = float((share > 0.5).sum())
        self._contrasts.setdefault(object_id, {})[frame] = self._contrast(entry, result.logits)

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


def _check_object_id(object_id) -> int:
    """Object ids are positive integers (0 is the background of a label image)."""
    if not _is_index(object_id) or object_id < 1:
        raise ValueError(f"object id must be a positive integer, got {object_id!r}")
    return int(object_id)


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
