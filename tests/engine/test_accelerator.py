"""The engine on a GPU, simulated (``tests/fake_accelerator.py``): every prompt kind, memory rounds,
segment-everything, propagation, tiling and the feature cache run with the model on the device and
give the same masks as on the CPU. A CPU tensor meeting a device tensor, ``.numpy()`` on a device
tensor, or (for MPS) float64 on the device would fail these tests, as on real hardware."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_seem.engine import FeatureCache, SeemPredictor, VideoSession
from napari_seem.engine.point_grid import PointGrid
from napari_seem.engine.tiling import TiledPredictor
from napari_seem.model import build_seem
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, ReferenceRegion, Scribble

from fake_accelerator import DeviceMismatch, DeviceTensor, simulated_accelerator
from tiny import tiny_config

SIZE = 96


@pytest.fixture(scope="module")
def cpu_model():
    torch.manual_seed(0)
    return build_seem(tiny_config()).eval()


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = (rng.random((SIZE, SIZE)) * 20000).astype(np.uint16)
    image[_disc(40, 40, 10)] += 30000
    return image


def _disc(cy: int, cx: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2


PROMPTS = {
    "clicks": ObjectPrompt(points=[Point(40, 40), Point(10, 10, positive=False)]),
    "box": ObjectPrompt(boxes=[Box(30, 30, 50, 50)]),
    "scribble": ObjectPrompt(scribbles=[Scribble(((35, 35), (45, 45)))]),
    "mask": ObjectPrompt(masks=[MaskPrompt(_disc(40, 40, 9))]),
    "text": ObjectPrompt(text="nucleus"),
    "click and text": ObjectPrompt(points=[Point(40, 40)], text="cell"),
    "reference": ObjectPrompt(reference=ReferenceRegion(np.roll(_image(), 5, axis=0), _disc(45, 40, 9))),
}


def _everything_the_engine_does(model, cache_dir) -> dict[str, np.ndarray]:
    """Masks and labels of every engine path, by name."""
    out = {}
    predictor = SeemPredictor(model, target_size=64)
    predictor.set_image(_image())
    predictor.set_vocabulary(["nucleus", "cell"])
    for name, prompt in PROMPTS.items():
        first = predictor.predict([prompt])[0]
        out[name] = first.mask
        out[f"{name}, round 2"] = predictor.predict([prompt], previous=[first])[0].mask
    # Thresholds at 0: random weights are never confident, and empty labels would compare nothing.
    out["everything by queries"] = predictor.segment_everything(["nucleus"], object_threshold=0.0).labels
    out["everything by points"] = predictor.segment_everything(
        ["nucleus"], strategy="points", grid=PointGrid(points_per_side=4, min_score=0.0)).labels
    session = VideoSession(predictor, np.stack([np.roll(_image(), t, axis=1) for t in range(4)]),
                           lost_iou=0.0, lost_score=0.0)
    session.add_prompts(2, 1, ObjectPrompt(points=[Point(40, 42)]))
    for _ in session.propagate("both"):
        pass
    out["propagated"] = np.stack([session.labels(t) for t in range(4)])
    tiled = TiledPredictor(model, tile=64, halo=8)
    tiled.set_image(np.tile(_image(), (2, 2)))
    out["tiled"] = tiled.predict([ObjectPrompt(points=[Point(136, 136)])])[0].mask
    for _ in range(2):  # the second predictor reads the first one's features from the disk cache
        cached = SeemPredictor(model, target_size=64, cache=FeatureCache(cache_dir))
        cached.set_image(_image())
    assert cached.cache.hits == 1
    out["from the feature cache"] = cached.predict([PROMPTS["clicks"]])[0].mask
    return out


@pytest.mark.parametrize("mps", [False, True], ids=["cuda", "mps rules"])
def test_every_engine_path_runs_on_the_device_and_matches_the_cpu(cpu_model, tmp_path, mps):
    on_cpu = _everything_the_engine_does(cpu_model, tmp_path / "cpu")
    with simulated_accelerator(mps=mps) as device:
        model = copy.deepcopy(cpu_model).to(device)
        assert isinstance(model.pixel_mean, DeviceTensor)
        on_device = _everything_the_engine_does(model, tmp_path / "device")
    assert on_device.keys() == on_cpu.keys()
    for name, expected in on_cpu.items():
        assert expected.any(), f"{name}: nothing segmented, so nothing is compared"
        np.testing.assert_array_equal(on_device[name], expected, err_msg=name)


def test_the_simulation_catches_what_a_gpu_refuses():
    """The rules these tests rely on: without them a CPU-only engine would pass too."""
    with simulated_accelerator(mps=True) as device:
        x = torch.ones(3, device=device)
        with pytest.raises(DeviceMismatch):
            x + torch.ones(3)
        with pytest.raises(RuntimeError, match="numpy"):
            x.numpy()
        with pytest.raises(TypeError, match="float64"):
            x.double()
        with pytest.raises(RuntimeError, match="generator"):
            torch.rand(3, device=device, generator=torch.Generator().manual_seed(0))
        assert (x + torch.tensor(1.0)).cpu().tolist() == [2.0, 2.0, 2.0]  # a CPU scalar is fine
