"""Batch test fixtures: a tiny trained checkpoint that worker processes can load, and an input folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_seem.model import build_seem
from napari_seem.training.checkpoint import save_trained

from batch_inputs import write_inputs
from tiny import tiny_config


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny model saved as a training checkpoint (it carries its config), random weights (seed 0)."""
    torch.manual_seed(0)
    return save_trained(tmp_path_factory.mktemp("model") / "tiny.pt", build_seem(tiny_config()), seed=0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return write_inputs(tmp_path_factory.mktemp("batch"))
