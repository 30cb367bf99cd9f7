"""Parity and structure tests for the FocalNet backbone and the transformer-encoder pixel decoder.

Numerical parity uses the official SEEM v1 focal-T fixture ``a_generic.npz`` produced with the
deterministic "seem-parity-fill-v1" weights (see /work/shared/parity/FIXTURES.md).
Fixtures dir: env var ``SEEM_PARITY_FIXTURES``, default ``<repo>/../shared/parity/fixtures``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
try:
    import napari_seem  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(REPO_ROOT / "src"))

from napari_seem.model.focalnet import FocalNet  # noqa: E402
from napari_seem.model.pixel_decoder import TransformerEncoderPixelDecoder  # noqa: E402

FIXTURES_DIR = Path(
    os.environ.get("SEEM_PARITY_FIXTURES", str(REPO_ROOT / ".." / "shared" / "parity" / "fixtures"))
).resolve()
SEEM_DIR = FIXTURES_DIR.parent.parent / "seem"  # .../shared/seem next to .../shared/parity
MANIFEST_T = SEEM_DIR / "keys_focalt_v1.tsv"
MANIFEST_L = SEEM_DIR / "keys_focall_v1.txt"

BB_PREFIX = "backbone."
PD_PREFIX = "sem_seg_head.pixel_decoder."
REL_TOL = 1e-4  # max abs err <= REL_TOL * max |reference|

FOCAL_L_KW = dict(embed_dim=192, depths=(2, 2, 18, 2), focal_levels=(4, 4, 4, 4), variant="focal")

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES_DIR / "a_generic.npz").is_file() or not (FIXTURES_DIR.parent / "fill_weights.py").is_file(),
    reason=f"SEEM parity fixtures not found in {FIXTURES_DIR} (set SEEM_PARITY_FIXTURES)",
)


def _manifest_subset(path: Path, prefix: str) -> Dict[str, Tuple[int, ...]]:
    """Keys under ``prefix`` (prefix stripped) -> shape, from either manifest format.

    ``keys_focalt_v1.tsv``: header ``key\\tshape\\t...``, shape as ``AxB``.
    ``keys_focall_v1.txt``: ``key\\t[A, B]``.
    """
    if not path.is_file():
        pytest.skip(f"manifest {path} not found")
    out: Dict[str, Tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or line.startswith("key\t"):
            continue
        key, shape = line.split("\t")[:2]
        if not key.startswith(prefix):
            continue
        shape = shape.strip()
        if shape.startswith("["):
            dims = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
        else:
            dims = tuple(int(s) for s in shape.split("x")) if shape else ()
        out[key[len(prefix):]] = dims
    return out


def _shapes(module: torch.nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _fill(module: torch.nn.Module, prefix: str) -> torch.nn.Module:
    """Load the deterministic parity weights with ``strict=True``; returns the module in eval mode."""
    sys.path.insert(0, str(FIXTURES_DIR.parent))
    try:
        import fill_weights
    finally:
        sys.path.pop(0)
    sd = {k: fill_weights.fill_tensor(prefix + k, v.shape) for k, v in module.state_dict().items()}
    module.load_state_dict(sd, strict=True)
    return module.eval()


@pytest.fixture(scope="module")
def generic_outputs():
    """Run focal-T backbone + pixel decoder on the fixture image; returns (ours, reference npz)."""
    torch.set_num_threads(2)
    ref = np.load(FIXTURES_DIR / "a_generic.npz")
    backbone = _fill(FocalNet(), BB_PREFIX)
    pixdec = _fill(TransformerEncoderPixelDecoder(), PD_PREFIX)
    image = torch.from_numpy(ref["image"]).float()  # [3, 256, 256] RGB 0..255
    mean = torch.from_numpy(ref["pixel_mean"]).float().view(3, 1, 1)
    std = torch.from_numpy(ref["pixel_std"]).float().view(3, 1, 1)
    x = ((image - mean) / std)[None]  # 256 is a multiple of 32: no padding
    with torch.no_grad():
        feats = backbone(x)
        mask_features, enc, multi_scale = pixdec(feats)
    ours = {f"backbone_{k}": v for k, v in feats.items()}
    ours["pixdec_transformer_encoder_features"] = enc
    ours.update({f"pixdec_multi_scale_{i}": m for i, m in enumerate(multi_scale)})
    ours["pixdec_mask_features"] = mask_features
    return ours, ref


PARITY_ARRAYS: List[str] = [
    "backbone_res2", "backbone_res3", "backbone_res4", "backbone_res5",
    "pixdec_transformer_encoder_features",
    "pixdec_multi_scale_0", "pixdec_multi_scale_1", "pixdec_multi_scale_2",
    "pixdec_mask_features",
]


@needs_fixtures
@pytest.mark.parametrize("name", PARITY_ARRAYS)
def test_parity_generic(generic_outputs, name: str) -> None:
    ours, ref = generic_outputs
    expected = ref[name]
    got = ours[name].numpy()
    assert got.shape == expected.shape, (name, got.shape, expected.shape)
    scale = float(np.abs(expected).max())
    rel = float(np.abs(got - expected).max()) / scale
    print(f"\n{name}: shape {list(got.shape)} worst |err| / max|ref| = {rel:.3e}")
    assert rel <= REL_TOL, f"{name}: relative max error {rel:.3e} > {REL_TOL}"


def test_focalt_keys_match_manifest() -> None:
    backbone = FocalNet()
    pixdec = TransformerEncoderPixelDecoder()
    assert _shapes(backbone) == _manifest_subset(MANIFEST_T, BB_PREFIX)
    assert _shapes(pixdec) == _manifest_subset(MANIFEST_T, PD_PREFIX)
    assert len(backbone.state_dict()) == 300
    assert len(pixdec.state_dict()) == 97
    assert backbone.out_channels == [96, 192, 384, 768]


def test_focall_keys_match_manifest_on_meta() -> None:
    with torch.device("meta"):
        backbone = FocalNet(**FOCAL_L_KW)
        pixdec = TransformerEncoderPixelDecoder(in_channels=(192, 384, 768, 1536))
    assert _shapes(backbone) == _manifest_subset(MANIFEST_L, BB_PREFIX)
    assert _shapes(pixdec) == _manifest_subset(MANIFEST_L, PD_PREFIX)
    assert backbone.out_channels == [192, 384, 768, 1536]


@pytest.mark.parametrize("variant", ["focal_dw", "focal"])
def test_non_square_strides(variant: str) -> None:
    torch.manual_seed(0)
    backbone = FocalNet(embed_dim=16, depths=(1, 1, 1, 1), variant=variant).eval()
    pixdec = TransformerEncoderPixelDecoder(backbone.out_channels, conv_dim=32, mask_dim=32,
                                            num_encoder_layers=1, dim_feedforward=64, num_groups=8).eval()
    h, w = 64, 96
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, h, w))
        mask_features, enc, multi_scale = pixdec(feats)
    for i, (name, stride) in enumerate(zip(["res2", "res3", "res4", "res5"], [4, 8, 16, 32])):
        assert feats[name].shape == (1, 16 * 2**i, h // stride, w // stride)
    assert mask_features.shape == (1, 32, h // 4, w // 4)
    assert enc.shape == (1, 32, h // 32, w // 32)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(2, 3), (4, 6), (8, 12)]


def test_tiny_config_runs() -> None:
    torch.manual_seed(0)
    backbone = FocalNet(embed_dim=16, depths=(1, 1, 1, 1)).eval()
    pixdec = TransformerEncoderPixelDecoder(backbone.out_channels, conv_dim=32, mask_dim=32, num_groups=8).eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        mask_features, enc, multi_scale = pixdec(backbone(x))
    assert mask_features.shape == (2, 32, 32, 16)
    assert enc.shape == (2, 32, 4, 2)
    assert [m.shape[1] for m in multi_scale] == [32, 32, 32]
    assert all(torch.isfinite(t).all() for t in [mask_features, enc, *multi_scale])
    # Trainable end to end (the tiny config will be trained later).
    backbone.train()
    pixdec.train()
    mask_features, _, multi_scale = pixdec(backbone(x))
    (mask_features.mean() + sum(m.mean() for m in multi_scale)).backward()
    assert backbone.patch_embed.proj.weight.grad is not None
