"""Ready models from one call: the embedded default model, napari-seem checkpoints and official ones.

``napari_seem.load_model()`` (this module's :func:`load_model`) returns a SEEM model in eval mode:

* no argument: the **embedded default**, our ``default_tiny`` model trained by
  :mod:`napari_seem.training` and shipped inside the package (:data:`DEFAULT_CHECKPOINT`; the
  environment variable ``NAPARI_SEEM_DEFAULT_MODEL`` points elsewhere, e.g. for tests);
* a napari-seem training checkpoint: rebuilt from the config it carries;
* an official SEEM file with its ``variant`` (``"focalt_v1"``...), or a registry name such as
  ``"seem_focalt_v1"`` / ``"seem_focalt_v1.pt"``, fetched into the cache by
  :mod:`napari_seem.io.checkpoints`.

:func:`default_model_info` reads the embedded model's record (training command, data, metrics)
without reading its weights (the file is memory-mapped), and :func:`describe_trained` turns such a
record into the one-line weights statement the plugin shows.

torch is imported inside the functions only: the plugin imports this module at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "model" / "assets" / "default_tiny.pt"
DEFAULT_ENV = "NAPARI_SEEM_DEFAULT_MODEL"  # overrides DEFAULT_CHECKPOINT (a path)
DEFAULT_PRESET = "default_tiny"


class DefaultModelMissing(FileNotFoundError):
    """The embedded default model's file is not where the package expects it."""


# ---------------------------------------------------------------------------------------- devices
def available_devices() -> dict[str, bool]:
    """Which of ``cpu``, ``cuda`` and ``mps`` this machine's PyTorch can use."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": bool(mps is not None and mps.is_available())}


def auto_device() -> str:
    """What ``device="auto"`` means everywhere: a CUDA GPU when there is one, else Apple's MPS, else the CPU."""
    available = available_devices()
    return next(d for d in ("cuda", "mps", "cpu") if available[d])


# ---------------------------------------------------------------------------------------- the default
def default_checkpoint() -> Path:
    """Where the embedded default model is read from: ``$NAPARI_SEEM_DEFAULT_MODEL`` or
    :data:`DEFAULT_CHECKPOINT`."""
    override = os.environ.get(DEFAULT_ENV, "").strip()
    return Path(override).expanduser() if override else DEFAULT_CHECKPOINT


def default_problem() -> str | None:
    """Why the embedded default cannot be loaded (a missing file), or ``None``; cheap, no torch."""
    path = default_checkpoint()
    if path.is_file():
        return None
    where = f"${DEFAULT_ENV} points to {path}" if os.environ.get(DEFAULT_ENV, "").strip() else f"expected at {path}"
    return (f"the embedded default model ({DEFAULT_PRESET}) is not installed: {where}. Reinstall napari-seem, "
            "or choose another model (an official checkpoint or a file).")


def _checked_default() -> Path:
    problem = default_problem()
    if problem is not None:
        raise DefaultModelMissing(problem)
    return default_checkpoint()


def default_model_info() -> dict[str, Any]:
    """The embedded default's record: everything :func:`~napari_seem.training.save_trained` wrote
    but the weights (``command``, ``data``, ``metrics``, ``seed``, ``code_revision``, ``created``,
    ``seem_config``...), plus ``path`` and ``size_mb``. Raises :class:`DefaultModelMissing` or
    :class:`~napari_seem.model.CheckpointError` (not a napari-seem training checkpoint)."""
    from napari_seem.model.checkpoint import CheckpointError

    path = _checked_default()
    payload = read_payload(path)
    if "seem_config" not in payload:
        raise CheckpointError(f"{path} is not a napari-seem training checkpoint (no 'seem_config'): "
                              "the embedded default model file is damaged; reinstall napari-seem")
    record = {k: v for k, v in payload.items() if k != "state_dict"}
    return {**record, "path": str(path), "size_mb": round(path.stat().st_size / 1e6, 2)}


def load_default_model(device: str = "cpu"):
    """The embedded default model (eval mode) on ``device``."""
    return load_model(_checked_default(), device=device)


# ---------------------------------------------------------------------------------------- any model
def load_model(checkpoint: str | os.PathLike | None = None, device: str = "cpu", variant: str | None = None):
    """A SEEM model in eval mode on ``device``.

    ``checkpoint``: ``None`` for the embedded default; a napari-seem training checkpoint (its own
    config; ``variant`` is not needed); an official SEEM checkpoint file with ``variant`` (a preset:
    ``"focalt_v1"``, ``"focall_v1"``, ``"focalt_v0"``...; a file named like a released one, e.g.
    ``seem_focalt_v1.pt``, needs none); or the name of a released checkpoint (``"seem_focalt_v1"``),
    downloaded once into the cache. Missing, unreadable or mismatched files raise a clear
    ``FileNotFoundError`` / :class:`~napari_seem.model.CheckpointError` / ``ValueError``.
    """
    if checkpoint is None:
        return load_default_model(device)
    path = Path(checkpoint).expanduser()
    official = official_entry(path.name)
    if not path.is_file():
        if official is None or str(checkpoint) != path.name:
            raise FileNotFoundError(f"checkpoint not found: {path} (give a file, or a released checkpoint name "
                                    "such as 'seem_focalt_v1')")
        from napari_seem.io.checkpoints import fetch_checkpoint

        path = fetch_checkpoint(path.name)
    if variant is None and official is not None:
        variant = official.variant
    return _model_from_file(path, variant).to(device).eval()


def official_entry(name: str):
    """The released checkpoint (``io.checkpoints.OfficialCheckpoint``) a file or registry name such
    as ``seem_focalt_v1.pt`` stands for, or ``None``."""
    from napari_seem.io.checkpoints import REGISTRY

    return REGISTRY.get(name.removesuffix(".pt"))


def _model_from_file(path: Path, variant: str | None):
    """Build and strictly load the model a file holds (read once, before anything is built)."""
    from napari_seem.model import build_seem, load_checkpoint
    from napari_seem.model.checkpoint import trained_config

    payload = read_payload(path)
    own = trained_config(payload)
    if own is not None:
        return load_checkpoint(build_seem(own), {"state_dict": payload["state_dict"]})
    if variant is None:
        raise ValueError(f"{path} is an official SEEM checkpoint (a bare state dict): say which model it is "
                         "with variant=, e.g. 'focalt_v1', 'focall_v1', 'focalt_v0' or 'focall_v0'")
    return load_checkpoint(build_seem(variant), payload)


def read_payload(path: str | os.PathLike) -> dict:
    """A checkpoint file's top-level dict, its tensors memory-mapped (nothing big is read until
    used). Raises ``FileNotFoundError``, or :class:`~napari_seem.model.CheckpointError` with one
    plain sentence for a file that is not a checkpoint (torch's detail goes to the log)."""
    from napari_seem.model.checkpoint import CheckpointError, read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = read_checkpoint(path, mmap=True)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dict (found {type(payload).__name__})")
    return payload


# ---------------------------------------------------------------------------------------- statements
def describe_trained(record: dict[str, Any], label: str = "napari-seem") -> str:
    """A one-line statement of a training checkpoint's weights for the user, from its record: the
    model, steps, data, loss and when and from which code it was made."""
    settings = record.get("training") or {}
    model = settings.get("model") or "custom model"
    metrics = record.get("metrics") or {}
    steps = metrics.get("steps")
    parts = [f"{label} {model}, trained"]
    if steps is not None:
        stop = metrics.get("stop_reason")
        parts[0] += f" {steps} steps" + (f" ({stop})" if stop and stop != "finished" else "")
    data = _data_summary(record.get("data") or {})
    if data:
        parts[0] += f" on {data}"
    loss = metrics.get("loss_mean_last50")
    if isinstance(loss, (int, float)) and loss == loss:  # not NaN
        parts.append(f"final loss {loss:.3f}")
    lineage = record.get("lineage") or []
    if lineage:  # a packaged model: its earlier stages are on record
        earlier = sum(int((stage.get("metrics") or {}).get("steps") or 0) for stage in lineage)
        parts.append(f"last of {len(lineage) + 1} training stages ({earlier + int(steps or 0)} steps in all)")
    elif settings.get("init_checkpoint"):
        parts.append(f"started from {Path(str(settings['init_checkpoint'])).name}")
    revision = record.get("code_revision") or {}
    code = (revision.get("git") or "")[:8] or revision.get("version")
    made = (record.get("created") or "")[:10]
    if made or code:
        parts.append("made " + " ".join(p for p in (made, f"(code {code})" if code else "") if p))
    return "; ".join(parts)


def _data_summary(data: dict[str, Any]) -> str:
    """``"dsb2018_subset (nucleus, 18 images), ..."`` from a record's ``data``."""
    pieces = []
    for dataset in data.get("datasets") or []:
        name = Path(dataset["path"]).name if dataset.get("path") else "in-memory images"
        vocabulary = ", ".join(dataset.get("vocabulary") or [])
        count = dataset.get("count")
        details = ", ".join(p for p in (vocabulary, f"{count} images" if count is not None else "") if p)
        pieces.append(f"{name} ({details})" if details else name)
    return ", ".join(pieces)
