"""The promptable engine, usable without napari: image preparation, the predictor, video propagation."""

from .image import PreparedImage, prepare_image
from .predictor import EverythingResult, ObjectResult, SeemPredictor
from .video import FrameResult, VideoSession

__all__ = [
    "EverythingResult",
    "FrameResult",
    "ObjectResult",
    "PreparedImage",
    "SeemPredictor",
    "VideoSession",
    "prepare_image",
]
