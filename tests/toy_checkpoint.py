"""A small napari-seem training checkpoint for tests that need one on disk (the embedded default
model, the fine-tuning widget's starting point): the toy config with seeded random weights, saved
by ``save_trained`` with a record like a real training run's."""

from __future__ import annotations

from pathlib import Path

from tiny import tiny_config

RECORD = {
    "command": "napari-seem train --data toy_cells:nucleus --steps 7",
    "data": {"datasets": [{"kind": "folder", "path": "/data/toy_cells", "count": 3, "vocabulary": ["nucleus"]}],
             "holdout": []},
    "metrics": {"steps": 7, "planned_steps": 7, "loss_mean_last50": 1.25, "stop_reason": "finished",
                "complete": True, "history": []},
    "training": {"model": "default_tiny", "init_checkpoint": None},
    "seed": 5,
}


def save_toy_checkpoint(path: Path, seed: int = 5, **record) -> Path:
    """Write the toy model (seed ``seed``) as a training checkpoint at ``path``."""
    import torch

    from napari_seem.model import build_seem
    from napari_seem.training import save_trained

    torch.manual_seed(seed)
    return save_trained(path, build_seem(tiny_config()), **{**RECORD, **record})


def save_toy_official(path: Path, seed: int = 6) -> Path:
    """The toy model's bare state dict, the way the official SEEM checkpoints are stored."""
    import torch

    from napari_seem.model import build_seem

    torch.manual_seed(seed)
    torch.save(build_seem(tiny_config()).state_dict(), path)
    return path
