"""Large planes by tiling: :class:`TiledPredictor` and :func:`predictor_for`.

    predictor = predictor_for(model, plane.shape)   # a SeemPredictor, or a TiledPredictor when large
    predictor.set_image(plane)                      # numpy, dask or zarr; nothing is read or encoded yet
    nucleus, = predictor.predict([ObjectPrompt(points=[Point(5210, 880)])])  # encodes one tile
    everything = predictor.segment_everything(["nucleus"])                  # every tile, stitched

A plane whose long side is more than the model input is not shrunk to it (which loses small
objects): it is cut into overlapping tiles at native resolution (or at a chosen ``scale``), see
:mod:`.tile_grid`. Each tile is a normal plane for :class:`SeemPredictor`, which does the decoding.

* **Normalisation** is the same for every tile: the percentile stretch of the whole plane,
  estimated once from patches spread over it (:func:`.plane_source.sample_limits`), or ``limits``
  given to :meth:`TiledPredictor.set_image` (e.g. one stretch for a whole series).
* **Prompts** are decoded in one window each: the tile whose core holds the centre of the prompt's
  bounding box, if its window holds that box grown by ``margin``; else a window centred on the
  prompt (:func:`.tile_grid.window_for`). A refined object stays in the window of its previous
  result when the new prompt fits there, so SEEM's memory prompt stays valid; otherwise the
  previous mask is carried over as the memory. Objects of one window share a decoder pass. Text
  and reference prompts need a point, box, scribble or mask to place them (text alone has no
  place on a large plane: use :meth:`TiledPredictor.segment_everything`).
* **Encoded tiles** are cached by content (least recently used first out, ``max_cached_tiles``), so
  further clicks on the same tile only decode. Segment-everything over more tiles than that leaves
  the cache as it was (a sequential pass would only evict the tiles in use).
* **Segment everything** runs every tile and stitches the instances (:mod:`.stitching`: ownership by
  centroid in the core, merging of objects cut in both windows, conflicts, unique ids).
* **Results** are :class:`TiledObjectResult`: the mask as a bounding box and the mask inside it
  (``pixels``); ``mask`` gives the full-plane array when wanted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch

from napari_seem.model import ImageFeatures, SeemModel
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError, Scribble, validate

from .conversion import ObjectResult, resize_mask_nearest
from .image import DEFAULT_TARGET_SIZE, PreparedImage, check_limits, prepare_image
from .plane_source import PlaneSource, sample_limits
from .point_grid import PointGrid
from .predictor import EverythingResult, SeemPredictor
from .stitching import DEFAULT_MERGE_THRESHOLD, SparseMask, finish, owned_objects, paint_labels, tile_objects
from .tile_grid import Region, TileGrid, tile_grid, window_for

DEFAULT_HALO = 64
MEMORY_LOGIT = 10.0  # a carried-over mask as memory logits: +10 inside, -10 outside (sigmoid ~ 1 / ~ 0)


@dataclass
class TiledObjectResult:
    """One object's answer on a large plane (the fields of :class:`ObjectResult`, but sparse).

    ``pixels``: the mask as its bounding box and bool crop, in plane coordinates. ``logits``: mask
    logits ``[h, w]`` at 1/4 model resolution of ``window`` (the memory for the next round).
    ``plane_shape``: (H, W) of the plane."""

    pixels: SparseMask
    logits: torch.Tensor
    score: float
    class_name: str | None
    class_score: float | None
    window: Region
    plane_shape: tuple[int, int]

    @property
    def mask(self) -> np.ndarray:
        """Bool ``[H, W]`` of the whole plane (allocated on each access: use ``pixels`` for huge planes)."""
        return self.pixels.to_dense(self.plane_shape)


class TiledPredictor:
    """:class:`SeemPredictor`'s API for planes larger than the model input (module docstring).

    ``tile``: model input size of one tile (pixels of the model); ``halo``: overlap context in model
    pixels; ``scale``: model pixels per plane pixel (1 = native; 0.5 reads 2x larger windows and
    halves them). ``margin``: plane pixels around a prompt's bounding box that its window must hold
    (default half the halo). ``max_cached_tiles``: encoded tiles kept. ``percentiles`` and
    ``sample_pixels``: the plane-wide stretch and how many pixels estimate it. ``merge_threshold``:
    stitching rule 2. ``seed``, ``box_weight``, ``box_margin``, ``cache``: as for :class:`SeemPredictor`.
    """

    def __init__(
        self,
        model: SeemModel,
        tile: int = DEFAULT_TARGET_SIZE,
        halo: int = DEFAULT_HALO,
        scale: float = 1.0,
        margin: int | None = None,
        max_cached_tiles: int = 8,
        percentiles: tuple[float, float] = (1.0, 99.8),
        sample_pixels: int = 2**22,
        merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
        **predictor_options: Any,
    ) -> None:
        if not (scale > 0 and np.isfinite(scale)):
            raise ValueError(f"scale must be a positive number (model pixels per plane pixel), got {scale}")
        if max_cached_tiles < 1:
            raise ValueError(f"max_cached_tiles must be >= 1, got {max_cached_tiles}")
        self.decoder = SeemPredictor(model, target_size=tile, **predictor_options)
        self.model = self.decoder.model
        self.tile, self.halo, self.scale = tile, halo, scale
        self.tile_px, self.halo_px = round(tile / scale), round(halo / scale)  # the same in plane pixels
        tile_grid((self.tile_px, self.tile_px), self.tile_px, self.halo_px)  # checks tile > 2 * halo now
        self.margin = self.halo_px // 2 if margin is None else int(margin)
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0 plane pixels, got {margin}")
        self.max_cached_tiles = max_cached_tiles
        self.percentiles = percentiles
        self.sample_pixels = sample_pixels
        self.merge_threshold = merge_threshold
        self.source: PlaneSource | None = None
        self.grid: TileGrid | None = None
        self._limits: tuple[np.ndarray, np.ndarray] | None = None
        self._limits_fixed = False  # given to set_image, not sampled
        self._cache: OrderedDict[str, tuple[PreparedImage, ImageFeatures]] = OrderedDict()
        self.tiles_encoded = 0  # encoder runs so far (diagnostics and benchmarks)

    # ------------------------------------------------------------------ image, vocabulary, tiles
    @property
    def vocabulary(self) -> list[str] | None:
        return self.decoder.vocabulary

    def set_vocabulary(self, names: Sequence[str] | None) -> None:
        """As :meth:`SeemPredictor.set_vocabulary`."""
        self.decoder.set_vocabulary(names)

    def set_image(
        self,
        image: Any,
        channel_axis: int | None = None,
        channels: Sequence[int] | int | None = None,
        limits: tuple[Any, Any] | None = None,
    ) -> None:
        """Record ``image`` (``[H, W]``, ``[H, W, C]`` or channels on ``channel_axis``; numpy, dask, zarr
        or any array that slices): nothing is read or encoded until a prompt needs it. ``limits``:
        fixed ``(lo, hi)`` intensity limits (scalars or per chosen channel) instead of the plane's
        sampled percentiles. Setting the same array object again keeps its sampled limits."""
        source = PlaneSource(image, channel_axis, channels)
        if limits is not None:
            limits = check_limits(limits, source.n_channels)
        same = self.source is not None and image is self.source.data and source.choice == self.source.choice
        if limits is not None or not same or self._limits_fixed:
            self._limits = limits  # None: sampled again on first use
        self._limits_fixed = limits is not None
        self.source = source
        self.grid = tile_grid(source.shape, self.tile_px, self.halo_px)

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The intensity limits every tile is normalised with (sampled on first use)."""
        source = self._require_image()
        if self._limits is None:
            self._limits = sample_limits(source, self.percentiles, self.sample_pixels)
        return self._limits

    def _require_image(self) -> PlaneSource:
        if self.source is None:
            raise RuntimeError("call set_image() first")
        return self.source

    def encode_window(self, region: Region, keep: bool = True) -> tuple[PreparedImage, ImageFeatures]:
        """The prepared pixels and features of ``region``, encoded unless cached; makes them the
        decoder's current image. ``keep``: cache a new encoding (else it is dropped after use)."""
        source = self._require_image()
        block = source.read(region)
        target = min(self.tile, max(round(max(region.shape) * self.scale), 2))
        prepared = prepare_image(block, None if block.ndim == 2 else -1,
                                 None if block.ndim == 2 else list(range(block.shape[-1])),
                                 target_size=target, percentiles=self.percentiles, limits=self.limits)
        entry = self._cache.get(prepared.signature)
        if entry is None:
            # Through the decoder's own encode, so its on-disk feature cache (``cache=``) serves tiles too.
            entry = (prepared, self.decoder._encode(prepared))
            self.tiles_encoded += 1
            if keep:
                self._cache[prepared.signature] = entry
                while len(self._cache) > self.max_cached_tiles:
                    self._cache.popitem(last=False)
        if prepared.signature in self._cache:
            self._cache.move_to_end(prepared.signature)
        # The decoder answers on whatever image it holds: give it this tile (no re-encode).
        self.decoder.prepared, self.decoder.features = entry
        return entry

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        prompts: ObjectPrompt | Sequence[ObjectPrompt],
        previous: Sequence[TiledObjectResult | ObjectResult | None] | None = None,
    ) -> list[TiledObjectResult]:
        """Segment one object per prompt (plane coordinates), encoding only the windows they need.
        ``previous[i]``: object i's last result (memory prompt), or None."""
        source = self._require_image()
        prompts = [prompts] if isinstance(prompts, ObjectPrompt) else list(prompts)
        previous = list(previous) if previous is not None else [None] * len(prompts)
        if len(previous) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(previous)} previous results")
        groups: dict[Region, list[int]] = {}
        for i, (prompt, prev) in enumerate(zip(prompts, previous)):
            try:
                validate(prompt, source.shape)
                if not prompt.has_visual:
                    raise PromptError("text or a reference alone has no place on a tiled plane: add a point, "
                                      "box, scribble or mask, or use segment_everything")
            except PromptError as err:
                raise PromptError(f"object {i}: {err}") from None
            preferred = prev.window if isinstance(prev, TiledObjectResult) else None
            window = window_for(prompt_bbox(prompt), self.grid, self.tile_px, self.margin, preferred)
            groups.setdefault(window, []).append(i)
        results: list[TiledObjectResult | None] = [None] * len(prompts)
        for window, members in groups.items():
            prepared, features = self.encode_window(window)
            local = [shift_prompt(prompts[i], window) for i in members]
            memory = [_memory(previous[i], window, prepared, features) for i in members]
            for i, answer in zip(members, self.decoder.predict(local, previous=memory)):
                results[i] = TiledObjectResult(SparseMask(window, answer.mask).tight(), answer.logits, answer.score,
                                               answer.class_name, answer.class_score, window, source.shape)
        return results

    # ------------------------------------------------------------------ everything
    def segment_everything(
        self,
        vocabulary: Sequence[str],
        object_threshold: float = 0.4,
        overlap_threshold: float = 0.8,
        mask_threshold: float = 0.5,
        min_area: int = 0,
        image: Any = None,
        out: Any = None,
        progress: Callable[[int, int], None] | None = None,
        strategy: str = "queries",
        grid: PointGrid | None = None,
    ) -> EverythingResult:
        """All instances over the whole plane: every tile is segmented as
        :meth:`SeemPredictor.segment_everything` does (same thresholds and ``strategy``), then the tiles' instances are
        stitched (:mod:`.stitching`; ``min_area`` applies to the stitched objects). ``out``: an
        int array of the plane's shape (e.g. zarr) to write the labels into, core by core; a new
        int32 array when None. ``progress(done, total)`` is called after each tile."""
        steps = self.segment_everything_steps(vocabulary, object_threshold, overlap_threshold, mask_threshold,
                                              min_area, image, out, strategy, grid)
        while True:
            try:
                done, total = next(steps)
            except StopIteration as finished:
                return finished.value
            if progress is not None:
                progress(done, total)

    def segment_everything_steps(
        self,
        vocabulary: Sequence[str],
        object_threshold: float = 0.4,
        overlap_threshold: float = 0.8,
        mask_threshold: float = 0.5,
        min_area: int = 0,
        image: Any = None,
        out: Any = None,
        strategy: str = "queries",
        grid: PointGrid | None = None,
    ) -> Generator[tuple[int, int], None, EverythingResult]:
        """:meth:`segment_everything` as a generator: yields ``(tiles done, tiles in all)`` after each
        tile and returns the result, so a caller can show progress and stop between tiles (nothing
        is stitched or written before the last tile)."""
        if image is not None:
            self.set_image(image)
        self._require_image()
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")
        names = list(vocabulary) if not isinstance(vocabulary, str) else vocabulary
        # A pass over more tiles than the cache holds would only push out the tiles being clicked on
        # (and find nothing there next time): cache the pass only when all of it fits.
        keep = len(self.grid) <= self.max_cached_tiles
        kept = []
        for done, tile in enumerate(self.grid, start=1):
            self.encode_window(tile.window, keep)
            found = self.decoder.segment_everything(names, object_threshold=object_threshold,
                                                    overlap_threshold=overlap_threshold, mask_threshold=mask_threshold,
                                                    strategy=strategy, grid=grid)
            kept.extend(owned_objects(tile, tile_objects(tile, found.labels, found.class_ids, found.scores)))
            yield done, len(self.grid)
        objects = finish(self.grid, kept, self.merge_threshold, min_area)
        labels = paint_labels(self.grid, objects, out)
        class_ids = [o.class_id for o in objects]
        return EverythingResult(labels, [names[c] for c in class_ids], class_ids, [o.score for o in objects])


# ---------------------------------------------------------------------- prompts on tiles
def prompt_bbox(prompt: ObjectPrompt) -> Region:
    """Bounding box of the visual parts of ``prompt`` (plane pixels; a click is its 3x3 square,
    a scribble includes its width)."""
    ys: list[float] = []
    xs: list[float] = []
    for p in prompt.points:
        ys += [p.y - 1, p.y + 1]
        xs += [p.x - 1, p.x + 1]
    for b in prompt.boxes:
        ys += [b.y0, b.y1]
        xs += [b.x0, b.x1]
    for s in prompt.scribbles:
        ys += [y + d for y, _ in s.points for d in (-s.width / 2, s.width / 2)]
        xs += [x + d for _, x in s.points for d in (-s.width / 2, s.width / 2)]
    for m in prompt.masks:
        rows, cols = np.nonzero(np.asarray(m.mask).any(axis=1))[0], np.nonzero(np.asarray(m.mask).any(axis=0))[0]
        ys += [rows[0], rows[-1]]
        xs += [cols[0], cols[-1]]
    return Region(int(np.floor(min(ys) + 0.5)), int(np.floor(min(xs) + 0.5)),
                  int(np.floor(max(ys) + 0.5)) + 1, int(np.floor(max(xs) + 0.5)) + 1)


def shift_prompt(prompt: ObjectPrompt, window: Region) -> ObjectPrompt:
    """``prompt`` in the coordinates of ``window`` (masks cropped to it); text and reference unchanged."""
    dy, dx = window.y0, window.x0
    return ObjectPrompt(
        points=[Point(p.y - dy, p.x - dx, p.positive) for p in prompt.points],
        boxes=[Box(b.y0 - dy, b.x0 - dx, b.y1 - dy, b.x1 - dx) for b in prompt.boxes],
        scribbles=[Scribble(tuple((y - dy, x - dx) for y, x in s.points), s.width, s.positive)
                   for s in prompt.scribbles],
        masks=[MaskPrompt(np.asarray(m.mask)[window.slices], m.positive) for m in prompt.masks],
        text=prompt.text,
        reference=prompt.reference,
    )


def _memory(
    previous: TiledObjectResult | ObjectResult | None, window: Region, prepared: PreparedImage, features: ImageFeatures
) -> TiledObjectResult | ObjectResult | None:
    """Object memory for a decode in ``window``: the previous result itself when it was decoded
    there; else its mask, cut to the window, as logits on the window's feature grid (None if the
    previous mask does not reach into the window)."""
    if previous is None or (isinstance(previous, TiledObjectResult) and previous.window == window):
        return previous
    if isinstance(previous, TiledObjectResult):
        pixels = previous.pixels
    else:  # a full-plane ObjectResult
        mask = np.asarray(previous.mask, dtype=bool)
        pixels = SparseMask(Region(0, 0, *mask.shape), mask)
    common = pixels.region.intersection(window)
    if common is None or not pixels.view(common).any():
        return None
    local = np.zeros(window.shape, dtype=bool)
    local[common.relative_to(window).slices] = pixels.view(common)
    # Window -> model resolution -> padded canvas -> the 1/4 feature grid the decoder's memory uses.
    padded = np.zeros(features.padded_size, dtype=bool)
    height, width = prepared.model_shape
    padded[:height, :width] = resize_mask_nearest(local, (height, width))
    grid = resize_mask_nearest(padded, tuple(features.mask_features.shape[-2:]))
    logits = torch.where(torch.from_numpy(grid), MEMORY_LOGIT, -MEMORY_LOGIT)
    return ObjectResult(local, logits, 0.0)


# ---------------------------------------------------------------------- choosing
def plane_shape_of(shape: Sequence[int], channel_axis: int | None = None) -> tuple[int, int]:
    """(H, W) of a plane of array ``shape``: 2D, or 3D with channels on ``channel_axis`` (default last)."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 2:
        return shape  # type: ignore[return-value]
    if len(shape) != 3:
        raise ValueError(f"expected a 2D plane (H, W) or (H, W, C), got shape {shape}")
    axis = 2 if channel_axis is None else channel_axis % 3
    spatial = [n for i, n in enumerate(shape) if i != axis]
    return spatial[0], spatial[1]


def predictor_for(
    model: SeemModel,
    plane_shape: Sequence[int],
    channel_axis: int | None = None,
    tile: int = DEFAULT_TARGET_SIZE,
    threshold: int | None = None,
    **tiled_options: Any,
) -> SeemPredictor | TiledPredictor:
    """A :class:`SeemPredictor` (whole plane resized to ``tile``) when the plane's long side is at most
    ``threshold`` pixels (default ``2 * tile``: up to 2x downscaling loses little), else a
    :class:`TiledPredictor` with ``tiled_options`` (halo, scale, ...). ``seed``, ``box_weight``,
    ``box_margin`` and ``cache`` among the options go to either."""
    threshold = 2 * tile if threshold is None else threshold
    if max(plane_shape_of(plane_shape, channel_axis)) <= threshold:
        shared = {k: v for k, v in tiled_options.items() if k in ("seed", "box_weight", "box_margin", "cache")}
        return SeemPredictor(model, target_size=tile, **shared)
    return TiledPredictor(model, tile=tile, **tiled_options)
