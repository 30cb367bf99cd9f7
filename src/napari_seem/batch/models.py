"""The model of a batch, loaded once per worker process and reused by every task that runs there.

Tasks carry a small :class:`ModelSpec` (not the model: a model is hundreds of MB to ship). The first
task on a worker loads it; later tasks with the same spec reuse the predictor, which is held under a
lock for the whole task (a predictor keeps per-image state, so two threads must not share it).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: a trained or official ``checkpoint`` of preset ``variant`` (default
    focalt_v1); without a checkpoint, random weights of ``variant`` (torch seed ``seed``), or the
    embedded default model when ``variant`` is ``None`` too. Also the model input size
    (``target_size``, long side in pixels), the torch threads of a task (``None``: torch's default)
    and the torch ``device``."""

    checkpoint: str | None = None
    variant: str | None = None
    seed: int = 0
    target_size: int = 512
    threads: int | None = None
    device: str = "cpu"

    def cache_key(self) -> tuple:
        """The spec plus the checkpoint file's identity, so a replaced file is loaded again."""
        if self.checkpoint is None:
            return (self, None)
        stat = Path(self.checkpoint).stat()
        return (self, (stat.st_mtime_ns, stat.st_size))


_lock = threading.Lock()
_loaded: dict[tuple, tuple[object, str]] = {}  # at most one entry: cache_key -> (predictor, weights)


@contextmanager
def predictor_for(spec: ModelSpec) -> Iterator[tuple[object, str]]:
    """``(SeemPredictor, statement of its weights)`` for ``spec``, exclusively for the caller."""
    with _lock:
        key = spec.cache_key()
        if key not in _loaded:
            _loaded.clear()  # drop the previous model before loading another (memory)
            _loaded[key] = _load(spec)
        if spec.threads is not None:
            import torch

            torch.set_num_threads(spec.threads)
        yield _loaded[key]


def _load(spec: ModelSpec) -> tuple[object, str]:
    from napari_seem.engine import SeemPredictor
    from napari_seem.loading import default_model_info, describe_trained, load_default_model
    from napari_seem.training.checkpoint import load_model

    if spec.checkpoint is None and spec.variant is None:
        model, weights = load_default_model(), "embedded default: " + describe_trained(default_model_info())
    else:
        model, weights = load_model(spec.checkpoint, spec.variant or "focalt_v1", spec.seed)
    return SeemPredictor(model.to(spec.device).eval(), target_size=spec.target_size), weights


def loaded_specs() -> list[ModelSpec]:
    """Specs of the models loaded in this process (for tests and diagnostics)."""
    return [key[0] for key in _loaded]
