"""TiledPredictor on a tiny random-weight model: only touched tiles are encoded, tiles match a plain
predictor on the same pixels, one normalisation for the whole plane, segment-everything stitched,
numpy / dask / zarr planes read lazily, bad input refused."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from skimage.draw import disk
from skimage.measure import label

from napari_seem.engine import EverythingResult, PointGrid, SeemPredictor
from napari_seem.engine.image import percentile_limits
from napari_seem.engine.plane_source import PlaneSource, sample_limits, sample_regions
from napari_seem.engine.tile_grid import Region
from napari_seem.engine.tiling import TiledPredictor, predictor_for
from napari_seem.model import build_seem
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError

from tiny import tiny_config

TILE, HALO = 128, 16  # windows start at 0, 96, 192, 288 on 416 pixels; core borders at 112, 208, 304
VOCABULARY = ["nucleus", "cell"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_seem(tiny_config())


@pytest.fixture
def counted(model, monkeypatch):
    """The model, with ``model.encodes`` counting encoder runs."""
    model.encodes = 0
    encode = model.encode

    def counting(*args, **kwargs):
        model.encodes += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counting)
    return model


def _plane(shape=(416, 416), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 4000).astype(np.uint16)


class CountingArray:
    """A read-only array-like that records how many pixels each read takes (a stand-in for a file)."""

    def __init__(self, data: np.ndarray, chunks=None):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        if chunks is not None:
            self.chunks = chunks
        self.pixels_read = 0

    def __getitem__(self, index):
        block = self.data[index]
        self.pixels_read += block.size
        return block


def test_a_click_encodes_only_its_tile_and_later_clicks_there_reuse_it(counted):
    predictor = TiledPredictor(counted, tile=TILE, halo=HALO)
    predictor.set_image(_plane())
    assert counted.encodes == 0  # set_image records, encodes nothing
    first, = predictor.predict(ObjectPrompt(points=[Point(150, 150)]))
    assert counted.encodes == 1 and first.window == Region(96, 96, 224, 224)
    assert first.mask.shape == (416, 416) and first.mask.any()
    assert Region(96, 96, 224, 224).contains(first.pixels.region)
    assert not first.mask[:96].any() and not first.mask[:, 224:].any()
    predictor.predict(ObjectPrompt(points=[Point(120, 200)]))  # another click on the same core
    assert counted.encodes == 1
    # Two objects on two tiles: one encode each (and one decoder pass per tile).
    a, b = predictor.predict([ObjectPrompt(points=[Point(20, 20)]), ObjectPrompt(boxes=[Box(330, 330, 380, 400)])])
    assert counted.encodes == 3 and a.window == Region(0, 0, 128, 128) and b.window == Region(288, 288, 416, 416)
    assert predictor.tiles_encoded == 3


def test_a_chosen_scale_reads_larger_windows_and_encodes_them_at_the_tile_size(counted):
    predictor = TiledPredictor(counted, tile=64, halo=8, scale=0.5)  # 128-pixel windows shrunk to 64
    predictor.set_image(_plane())
    assert len(predictor.grid) == 16 and predictor.grid.tiles[0].window == Region(0, 0, 128, 128)
    result, = predictor.predict(ObjectPrompt(points=[Point(150, 150)]))
    prepared, _ = predictor.encode_window(result.window)
    assert result.window == Region(96, 96, 224, 224) and prepared.model_shape == (64, 64) and prepared.scale == 0.5
    assert result.mask.shape == (416, 416) and counted.encodes == 1


def test_the_cache_is_bounded_and_evicts_the_least_recently_used_tile(counted):
    predictor = TiledPredictor(counted, tile=TILE, halo=HALO, max_cached_tiles=2)
    predictor.set_image(_plane())
    clicks = {name: ObjectPrompt(points=[Point(*yx)]) for name, yx in
              {"a": (20, 20), "b": (20, 400), "c": (400, 20)}.items()}
    for name in "ab":
        predictor.predict(clicks[name])
    predictor.predict(clicks["a"])  # a is now the most recent
    predictor.predict(clicks["c"])  # evicts b
    assert counted.encodes == 3
    predictor.predict(clicks["a"])
    assert counted.encodes == 3
    predictor.predict(clicks["b"])
    assert counted.encodes == 4


def test_a_tile_answers_as_a_plain_predictor_on_the_same_pixels(model):
    """With the window's own percentiles as the plane's limits, the tiled answer is SeemPredictor's
    answer on the window crop, placed at the window (prompts shifted, masks cropped, boxes clipped)."""
    plane = _plane(seed=3)
    window = Region(96, 192, 224, 320)
    crop = plane[window.slices]
    tiled = TiledPredictor(model, tile=TILE, halo=HALO, seed=0)
    tiled.set_image(plane, limits=percentile_limits(crop))
    plain = SeemPredictor(model, target_size=TILE, seed=0)
    plain.set_image(crop)
    mask = np.zeros(plane.shape, dtype=bool)
    mask[150:160, 240:262] = True
    prompts = [ObjectPrompt(points=[Point(150, 250), Point(170, 260, positive=False)]),
               ObjectPrompt(boxes=[Box(130, 220, 180, 280)]), ObjectPrompt(masks=[MaskPrompt(mask)])]
    for prompt in prompts:
        got, = tiled.predict(prompt)
        assert got.window == window
        shifted = ObjectPrompt(points=[Point(p.y - 96, p.x - 192, p.positive) for p in prompt.points],
                               boxes=[Box(b.y0 - 96, b.x0 - 192, b.y1 - 96, b.x1 - 192) for b in prompt.boxes],
                               masks=[MaskPrompt(m.mask[window.slices]) for m in prompt.masks])
        want, = plain.predict(shifted)
        assert np.array_equal(got.mask[window.slices], want.mask) and got.mask.sum() == want.mask.sum()
        assert got.score == pytest.approx(want.score)
        assert torch.equal(got.logits, want.logits)


def test_one_normalisation_for_the_whole_plane(model):
    """A dim region is not stretched to full range as a plane of its own would be."""
    plane = _plane(seed=4)
    plane[:, 208:] //= 8  # the right half is 8x dimmer
    predictor = TiledPredictor(model, tile=TILE, halo=HALO)
    predictor.set_image(plane)
    bright, _ = predictor.encode_window(Region(0, 0, 128, 128))
    dim, _ = predictor.encode_window(Region(0, 288, 128, 416))
    assert bright.rgb.max() == pytest.approx(255.0)
    assert dim.rgb.max() < 0.2 * 255 and np.median(dim.rgb) < np.median(bright.rgb) / 4
    # The limits are estimated from patches: close to the exact percentiles of the whole plane.
    big = _plane((1500, 1700), seed=5)
    lo, hi = sample_limits(PlaneSource(big), sample_pixels=2**16)
    exact_lo, exact_hi = percentile_limits(big)
    assert lo == pytest.approx(exact_lo, rel=0.1, abs=20) and hi == pytest.approx(exact_hi, rel=0.02)
    # Fixed limits replace the sampled ones.
    predictor.set_image(plane, limits=(0, 8000))
    fixed, _ = predictor.encode_window(Region(0, 0, 128, 128))
    assert fixed.rgb.max() < 130
    predictor.set_image(plane)  # and without them, the plane's own again
    assert predictor.encode_window(Region(0, 0, 128, 128))[0].rgb.max() == pytest.approx(255.0)


def test_refining_keeps_the_window_or_carries_the_mask_over_as_memory(model):
    # Without obey_clicks: on random weights it grows both answers to the same region, hiding the memory.
    predictor = TiledPredictor(model, tile=TILE, halo=HALO, obey_clicks=False)
    predictor.set_image(_plane(seed=6))
    first, = predictor.predict(ObjectPrompt(points=[Point(150, 105)]))  # core of the tile at x 0..128
    assert first.window == Region(96, 0, 224, 128)
    # A point that the first window still holds: same window, the result's logits are the memory.
    near, = predictor.predict(ObjectPrompt(points=[Point(150, 105), Point(150, 112)]), previous=[first])
    assert near.window == first.window
    # One that it does not: another window; the previous mask, cut to it, is the memory.
    click = ObjectPrompt(points=[Point(150, 105), Point(150, 180)])
    with_memory, = predictor.predict(click, previous=[first])
    without, = predictor.predict(click)
    assert with_memory.window == without.window != first.window
    assert not np.array_equal(with_memory.mask, without.mask)


def test_segment_everything_on_the_toy_model(counted):
    predictor = TiledPredictor(counted, tile=TILE, halo=HALO, max_cached_tiles=16)
    plane = _plane(seed=7)
    done = []
    result = predictor.segment_everything(VOCABULARY, object_threshold=0.0, overlap_threshold=0.0, image=plane,
                                          progress=lambda i, n: done.append((i, n)))
    assert isinstance(result, EverythingResult) and result.labels.shape == (416, 416)
    n = len(result)
    assert n >= 2 and set(np.unique(result.labels)) == set(range(n + 1))
    assert result.class_names == [VOCABULARY[c] for c in result.class_ids]
    assert counted.encodes == 16 and done[-1] == (16, 16)
    # Into a zarr array on disk-like storage: the same labels; all 16 tiles fit the cache: no encode.
    out = zarr.create_array(store={}, shape=(416, 416), chunks=(64, 64), dtype="int32")
    again = predictor.segment_everything(VOCABULARY, object_threshold=0.0, overlap_threshold=0.0, out=out)
    assert again.labels is out and np.array_equal(out[:], result.labels) and counted.encodes == 16


def test_segment_everything_by_points_on_every_tile(counted):
    predictor = TiledPredictor(counted, tile=TILE, halo=HALO, max_cached_tiles=16)
    result = predictor.segment_everything(VOCABULARY, image=_plane(seed=7), strategy="points",
                                          grid=PointGrid(points_per_side=4, min_score=0.0))
    n = len(result)
    assert result.labels.shape == (416, 416) and n >= 1
    assert set(np.unique(result.labels)) == set(range(n + 1))
    assert result.class_names == [VOCABULARY[c] for c in result.class_ids]
    assert counted.encodes == 16


def test_segment_everything_over_more_tiles_than_the_cache_keeps_the_clicked_tiles(counted):
    predictor = TiledPredictor(counted, tile=TILE, halo=HALO, max_cached_tiles=2)
    predictor.set_image(_plane(seed=7))
    predictor.predict(ObjectPrompt(points=[Point(150, 150)]))
    predictor.segment_everything(VOCABULARY)
    assert counted.encodes == 16  # the clicked tile was not encoded again
    predictor.predict(ObjectPrompt(points=[Point(160, 140)]))  # and it is still cached after the pass
    assert counted.encodes == 16


class ThresholdSegmenter(SeemPredictor):
    """The per-tile predictor with segment-everything replaced by the connected bright regions of the
    tile it is given (what a good model finds on a plane of bright discs), so that stitching can be
    judged."""

    def segment_everything(self, vocabulary, *thresholds, **options):
        pieces = label(self.prepared.rgb[0] > 127, connectivity=1).astype(np.int32)
        n = int(pieces.max())
        return EverythingResult(pieces, [vocabulary[0]] * n, [0] * n, [1.0] * n)


def test_segment_everything_keeps_each_object_once_and_whole(model):
    """A lattice of discs larger than one tile, with discs cut by window edges, straddling core
    borders and on a four-tile corner, a disc wider than the overlap centred on a core border and a
    bar across the plane: every object comes back once, whole."""
    truth = np.zeros((416, 416), dtype=bool)
    for cy in range(20, 416, 40):
        for cx in range(20, 416, 40):
            if not (100 <= cy <= 220 and 60 <= cx <= 180):
                truth[disk((cy, cx), 6)] = True
    truth[disk((160, 112), 40)] = True
    truth[disk((304, 208), 5)] = True
    truth[247:254, 5:411] = True
    truth = label(truth, connectivity=1)
    plane = np.where(truth > 0, 3000, 100).astype(np.uint16)
    predictor = TiledPredictor(model, tile=TILE, halo=HALO)
    predictor.decoder = ThresholdSegmenter(model, target_size=TILE)
    result = predictor.segment_everything(["nucleus"], image=plane)
    assert len(result) == truth.max()
    pairs = set(zip(result.labels.ravel().tolist(), truth.ravel().tolist()))
    assert len(pairs) == truth.max() + 1  # one-to-one: no duplicates, no pieces, no merged neighbours


def test_dask_and_zarr_planes_give_the_numpy_answers(model):
    plane = _plane(seed=8)
    stored = zarr.create_array(store={}, shape=plane.shape, chunks=(64, 64), dtype=plane.dtype)
    stored[:] = plane
    prompts = [ObjectPrompt(points=[Point(200, 300)]), ObjectPrompt(boxes=[Box(20, 20, 60, 90)])]
    answers = {}
    for name, data in {"numpy": plane, "dask": da.from_array(plane, chunks=(100, 70)), "zarr": stored}.items():
        predictor = TiledPredictor(model, tile=TILE, halo=HALO)
        predictor.set_image(data)
        answers[name] = [r.mask for r in predictor.predict(prompts)]
    for name in ("dask", "zarr"):
        assert all(np.array_equal(a, b) for a, b in zip(answers[name], answers["numpy"]))
    # On a plane large enough to be sampled, the normalisation does not depend on the storage either.
    big = _plane((1200, 1100), seed=10)
    stored_big = zarr.create_array(store={}, shape=big.shape, chunks=(256, 256), dtype=big.dtype)
    stored_big[:] = big
    limits = [sample_limits(PlaneSource(data), sample_pixels=2**16)
              for data in (big, da.from_array(big, chunks=(300, 500)), stored_big)]
    assert all(np.array_equal(np.asarray(other), np.asarray(limits[0])) for other in limits[1:])
    rgb = np.stack([plane, plane // 2, plane // 3], axis=0)  # channels first
    predictor = TiledPredictor(model, tile=TILE, halo=HALO)
    predictor.set_image(da.from_array(rgb, chunks=(3, 64, 64)), channel_axis=0, channels=[2, 0])
    assert predictor.predict(prompts[0])[0].mask.shape == (416, 416)


def test_a_click_on_a_lazy_plane_reads_a_small_part_of_it(model):
    plane = _plane((2048, 2048), seed=9)
    source = CountingArray(plane)
    lazy = da.from_array(source, chunks=(256, 256))
    predictor = TiledPredictor(model, tile=TILE, halo=HALO, sample_pixels=2**14)
    predictor.set_image(lazy)
    assert source.pixels_read <= 1  # dask may probe one element; nothing else is read
    predictor.predict(ObjectPrompt(points=[Point(1000, 1500)]))
    # One 128 x 128 window and 16 patches of 32 x 32 for the normalisation, never the plane.
    assert 0 < source.pixels_read <= 128 * 128 + 2**14 + 1
    # Each sampling patch lies in one chunk of a power-of-two chunking, whatever the storage.
    regions = sample_regions(PlaneSource(plane), 2**14)
    assert len(regions) == 16 and all(r.shape == (32, 32) for r in regions)
    assert all(r.y0 // 256 == (r.y1 - 1) // 256 and r.x0 // 256 == (r.x1 - 1) // 256 for r in regions)


def test_bad_input_is_refused_clearly(model):
    predictor = TiledPredictor(model, tile=TILE, halo=HALO)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(ObjectPrompt(points=[Point(1, 1)]))
    multichannel = CountingArray(np.zeros((5, 400, 400), dtype=np.uint16))
    with pytest.raises(ValueError, match="5 channels: choose"):
        predictor.set_image(multichannel, channel_axis=0)
    assert multichannel.pixels_read == 0  # refused before reading anything
    with pytest.raises(ValueError, match="2D plane"):
        predictor.set_image(np.zeros((2, 3, 40, 40)))
    with pytest.raises(ValueError, match="limits"):
        predictor.set_image(_plane(), limits=(0, [1, 2]))
    predictor.set_image(_plane())
    with pytest.raises(PromptError, match="object 1: text or a reference alone"):
        predictor.predict([ObjectPrompt(points=[Point(1, 1)]), ObjectPrompt(text="nucleus")])
    with pytest.raises(PromptError, match="outside"):
        predictor.predict(ObjectPrompt(points=[Point(500, 1)]))
    with pytest.raises(ValueError, match="tile > 2 \\* halo"):
        TiledPredictor(model, tile=128, halo=64)


def test_predictor_for_tiles_only_planes_much_larger_than_the_model_input(model):
    assert type(predictor_for(model, (1024, 800), tile=512)) is SeemPredictor
    assert type(predictor_for(model, (1025, 800), tile=512)) is TiledPredictor
    assert type(predictor_for(model, (3, 900, 2000), channel_axis=0, tile=512, halo=32)) is TiledPredictor
    assert type(predictor_for(model, (600, 600, 3000), tile=512, box_margin=None)) is SeemPredictor
    tiled = predictor_for(model, (5000, 5000), tile=256, halo=32, scale=0.5)
    assert (tiled.tile_px, tiled.halo_px) == (512, 64)
