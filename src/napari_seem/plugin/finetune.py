"""The fine-tuning widget's plan without Qt: settings -> a checked :class:`TrainConfig`, and the run.

:func:`plan_training` (GUI thread, no torch) checks the settings and the training pairs and builds
the :class:`~napari_seem.training.TrainConfig`; :func:`run_training` (worker thread) checks the
starting checkpoint and trains. The starting model is one of:

* ``"default"``: the embedded default model (:mod:`napari_seem.loading`);
* ``"checkpoint"``: a file, a napari-seem training checkpoint (its own model) or an official SEEM
  checkpoint of preset ``variant`` (``focalt_v1``...);
* ``"random"``: random weights of ``model`` (``default_tiny``), i.e. training from scratch.

:func:`train_and_keep` also keeps the result in the user models folder
(:mod:`napari_seem.user_models`), so that it is in the model menu after napari restarts: a copy of
an output file the user chose, or, without one (:func:`staged_output`), the file itself, trained in
a run folder of its own inside the user models folder and moved into it at the end.
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .controller import PluginError
from .training_pairs import TrainingPairs

STARTS = ("default", "checkpoint", "random")
OUTPUT_FOLDER = Path.home() / "napari-seem" / "fine-tuned"  # default_output's folder when none is given


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
    keep: bool = True  # keep the result in the user models folder (train_and_keep)
    name: str | None = None  # its name there (default: the output file's name)


@dataclass(frozen=True)
class FinetuneResult:
    """What a run left: ``checkpoint``, the file training wrote (the user's output file, or the kept
    model when the run had none); ``kept``, the model in the user models folder (``None`` when not
    kept: ``keep_error`` says why, ``None`` when keeping was not asked)."""

    checkpoint: Path
    kept: Any = None  # a napari_seem.user_models.UserModel
    keep_error: str | None = None


def default_output(stem: str, folder: Path = OUTPUT_FOLDER, now: datetime.datetime | None = None) -> Path:
    """A fresh output path ``<folder>/<stem>-<date-time>.pt`` (never an existing file)."""
    stamp, safe = _stamp(now), _safe(stem)
    path = folder / f"{safe}-{stamp}.pt"
    count = 2
    while path.exists():
        path = folder / f"{safe}-{stamp}-{count}.pt"
        count += 1
    return path


def _stamp(now: datetime.datetime | None) -> str:
    return (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"


def staged_output(stem: str, now: datetime.datetime | None = None) -> Path:
    """The output of a run with no output file of its own: ``<run>/<run>.pt``, ``<run>`` being
    ``<stem>-<date-time>``, a fresh run folder in the user models folder's staging area (the run's
    resumable state goes there too). :func:`train_and_keep` moves the checkpoint into the user
    models folder and removes the run folder."""
    from napari_seem.user_models import staging_dir

    staging = staging_dir()
    base = f"{_safe(stem)}-{_stamp(now)}"
    run, count = base, 2
    while (staging / run).exists():
        run, count = f"{base}-{count}", count + 1
    return staging / run / f"{run}.pt"


def is_staged(path: str | Path) -> bool:
    """Whether ``path`` is a :func:`staged_output` (in a run folder of the staging area)."""
    from napari_seem.user_models import staging_dir

    return Path(path).resolve().parent.parent == staging_dir().resolve()


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


def train_and_keep(config, settings: FinetuneSettings) -> FinetuneResult:
    """:func:`run_training` (worker thread), then keep the checkpoint in the user models folder
    (``settings.keep``). A staged run's folder is removed once its checkpoint is moved out (also
    when training fails). Failing to keep is not failing to train: ``keep_error`` says why."""
    from napari_seem.user_models import add_user_model

    output = Path(config.out_dir) / config.checkpoint_name
    staged = is_staged(output)
    try:
        path = run_training(config, settings)
    except BaseException:
        if staged:
            shutil.rmtree(output.parent, ignore_errors=True)
        raise
    if not settings.keep and not staged:
        return FinetuneResult(path)
    try:
        kept = add_user_model(path, settings.name, move=staged)
    except Exception as err:  # noqa: BLE001 - the checkpoint is written; say why it is not kept
        return FinetuneResult(path, None, f"{type(err).__name__}: {err}")
    if staged:
        shutil.rmtree(output.parent, ignore_errors=True)
        path = kept.path
    return FinetuneResult(path, kept)
