"""Loading official SEEM checkpoints strictly.

The released ``seem_*.pt`` files are flat state dicts of the official ``GeneralizedSEEM`` (no
prefix). We also accept a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper and a ``model.`` or
``module.`` key prefix. Every learned tensor must be present with the right shape, and nothing unknown
may be left over; otherwise :class:`CheckpointError` names the offending keys. The two non-learned
buffers (``dilation_kernel``, ``criterion.empty_weight``) may be absent: they keep their defaults.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

NON_LEARNED_KEYS = ("dilation_kernel", "criterion.empty_weight")
_WRAPPER_KEYS = ("model", "state_dict", "module")
_PREFIXES = ("model.", "module.")
_MAX_LISTED = 12


class CheckpointError(ValueError):
    """A file that is not a usable SEEM checkpoint for this model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict (wrappers and prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path} ({size:,} bytes) is not a readable PyTorch checkpoint; it may be truncated or "
            f"not a checkpoint at all ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {_listing(not_tensors)}")
    state = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` unless ``state`` matches the model's keys and shapes exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in NON_LEARNED_KEYS]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches: {_listing(wrong_shape)}")
    if problems:
        raise CheckpointError("checkpoint does not match this SEEM model:\n  " + "\n  ".join(problems))


def load_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load an official SEEM checkpoint (a path or a state dict) into ``model`` strictly; returns ``model``."""
    if isinstance(path_or_state, Mapping):
        state = _unwrap(path_or_state, Path("<state dict>"))
    else:
        state = read_state_dict(path_or_state)
    check_state_dict(model, state)
    full = dict(model.state_dict())
    full.update(state)
    model.load_state_dict(full, strict=True)
    return model


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
