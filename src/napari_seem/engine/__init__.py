"""The promptable engine, usable without napari: image preparation and the predictor."""

from .image import PreparedImage, prepare_image
from .predictor import ObjectResult, SeemPredictor

__all__ = ["ObjectResult", "PreparedImage", "SeemPredictor", "prepare_image"]
