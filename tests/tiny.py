"""A tiny SEEM configuration for fast behaviour tests (same code, small sizes)."""

from napari_seem.model.config import TINY, SeemConfig


def tiny_config(mode: str = "v1") -> SeemConfig:
    return TINY.with_mode(mode)
