"""Checkpoints written by our training: the weights plus everything needed to rebuild and audit them.

A trained checkpoint is a ``torch.save`` dict readable with ``weights_only=True``::

    {"format": "napari-seem-trained/1",
     "state_dict": {...},            # strict SEEM keys (model.checkpoint.load_checkpoint reads it)
     "seem_config": {...},           # the SeemConfig as nested dicts
     "data": [...],                  # dataset descriptions: paths, names, counts, held-out items
     "seed": 0, "code_revision": {...}, "command": "...",
     "metrics": {...}, "training": {...}, "created": "...", "torch_version": "..."}

Official SEEM checkpoints (flat state dicts) have no ``seem_config``; :func:`load_model` loads
either kind.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_seem.model import SeemModel, build_seem, load_checkpoint
from napari_seem.model.checkpoint import CheckpointError, config_from_dict, read_checkpoint

FORMAT = "napari-seem-trained/1"


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and paths -> dicts, lists and strings (JSON- and ``weights_only``-safe)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def code_revision() -> dict:
    """``{"git": commit or None, "dirty": bool or None, "version": package version}`` of this code."""
    root = Path(__file__).resolve().parent
    revision = {"git": None, "dirty": None, "version": _version()}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10)
            revision["git"] = sha.stdout.strip()
            revision["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass  # no git here (an installed package): the version says which code it was
    return revision


def _version() -> str:
    try:
        return importlib.metadata.version("napari-seem")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def save_trained(path: str | Path, model: SeemModel, **record: Any) -> Path:
    """Write ``model``'s weights and config plus ``record`` (data, seed, metrics, command, ...)
    atomically to ``path`` (a half-written file never replaces a good one). The code revision is
    taken now unless ``record`` gives one (the training loop records it when it starts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "seem_config": to_plain(model.cfg),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "code_revision": code_revision(),
        **{k: to_plain(v) for k, v in record.items()},
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def read_record(path: str | Path) -> dict:
    """A trained checkpoint's contents without the weights."""
    payload = _read(path)
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _read(path: str | Path) -> dict:
    payload = read_checkpoint(path)  # a plain sentence for a missing, foreign or damaged file
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dict")
    return payload


def is_trained_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint written by :func:`save_trained` (it carries its config)."""
    return "seem_config" in _read(path)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> SeemModel:
    """Rebuild the model a trained checkpoint describes and load its weights strictly (eval mode)."""
    return _from_payload(_read(path), path).to(device).eval()


def _from_payload(payload: dict, path) -> SeemModel:
    if "seem_config" not in payload:
        raise CheckpointError(f"{path} has no 'seem_config': not a napari-seem training checkpoint "
                              "(an official SEEM file loads with build_seem(variant) + load_checkpoint)")
    model = build_seem(config_from_dict(payload["seem_config"]))
    load_checkpoint(model, {"state_dict": payload["state_dict"]})
    return model


def load_model(checkpoint: str | Path | None, variant: str = "default_tiny", seed: int = 0) -> tuple[SeemModel, str]:
    """Any model the package can load, and a statement of its weights: a trained checkpoint (its own
    config), an official checkpoint of preset ``variant``, or random weights of ``variant``. The
    file is read once."""
    if checkpoint is None:
        torch.manual_seed(seed)
        return build_seem(variant), f"RANDOM weights of {variant} (torch seed {seed}): not a real segmentation"
    payload = _read(checkpoint)
    if "seem_config" in payload:
        return _from_payload(payload, checkpoint).eval(), f"trained checkpoint {checkpoint}"
    model = build_seem(variant)
    load_checkpoint(model, payload)
    return model, f"checkpoint {checkpoint} ({variant})"
