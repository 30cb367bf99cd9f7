"""The on-disk feature cache (zarr): hits reproduce a fresh encode exactly and skip it; other weights,
config, image or normalisation miss; corrupted entries are detected, reported and recomputed; writes
are atomic; the size bound evicts the least recently used; precompute (CLI), VideoSession and the
plugin's controller use it."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_seem.engine import SeemPredictor, VideoSession, prepare_image
from napari_seem.engine import feature_cache as fc
from napari_seem.engine.feature_cache import FeatureCache, default_feature_cache, model_fingerprint
from napari_seem.model import build_seem, build_with_weights
from napari_seem.prompts import Box, ObjectPrompt, Point

from tiny import tiny_config

PROMPTS = [ObjectPrompt(points=[Point(50, 40), Point(10, 10, positive=False)]),
           ObjectPrompt(boxes=[Box(30, 20, 70, 60)]), ObjectPrompt(text="cell")]


def _tiny(seed: int = 0, absolute_position: bool = False):
    cfg = tiny_config()
    if absolute_position:  # ours: positions added in prepare_memory, which a hit recomputes
        cfg = replace(cfg, pixel_decoder=replace(cfg.pixel_decoder, absolute_position=True),
                      decoder=replace(cfg.decoder, absolute_position=True))
    torch.manual_seed(seed)
    return build_seem(cfg)


def _plane(shape=(120, 80), seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 4000).astype(np.uint16)


def _count_encodes(model) -> list:
    """Record every ``model.encode`` call (an instance attribute wrapping the real method)."""
    calls, encode = [], model.encode

    def counted(image):
        calls.append(tuple(image.shape))
        return encode(image)

    model.encode = counted
    return calls


def _assert_same(results_a, results_b) -> None:
    for a, b in zip(results_a, results_b, strict=True):
        assert torch.equal(a.logits, b.logits) and np.array_equal(a.mask, b.mask) and a.score == b.score


def _entry(cache: FeatureCache) -> Path:
    (entry,) = cache.entries()
    return entry


# ------------------------------------------------------------------------------------------ hits
@pytest.mark.parametrize("absolute_position", [False, True])
def test_a_hit_skips_the_encode_and_gives_identical_results(tmp_path, absolute_position):
    model = _tiny(absolute_position=absolute_position)
    calls = _count_encodes(model)
    plane = _plane()
    uncached = SeemPredictor(model, target_size=96)
    uncached.set_image(plane)
    first = SeemPredictor(model, target_size=96, cache=FeatureCache(tmp_path))
    first.set_image(plane)
    assert len(calls) == 2 and first.cache.misses == 1 and len(first.cache.entries()) == 1

    cache = FeatureCache(tmp_path)  # a new session on the same folder
    second = SeemPredictor(model, target_size=96, cache=cache)
    second.set_image(plane)
    assert len(calls) == 2 and (cache.hits, cache.misses) == (1, 0)
    assert second.features.backbone == {}  # only encode reads the backbone maps
    _assert_same(uncached.predict(PROMPTS), second.predict(PROMPTS))
    _assert_same(first.predict(PROMPTS), second.predict(PROMPTS))
    everything = [p.segment_everything(["cell", "debris"]) for p in (uncached, second)]
    assert np.array_equal(everything[0].labels, everything[1].labels)
    assert everything[0].scores == everything[1].scores


def test_other_image_normalisation_weights_or_config_miss(tmp_path):
    model = _tiny()
    calls = _count_encodes(model)
    cache = FeatureCache(tmp_path)
    plane = _plane()
    cache.get_or_encode(model, prepare_image(plane, target_size=96))
    cache.get_or_encode(model, prepare_image(plane, target_size=96))
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)

    cache.get_or_encode(model, prepare_image(_plane(seed=1), target_size=96))  # other image
    cache.get_or_encode(model, prepare_image(plane, target_size=96, percentiles=(0.0, 100.0)))  # other stretch
    cache.get_or_encode(model, prepare_image(plane, target_size=64))  # other size
    assert (cache.hits, cache.misses, len(calls)) == (1, 4, 4)

    other_weights = _tiny(seed=1)
    other_calls = _count_encodes(other_weights)
    cache.get_or_encode(other_weights, prepare_image(plane, target_size=96))
    assert (cache.misses, len(other_calls)) == (5, 1)
    with torch.no_grad():  # new weights loaded into the same model object
        model.load_state_dict(other_weights.state_dict())
    cache.get_or_encode(model, prepare_image(plane, target_size=96))
    assert (cache.hits, cache.misses) == (2, 5)  # ... are other_weights' entry
    model.set_mode("v0")  # other config
    cache.get_or_encode(model, prepare_image(plane, target_size=96))
    assert (cache.hits, cache.misses, len(cache.entries())) == (2, 6, 6)


def test_the_weights_are_hashed_once_per_state(monkeypatch):
    model = _tiny()
    hashed = []
    digest = fc._weights_digest
    monkeypatch.setattr(fc, "_weights_digest", lambda tensors: hashed.append(1) or digest(tensors))
    first = model_fingerprint(model)
    assert model_fingerprint(model) == first and len(hashed) == 1
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an in-place update (an optimiser step, a loaded checkpoint)
    assert model_fingerprint(model) != first and len(hashed) == 2
    assert model_fingerprint(_tiny()) == first  # same weights, another object: same fingerprint


# ------------------------------------------------------------------------------------------ integrity
def _flip_chunk_bytes(entry: Path) -> None:
    chunk = next(p for p in sorted((entry / "mask_features").rglob("*")) if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    chunk.write_bytes(bytes(data))


def _delete_array(entry: Path) -> None:
    shutil.rmtree(entry / "multi_scale_1")


def _tamper_attributes(entry: Path) -> None:
    meta_file = entry / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"][fc.ATTRS_NAME]["image_size"] = [64, 96]
    meta_file.write_text(json.dumps(meta))


def _tamper_with_checksums_updated(entry: Path) -> None:
    """A consistent-looking entry whose recorded array checksum is not the data's."""
    meta_file = entry / "zarr.json"
    meta = json.loads(meta_file.read_text())
    attrs = meta["attributes"][fc.ATTRS_NAME]
    attrs["arrays"]["multi_scale_0"]["sha256"] = "0" * 64
    attrs["meta_sha256"] = fc._meta_digest(attrs)
    meta_file.write_text(json.dumps(meta))


def _reshape_array(entry: Path) -> None:
    meta_file = entry / "multi_scale_2" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["shape"] = [1, 3, 2, 16]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [1, 3, 2, 16]
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_flip_chunk_bytes, _delete_array, _tamper_attributes,
                                    _tamper_with_checksums_updated, _reshape_array])
def test_a_damaged_entry_is_detected_reported_and_recomputed(tmp_path, caplog, damage):
    model = _tiny()
    plane = _plane()
    reference = SeemPredictor(model, target_size=96)
    reference.set_image(plane)
    expected = reference.predict(PROMPTS)
    cache = FeatureCache(tmp_path)
    cache.get_or_encode(model, prepare_image(plane, target_size=96))
    damage(_entry(cache))

    calls = _count_encodes(model)
    predictor = SeemPredictor(model, target_size=96, cache=cache)
    with caplog.at_level(logging.WARNING, logger=fc.__name__):
        predictor.set_image(plane)
    assert len(calls) == 1 and cache.rejected == 1 and cache.hits == 0
    assert "not usable" in caplog.text and "encoded again" in caplog.text
    _assert_same(expected, predictor.predict(PROMPTS))

    again = SeemPredictor(model, target_size=96, cache=cache)  # the entry was written anew
    again.set_image(plane)
    assert len(calls) == 1 and cache.hits == 1
    _assert_same(expected, again.predict(PROMPTS))


def test_a_write_that_fails_midway_leaves_no_entry(tmp_path, monkeypatch, caplog):
    model = _tiny()
    cache = FeatureCache(tmp_path)
    prepared = prepare_image(_plane(), target_size=96)
    write = FeatureCache._write_array

    def crash_on_second_array(self, group, name, tensor):
        if name == "multi_scale_0":
            raise OSError("disk full")
        return write(self, group, name, tensor)

    monkeypatch.setattr(FeatureCache, "_write_array", crash_on_second_array)
    with caplog.at_level(logging.WARNING, logger=fc.__name__):
        features = cache.get_or_encode(model, prepared)  # the user still gets the features
    assert features.mask_features.shape[0] == 1 and "disk full" in caplog.text
    assert cache.entries() == [] and not any((tmp_path / ".tmp").iterdir())
    monkeypatch.undo()
    cache.get_or_encode(model, prepared)
    assert len(cache.entries()) == 1 and cache.load(model, prepared) is not None


def test_the_size_bound_evicts_the_least_recently_used(tmp_path):
    model = _tiny()
    images = [prepare_image(_plane(seed=s), target_size=96) for s in range(3)]
    probe = FeatureCache(tmp_path / "probe")
    probe.get_or_encode(model, images[0])
    cache = FeatureCache(tmp_path / "bounded", max_bytes=int(2.5 * probe.size_bytes()))
    for prepared in images[:2]:
        cache.get_or_encode(model, prepared)
        time.sleep(0.02)  # distinct access times
    assert cache.load(model, images[0]) is not None  # a hit: image 0 is now more recent than image 1
    time.sleep(0.02)
    cache.get_or_encode(model, images[2])
    assert [cache.contains(model, p) for p in images] == [True, False, True]
    assert cache.size_bytes() <= cache.max_bytes


def test_bad_cache_settings_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        FeatureCache(tmp_path / "file")
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(tmp_path, max_bytes=0)


# ------------------------------------------------------------------------------------------ users
def _stack(count: int = 3, shape=(48, 40)) -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = (rng.random((count, *shape)) * 500).astype(np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for t in range(count):
        stack[t][(yy - 24) ** 2 + (xx - 12 - t) ** 2 < 64] += 3000
    return stack


def test_video_session_reads_and_fills_the_cache(tmp_path):
    model = _tiny()
    calls = _count_encodes(model)
    frames = _stack(4)
    options = {"lost_iou": 0.0, "lost_score": 0.0}
    first = VideoSession(SeemPredictor(model, target_size=64), frames, cache=FeatureCache(tmp_path), **options)
    first.add_prompts(0, 1, ObjectPrompt(points=[Point(24, 12)]))
    list(first.propagate("forward"))
    assert len(calls) == 4 and len(first.feature_cache.entries()) == 4

    cache = FeatureCache(tmp_path)
    second = VideoSession(SeemPredictor(model, target_size=64, cache=cache), frames, **options)  # the predictor's
    assert second.feature_cache is cache
    second.add_prompts(0, 1, ObjectPrompt(points=[Point(24, 12)]))
    list(second.propagate("forward"))
    assert len(calls) == 4 and cache.hits == 4
    for t in range(4):
        assert np.array_equal(first.results[t][1].mask, second.results[t][1].mask)


def test_precompute_fills_the_cache_and_a_later_predictor_hits(tmp_path, capsys):
    from napari_seem.cli.main import main

    stack = _stack(3)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "yxz.tif", np.moveaxis(stack, 0, -1), photometric="minisblack")
    common = ["--cache", str(tmp_path / "cache"), "--variant", "default_tiny", "--target-size", "64"]
    assert main(["precompute", str(tmp_path / "stack.tif"), *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["planes"], report["hits"], report["misses"]) == (3, 0, 3)
    assert main(["precompute", str(tmp_path / "yxz.tif"), "--axis", "-1", *common]) == 0
    report = json.loads(capsys.readouterr().out)  # the same planes, stacked along the last axis
    assert (report["planes"], report["hits"], report["misses"]) == (3, 3, 0)

    model, _ = build_with_weights("default_tiny")  # what the command built: seed 0
    calls = _count_encodes(model)
    cache = FeatureCache(tmp_path / "cache")
    predictor = SeemPredictor(model, target_size=64, cache=cache)
    predictor.set_image(stack[1])
    session = VideoSession(predictor, stack)
    session.prefetch(2)
    assert calls == [] and cache.hits == 2


def test_precompute_with_a_trained_checkpoint_serves_the_same_model_loaded_elsewhere(tmp_path, capsys):
    from napari_seem.cli.main import main
    from napari_seem.loading import load_model
    from napari_seem.training.checkpoint import save_trained

    save_trained(tmp_path / "model.pt", _tiny(seed=3))
    plane = _plane()
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    assert main(["precompute", str(tmp_path / "plane.tif"), "--model", str(tmp_path / "model.pt"),
                 "--cache", str(tmp_path / "cache"), "--target-size", "96"]) == 0
    assert json.loads(capsys.readouterr().out)["misses"] == 1
    model = load_model(tmp_path / "model.pt")  # as the plugin or a script would load it
    calls = _count_encodes(model)
    predictor = SeemPredictor(model, target_size=96, cache=FeatureCache(tmp_path / "cache"))
    predictor.set_image(plane)
    assert calls == [] and predictor.cache.hits == 1


def test_precompute_reports_bad_input_clearly(tmp_path, capsys):
    from napari_seem.cli.main import main

    assert main(["precompute", str(tmp_path / "missing.tif"), "--cache", str(tmp_path / "c"),
                 "--variant", "default_tiny"]) == 2
    assert "no such image file" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() or FeatureCache(tmp_path / "c").entries() == []


def test_the_plugin_uses_the_default_cache_unless_switched_off(tmp_path, monkeypatch):
    from napari_seem.plugin.controller import SeemController

    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path))
    controller = SeemController()
    controller.use_model(_tiny(), target_size=96)
    predictor = controller.ensure_model()
    assert isinstance(predictor.cache, FeatureCache) and predictor.cache.directory == tmp_path / "features"
    predictor.set_image(_plane())
    assert len(predictor.cache.entries()) == 1
    monkeypatch.setenv(fc.SWITCH_ENV, "0")
    assert default_feature_cache() is None
