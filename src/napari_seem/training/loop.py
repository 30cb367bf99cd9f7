"""``train(TrainConfig) -> Path``: a plain PyTorch training loop for SEEM models.

AdamW (no weight decay on norms, biases and embedding tables), linear warm-up then cosine decay,
gradient-norm clipping, fp32. Runs on the CPU (``threads``) or any torch device (``device``; the
model and batches are moved with ``.to(device)``). A ``callback`` receives a :class:`TrainProgress`
after every step; returning ``False`` stops training cleanly, and the model trained so far is saved
like a finished one (what a GUI's stop button needs). Checkpoints are written every
``checkpoint_every`` steps (to the same file, atomically) and at the end; see
:mod:`napari_seem.training.checkpoint` for what they record.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from napari_seem.loading import auto_device
from napari_seem.model import SeemConfig, SeemModel, build_seem

from .checkpoint import code_revision, load_model, save_trained
from .data import ArrayDataset, Augmentation, FolderDataset, InstanceDataset, MixedDataset, make_batch
from .step import TaskConfig, training_step

CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, for models trained from scratch
MAX_LOGIT_SCALE = math.log(100.0)  # the official grounding clamps exp(logit_scale) at 100
STATE_NAME = "train_state.pt"  # a run's resumable state, beside its checkpoint


@dataclass
class DatasetSpec:
    """One training source: a dataset folder (``path``), in-memory ``(image, labels)`` ``pairs``, or
    ``packed``: ``(file, source index)`` of a packed data file (:mod:`napari_seem.training.pack`).

    ``class_name``: what its objects are (one name, or the vocabulary when labels carry classes);
    ``weight``: its share in the mix; ``channels``/``channel_axis``: the channel choice, as for
    ``prepare_image``; ``names``: names of the in-memory pairs.
    """

    path: str | Path | None = None
    class_name: str = "object"
    weight: float = 1.0
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
    names: Sequence[str] | None = None
    channels: Sequence[int] | int | None = None
    channel_axis: int | None = None
    packed: tuple[str, int] | None = None

    def build(self, holdout: Sequence[str], target_size: int) -> InstanceDataset:
        options = dict(channels=self.channels, channel_axis=self.channel_axis, target_size=target_size)
        if sum(x is not None for x in (self.path, self.pairs, self.packed)) != 1:
            raise ValueError("a DatasetSpec needs one of: a folder path, in-memory pairs, a packed source")
        if self.packed is not None:
            from .pack import PackedDataset

            return PackedDataset(self.packed[0], self.packed[1], self.class_name, exclude=holdout,
                                 target_size=target_size)
        if self.path is not None:
            return FolderDataset(self.path, self.class_name, exclude=holdout, **options)
        kept = [(p, n) for p, n in zip(self.pairs, self.names or [f"array_{i:03d}" for i in range(len(self.pairs))])
                if n not in set(holdout)]
        return ArrayDataset([p for p, _ in kept], self.class_name, [n for _, n in kept], **options)


def packed_specs(path: str | Path) -> list[DatasetSpec]:
    """One :class:`DatasetSpec` per source of a packed file (:mod:`napari_seem.training.pack`), with
    its class and weight."""
    from .pack import read_meta

    return [DatasetSpec(packed=(str(path), k), class_name=s["class_name"], weight=s["weight"])
            for k, s in enumerate(read_meta(path)["sources"])]


@dataclass
class TrainProgress:
    """What the callback sees after each step: the step (1-based) of ``total``, the last step's loss
    parts, a running mean of the loss, the learning rate, the elapsed time and the checkpoint
    written at this step (None if none)."""

    step: int
    total: int
    losses: dict[str, float]
    loss_mean: float
    lr: float
    elapsed_s: float
    checkpoint: Path | None = None

    @property
    def fraction(self) -> float:
        return self.step / max(self.total, 1)


@dataclass
class TrainConfig:
    """Everything a training run needs. ``model``: a preset name or a :class:`SeemConfig`;
    ``init_checkpoint``: start from these weights (a trained or an official checkpoint of that model)
    instead of random ones; ``prompt_similarity``: switch on ``DecoderConfig.prompt_similarity`` (also
    for a checkpoint trained without it). ``holdout``: item names kept out of training (evaluation
    images).
    ``time_limit_s``: stop (and save) after this much wall time. ``snapshots``: also keep a copy of
    every periodic checkpoint (``model_step<N>.pt``). ``resume``: continue from ``out_dir``'s
    ``train_state.pt`` (weights, optimiser, step, random streams, history), written beside every
    checkpoint, when there is one (a run cut off goes on where it stopped). ``command``: recorded as
    the command that made the checkpoint (default: this process's command line)."""

    out_dir: str | Path
    datasets: Sequence[DatasetSpec] = field(default_factory=list)
    holdout: Sequence[str] = ()
    model: str | SeemConfig = "default_tiny"
    init_checkpoint: str | Path | None = None
    steps: int = 1000
    batch_size: int = 4
    target_size: int = 512
    augmentation: Augmentation = field(default_factory=Augmentation)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    snapshots: bool = False
    log_every: int = 10
    time_limit_s: float | None = None
    checkpoint_name: str = "model.pt"
    resume: bool = False
    stop_after: int | None = None
    prompt_similarity: bool = False
    command: str | None = None
    callback: Callable[[TrainProgress], bool | None] | None = None


# ---------------------------------------------------------------------------------------- pieces
def build_model(config: TrainConfig) -> SeemModel:
    """The model to train: the preset/config with random weights (seeded) or ``init_checkpoint``'s.
    ``prompt_similarity`` switches the decoder's prompt-similarity term on (its scale starts at its
    initial value when the checkpoint had none)."""
    torch.manual_seed(config.seed)
    if config.init_checkpoint is not None:
        model = load_model(config.init_checkpoint, config.model)[0]
        if config.prompt_similarity and not model.cfg.decoder.prompt_similarity:
            model = with_prompt_similarity(model)
        return model
    model = build_seem(config.model)
    if config.prompt_similarity and not model.cfg.decoder.prompt_similarity:
        model = build_seem(_prompt_similarity_config(model.cfg))
    with torch.no_grad():  # from scratch: CLIP's temperature, not the official init of exp(1)
        model.predictor.lang_encoder.logit_scale.fill_(CLIP_LOGIT_SCALE)
    return model


def _prompt_similarity_config(cfg: SeemConfig) -> SeemConfig:
    return replace(cfg, decoder=replace(cfg.decoder, prompt_similarity=True))


def with_prompt_similarity(model: SeemModel) -> SeemModel:
    """``model`` with the decoder's prompt-similarity term added: every weight kept, the new scale
    at its initial value (a model trained without it goes on training with it)."""
    out = build_seem(_prompt_similarity_config(model.cfg))
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.endswith("prompt_similarity_scale") for k in missing):
        raise RuntimeError(f"unexpected keys adding prompt similarity: missing {missing}, unexpected {unexpected}")
    return out


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the matrices of linear/conv layers only (not on norms, biases,
    learned queries and embedding tables, as usual for transformers)."""
    no_decay = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, rest = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in no_decay or name.endswith("positional_embedding"):
            rest.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: :func:`napari_seem.loading.auto_device` (CUDA, else MPS, else the CPU); any other
    name as torch spells it."""
    return torch.device(auto_device() if name == "auto" else name)


class _History:
    """Running means of the logged loss parts, flushed every ``every`` steps into ``rows``."""

    def __init__(self, every: int) -> None:
        self.every = max(every, 1)
        self.rows: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0
        self.recent: list[float] = []

    def add(self, step: int, logs: dict[str, float], lr: float, elapsed: float) -> None:
        for key, value in logs.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1
        self.recent = (self.recent + [logs["loss"]])[-50:]
        if self._count == self.every:
            self.flush(step, lr, elapsed)

    def flush(self, step: int, lr: float, elapsed: float) -> None:
        if self._count:
            row = {k: round(v / self._count, 5) for k, v in self._sums.items()}
            self.rows.append({"step": step, "lr": lr, "elapsed_s": round(elapsed, 1), **row})
        self._sums, self._count = {}, 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")


# ---------------------------------------------------------------------------------------- train
class _Run:
    """The state of one training run: model, optimiser, data, random streams, history."""

    def __init__(self, config: TrainConfig) -> None:
        if not config.datasets:
            raise ValueError("no training data: give at least one DatasetSpec")
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cpu" and config.threads:
            torch.set_num_threads(config.threads)
        datasets = [spec.build(config.holdout, config.target_size) for spec in config.datasets]
        self.source = MixedDataset(datasets, [spec.weight for spec in config.datasets])
        self.model = build_model(config).to(self.device).train()
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config.weight_decay), lr=config.lr)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history = _History(config.log_every)
        self.out_path = Path(config.out_dir) / config.checkpoint_name
        self.record = _record(config, self.source)
        self.start = time.perf_counter()
        self.step = 0
        self.lr = learning_rate(0, config)
        self.last: dict[str, float] = {}
        self.elapsed_before = 0.0  # wall time of the runs this one resumes
        self.state_path = Path(config.out_dir) / STATE_NAME
        if config.resume and self.state_path.is_file():
            self.load_state()

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def save_state(self) -> None:
        """Everything needed to continue this run (atomically, beside the checkpoint)."""
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
            "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
            "history": self.history.rows, "recent": self.history.recent, "elapsed_s": self.elapsed,
        }
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        torch.save(state, temporary)
        temporary.replace(self.state_path)

    def load_state(self) -> None:
        state = torch.load(self.state_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.history.rows, self.history.recent = list(state["history"]), list(state["recent"])
        self.elapsed_before = float(state["elapsed_s"])

    def advance(self) -> None:
        """One optimisation step."""
        config, model = self.config, self.model
        self.lr = learning_rate(self.step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        batch = make_batch(self.source, config.batch_size, config.augmentation, self.rng).to(self.device)
        loss, logs = training_step(model, batch, config.tasks, self.rng, self.generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.step + 1}: the loss is {float(loss)} ({logs})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
        self.optimizer.step()
        with torch.no_grad():
            model.predictor.lang_encoder.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
        self.step += 1
        self.last = logs
        self.history.add(self.step, logs, self.lr, self.elapsed)

    def save(self, done: bool, reason: str) -> Path:
        """Write the checkpoint (and with ``snapshots`` a per-step copy of periodic ones)."""
        self.history.flush(self.step, self.lr, self.elapsed)
        metrics = {
            "steps": self.step, "planned_steps": self.config.steps, "wall_time_s": round(self.elapsed, 1),
            "loss_mean_last50": self.history.mean, "stop_reason": reason, "complete": done,
            "history": self.history.rows,
        }
        self.model.eval()
        path = save_trained(self.out_path, self.model, metrics=metrics, **self.record)
        if self.config.snapshots and not done:
            snapshot = self.out_path.with_name(f"{self.out_path.stem}_step{self.step}.pt")
            save_trained(snapshot, self.model, metrics=metrics, **self.record)
        if not done:
            self.save_state()
        self.model.train()
        return path


def train(config: TrainConfig) -> Path:
    """Train as ``config`` says; returns the path of the final checkpoint (also when stopped early)."""
    run = _Run(config)
    reason = "finished"
    if config.time_limit_s is not None:  # the limit counts this process's time, also when resuming
        run.time_limit_at = run.elapsed + config.time_limit_s
    while run.step < config.steps:
        run.advance()
        periodic = config.checkpoint_every and run.step % config.checkpoint_every == 0
        saved = run.save(False, "periodic") if periodic else None
        progress = TrainProgress(run.step, config.steps, dict(run.last), run.history.mean, run.lr, run.elapsed, saved)
        if config.callback is not None and config.callback(progress) is False:
            reason = "stopped by callback"
            break
        if config.stop_after is not None and run.step >= config.stop_after:
            reason = f"stop_after {config.stop_after}"
            break
        if config.time_limit_s is not None and run.elapsed >= run.time_limit_at:
            reason = "time limit"
            break
    return run.save(True, reason)


def _record(config: TrainConfig, source: MixedDataset) -> dict:
    """The checkpoint's description of the run (everything but the weights and metrics)."""
    settings = {k: v for k, v in vars(config).items() if k not in ("callback", "datasets", "model")}
    settings["model"] = config.model if isinstance(config.model, str) else "custom SeemConfig"
    return {
        "data": {"datasets": source.describe(), "holdout": list(config.holdout)},
        "seed": config.seed,
        # Taken when training starts: the code that runs (files may change while it runs).
        "code_revision": code_revision(),
        "command": config.command or " ".join(shlex.quote(a) for a in sys.argv),
        "training": settings,
    }
