"""Reading checkpoint files, and loading official SEEM checkpoints strictly.

The released ``seem_*.pt`` files are flat state dicts of the official ``GeneralizedSEEM`` (no
prefix). We also accept a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper and a ``model.`` or
``module.`` key prefix. Every learned tensor must be present with the right shape, and nothing unknown
may be left over; otherwise :class:`CheckpointError` names the offending keys. The two non-learned
buffers (``dilation_kernel``, ``criterion.empty_weight``) may be absent: they keep their defaults.

A napari-seem checkpoint (``napari_seem.training.save_trained``) carries its model's config
(``seem_config``): :func:`trained_config` reads it back, and loading one into a model of another
architecture says so in one sentence instead of listing keys.

:func:`read_checkpoint` reads any file chosen as a checkpoint. The cheap checks come first (size,
the first bytes, a zip archive's directory), so a wrong, empty or truncated file fails at once,
before any model is built, with one plain sentence; torch's own message goes to the log (debug).
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import BackboneConfig, DecoderConfig, PixelDecoderConfig, SeemConfig, TextConfig

log = logging.getLogger(__name__)

NON_LEARNED_KEYS = ("dilation_kernel", "criterion.empty_weight")
_WRAPPER_KEYS = ("model", "state_dict", "module")
_PREFIXES = ("model.", "module.")
_MAX_LISTED = 12


class CheckpointError(ValueError):
    """A file that is not a usable SEEM checkpoint for this model."""


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any:
    """The object a checkpoint file holds (``torch.load`` with ``weights_only``; tensors
    memory-mapped with ``mmap`` when the file's format allows it).

    Raises :class:`CheckpointError` with one plain sentence for a missing, empty, foreign, truncated
    or unsafe file; the technical detail is logged (``logging`` debug)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    unreadable = f"{path} is not a readable PyTorch checkpoint"
    if size == 0:
        raise CheckpointError(f"{unreadable}: the file is empty (0 bytes).")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"PK":  # torch.save's zip format: the archive's directory is at its very end
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            log.debug("%s: zip directory unreadable", path, exc_info=True)
            raise CheckpointError(f"{unreadable}: it is truncated or damaged ({size:,} bytes, the end of the "
                                  "file is missing), so copy or download it again.") from None
    elif not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):  # nor torch's legacy pickle
        raise CheckpointError(f"{unreadable}: it is neither a zip archive nor a pickle, the two formats "
                              "torch.save writes (a SEEM checkpoint .pt file was expected).")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except pickle.UnpicklingError as err:
        log.debug("torch.load(%s) failed", path, exc_info=True)
        if "weights only" in str(err).lower():
            raise CheckpointError(f"{unreadable} of tensors: it holds other Python objects (e.g. a whole pickled "
                                  "model), which are not loaded, for safety (a state dict was expected).") from None
        raise CheckpointError(f"{unreadable}: it is truncated or damaged ({size:,} bytes).") from None
    except Exception:  # noqa: BLE001 - a damaged pickle fails in many ways (EOF, IndexError...)
        log.debug("torch.load(%s) failed", path, exc_info=True)
        raise CheckpointError(f"{unreadable}: it is truncated or damaged ({size:,} bytes).") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict (wrappers and prefixes removed)."""
    return _unwrap(read_checkpoint(path), Path(path))


# ---------------------------------------------------------------------------- napari-seem checkpoints
_PARTS = {"backbone": BackboneConfig, "pixel_decoder": PixelDecoderConfig, "text": TextConfig, "decoder": DecoderConfig}


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def config_from_dict(values: dict) -> SeemConfig:
    """The :class:`SeemConfig` a napari-seem checkpoint saved as plain dicts (lists back to tuples)."""
    parts = {name: cls(**_tuples(values[name])) for name, cls in _PARTS.items()}
    rest = _tuples({k: v for k, v in values.items() if k not in _PARTS})
    return SeemConfig(**parts, **rest)


def trained_config(payload: Any) -> SeemConfig | None:
    """The config a napari-seem checkpoint's contents carry, or ``None`` for any other checkpoint."""
    if isinstance(payload, Mapping) and isinstance(payload.get("seem_config"), Mapping):
        return config_from_dict(payload["seem_config"])
    return None


def trained_model_name(payload: Mapping) -> str:
    """What a napari-seem checkpoint holds, in a few words (its training preset, if recorded)."""
    from .config import PRESETS

    config = trained_config(payload)
    named = [name for name, preset in PRESETS.items() if preset == config]
    model = (payload.get("training") or {}).get("model") if isinstance(payload.get("training"), Mapping) else None
    return f"a napari-seem model ({model or (named[0] if named else 'its own architecture')})"


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
    """Load an official SEEM checkpoint (a path or a state dict) into ``model`` strictly; returns ``model``.

    A napari-seem checkpoint loads too when it was made for ``model``'s architecture; for another one
    the error says what the file is (``napari_seem.load_model`` rebuilds its own model)."""
    where = "<state dict>" if isinstance(path_or_state, Mapping) else str(path_or_state)
    payload = path_or_state if isinstance(path_or_state, Mapping) else read_checkpoint(path_or_state)
    state = _unwrap(payload, Path(where))
    if trained_config(payload) is not None:
        try:
            check_state_dict(model, state)
        except CheckpointError:
            raise CheckpointError(
                f"{where} is {trained_model_name(payload)}, made for another architecture than this model: load it as a "
                "napari-seem checkpoint, which rebuilds its own model (napari_seem.load_model(path), or the file "
                "without a preset)") from None
    check_state_dict(model, state)
    full = dict(model.state_dict())
    full.update(state)
    model.load_state_dict(full, strict=True)
    return model


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
