"""A tiny SEEM configuration for fast behaviour tests (same code, small sizes)."""

from napari_seem.model.config import TINY, SeemConfig


def tiny_config(mode: str = "v1") -> SeemConfig:
    return TINY.with_mode(mode)


NEVER_LOST = {"lost_iou": 0.0, "lost_score": 0.0}  # VideoSession thresholds that never lose a non-empty mask


def video_predictor(target_size: int = 64):
    """The propagation tests' predictor: the tiny v1 model with seed-0 random weights, 64-pixel frames."""
    import torch

    from napari_seem.engine import SeemPredictor
    from napari_seem.model import build_seem

    torch.manual_seed(0)
    return SeemPredictor(build_seem(tiny_config()), target_size=target_size)
