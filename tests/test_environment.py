"""The test environment itself: pinned CPU torch, no CUDA/torchvision, napari on PyQt6 headless."""

import importlib.metadata as md

import numpy as np
import pytest
import torch

FORBIDDEN = {"torchvision", "torchaudio", "timm", "open-clip-torch", "transformers"}


def _installed():
    return {(d.metadata["Name"] or "").lower() for d in md.distributions()}


def test_torch_is_pinned_build():
    assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU may use a CUDA build")
def test_torch_is_cpu_build_and_needs_no_cuda():
    assert torch.version.cuda is None, f"CUDA build of torch installed: {torch.__version__}"
    nvidia = sorted(n for n in _installed() if n.startswith("nvidia-"))
    assert not nvidia, f"CUDA packages installed: {nvidia}"
    x = torch.randn(4, 3)
    assert (x @ x.T).device.type == "cpu"


def test_no_torchvision_and_co():
    assert not FORBIDDEN & _installed()


def test_napari_imports_with_pyqt6():
    import napari
    import qtpy

    assert napari.__version__.startswith("0.9."), napari.__version__
    assert qtpy.API_NAME == "PyQt6"


def test_headless_viewer_renders(make_napari_viewer):
    # show=True: a hidden viewer's canvas is never drawn (its screenshot is all zeros).
    # Under Xvfb, vispy draws with Mesa's llvmpipe software OpenGL.
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    viewer.add_labels(np.eye(64, dtype=np.uint8))
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[-1] == 4
    assert shot[..., :3].std() > 0, "canvas rendered blank"
