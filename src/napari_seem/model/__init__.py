"""SEEM in plain PyTorch: configs, the model, checkpoint loading.

Entry points: :func:`build_seem` (a preset name or a :class:`SeemConfig`) and :func:`load_checkpoint`.
"""

from .checkpoint import CheckpointError, load_checkpoint
from .config import PRESETS, SeemConfig, get_config
from .seem import ImageFeatures, SeemModel, build_seem, build_with_weights

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ImageFeatures",
    "SeemConfig",
    "SeemModel",
    "build_seem",
    "build_with_weights",
    "get_config",
    "load_checkpoint",
]
