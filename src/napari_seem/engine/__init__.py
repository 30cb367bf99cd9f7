"""The promptable engine, usable without napari: image preparation, the predictor, tiling of large
planes, video propagation."""

from .feature_cache import FeatureCache
from .image import PreparedImage, prepare_image
from .point_grid import PointGrid
from .predictor import EverythingResult, ObjectResult, SeemPredictor
from .tiling import TiledObjectResult, TiledPredictor, predictor_for
from .video import FrameResult, VideoSession

__all__ = [
    "EverythingResult",
    "FeatureCache",
    "FrameResult",
    "ObjectResult",
    "PointGrid",
    "PreparedImage",
    "SeemPredictor",
    "TiledObjectResult",
    "TiledPredictor",
    "VideoSession",
    "predictor_for",
    "prepare_image",
]
