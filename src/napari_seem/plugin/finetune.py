"""The fine-tuning widget's plan without Qt: settings -> a checked :class:`TrainConfig`, and the run.

:func:`plan_training` (GUI thread, no torch) checks the settings and the training pairs and builds
the :class:`~napari_seem.training.TrainConfig`; :func:`run_training` (worker thread) checks the
starting checkpoint and trains. The starting model is one of:

* ``"default"``: the embedded default model (:mod:`napari_seem.loading`);
* ``"checkpoint"``: a file, a napari-seem training checkpoint (its own model) or an official SEEM
  checkpoint of preset ``variant`` (``focalt_v1``...);
* ``"random"``: random weights of ``model`` (``default_tiny``), i.e. training from scratch.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .controller import PluginError
from .training_pairs import TrainingPairs

STARTS = ("default", "checkpoint", "random")
OUTPUT_FOLDER = Path.home() / "napari-seem" / "fine-tuned"


@dataclass
class FinetuneSettings:
    """What the user chose. ``time_limit_min``: 0 for none. ``target_size``: the long side the
    planes are resized to (as the predictor does); ``crop_size``: training crops (at most that)."""

    output: str | Path
    start: str = "default"
    checkpoint: str | Path | None = None
    variant: str | None = None
    model: Any = "default_tiny"  # only for start="random": a preset name or a SeemConfig
    class_name: str = "object"
    steps: int = 200
    time_limit_min: float = 0.0
    batch_size: int = 2
    target_size: int = 512
    crop_size: int = 256
    lr: float = 1e-4
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"  # a GPU when there is one (CUDA, then MPS), else the CPU


def default_output(stem: str, folder: Path = OUTPUT_FOLDER, now: datetime.datetime | None = None) -> Path:
    """A fresh output path ``<folder>/<stem>-<date-time>.pt`` (never an existing file)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"
    path = folder / f"{safe}-{stamp}.pt"
    count = 2
    while path.exists():
        path = folder / f"{safe}-{stamp}-{count}.pt"
        count += 1
    return path


def plan_training(pairs: TrainingPairs, settings: FinetuneSettings, description: str = "",
                  callback: Callable[[Any], bool | None] | None = None):
    """The checked :class:`~napari_seem.training.TrainConfig` (``PluginError`` for bad settings)."""
    from napari_seem.training.data import Augmentation  # torch is imported here (fine-tuning needs it)
    from napari_seem.training.loop import DatasetSpec, TrainConfig
    from napari_seem.training.step import TaskConfig

    init, model = _start_model(settings)
    output = _output_path(settings.output)
    if settings.steps < 1:
        raise PluginError(f"steps must be at least 1, got {settings.steps}")
    if not settings.class_name.strip():
        raise PluginError("give the objects a class name (e.g. nucleus): text prompts and segment-everything use it")
    if settings.target_size < 32:
        raise PluginError(f"the image size must be at least 32 pixels, got {settings.target_size}")
    if not pairs.pairs:
        raise PluginError("nothing to train on: no labelled planes")
    crop = min(settings.crop_size, settings.target_size)
    spec = DatasetSpec(pairs=pairs.pairs, names=pairs.names, class_name=settings.class_name.strip(),
                       channels=pairs.channels, channel_axis=pairs.channel_axis)
    return TrainConfig(
        out_dir=output.parent, checkpoint_name=output.name, datasets=[spec], model=model, init_checkpoint=init,
        steps=int(settings.steps), batch_size=int(settings.batch_size), target_size=int(settings.target_size),
        augmentation=Augmentation(crop_size=crop),
        # Absolute-position models: crops stand anywhere in a whole (target_size) image.
        tasks=TaskConfig(position_offset=float(max(settings.target_size - crop, 0))),
        lr=settings.lr, warmup_steps=max(1, min(100, settings.steps // 10)), seed=settings.seed,
        device=settings.device,
        checkpoint_every=max(int(settings.checkpoint_every), 0),
        time_limit_s=settings.time_limit_min * 60 if settings.time_limit_min > 0 else None,
        command=f"napari-seem fine-tuning widget: {description or 'layers'}; start {settings.start}"
                + (f" {init}" if init else ""),
        callback=callback,
    )


def _start_model(settings: FinetuneSettings) -> tuple[Path | None, Any]:
    """``(init_checkpoint, model)`` for the training config."""
    from napari_seem.loading import DEFAULT_PRESET, default_checkpoint, default_problem

    if settings.start == "default":
        problem = default_problem()
        if problem:
            raise PluginError(problem)
        return default_checkpoint(), DEFAULT_PRESET  # a training checkpoint: its own config is used
    if settings.start == "checkpoint":
        if not settings.checkpoint or not str(settings.checkpoint).strip():
            raise PluginError("choose the checkpoint file to start from (Browse…)")
        path = Path(str(settings.checkpoint).strip()).expanduser()
        if not path.is_file():
            raise PluginError(f"checkpoint file not found: {path}")
        return path, official_variant(settings) or DEFAULT_PRESET
    if settings.start == "random":
        return None, settings.model
    raise PluginError(f"unknown starting model {settings.start!r}; choose one of {STARTS}")


def official_variant(settings: FinetuneSettings) -> str | None:
    """The official preset the starting checkpoint is read as: the one chosen, or the one a released
    file's name says (``seem_focalt_v1.pt``); ``None`` for a napari-seem training checkpoint."""
    from napari_seem.loading import official_entry

    if settings.variant:
        return settings.variant
    entry = official_entry(Path(str(settings.checkpoint or "")).name)
    return entry.variant if entry is not None else None


def _output_path(output: str | Path) -> Path:
    text = str(output or "").strip()
    if not text:
        raise PluginError("choose where to save the fine-tuned checkpoint (output file)")
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".pt", ".pth"):
        path = path.with_name(path.name + ".pt")
    if path.exists():
        raise PluginError(f"{path} exists already: choose another output file (nothing is overwritten)")
    if path.parent.exists() and not path.parent.is_dir():
        raise PluginError(f"cannot save into {path.parent}: it is not a folder")
    return path


def run_training(config, settings: FinetuneSettings) -> Path:
    """Train (worker thread): first check that the starting checkpoint can be read as asked, then
    :func:`~napari_seem.training.train`. Returns the checkpoint written (also when stopped)."""
    from napari_seem.loading import read_payload
    from napari_seem.training import train

    if config.init_checkpoint is not None and (settings.start == "default" or official_variant(settings) is None):
        payload = read_payload(config.init_checkpoint)  # memory-mapped: only the keys are read
        if "seem_config" not in payload:
            raise PluginError(f"{Path(config.init_checkpoint).name} is an official SEEM checkpoint: choose its "
                              "model (focalt_v1, focall_v1, focalt_v0 or focall_v0) to start from it")
    return train(config)
