"""Where the plugin's model comes from: a small registry of named model sources, and the device.

A :class:`ModelSource` is a name plus a ``load(checkpoint)`` function returning a
:class:`LoadedModel`. The dock widget lists :func:`available_models` in its model menu, so a new
source (a lab's own fine-tuned weights: :func:`trained_source`) is one :func:`register_model` call
away; tests register the tiny test model the same way. The first entry, the menu's default, is the
embedded default model shipped in the package (:mod:`napari_seem.loading`). After the built-in
entries come the user's fine-tuned models, ``fine-tuned: <name>``, read from the user models folder
(:mod:`napari_seem.user_models`) each time the menu is listed, so they are there after a restart.

Nothing here imports torch at module level: the plugin must open fast, and torch is only needed
once a model is actually loaded (in a worker thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

EMBEDDED_DEFAULT = "embedded default (default_tiny, trained)"
RANDOM_TINY = "random weights (tiny, for trying the UI)"
DEVICES = ("auto", "cpu", "cuda", "mps")
CheckpointUse = Literal["none", "optional", "required"]


class ModelError(ValueError):
    """A model that cannot be loaded as asked (unknown source, bad checkpoint, unavailable device)."""


@dataclass(frozen=True)
class LoadedModel:
    """A ready model, a plain statement of its weights (shown to the user), and the size the
    predictor resizes planes to."""

    model: Any
    weights: str
    target_size: int = 512


@dataclass(frozen=True)
class ModelSource:
    """A named way to get a model. ``load(checkpoint)`` runs in a worker thread; ``checkpoint``
    says whether the source takes a checkpoint file; ``unavailable()`` (cheap, GUI thread) says why
    the source cannot load now (e.g. its file is missing), or returns ``None``."""

    name: str
    load: Callable[[str | None], LoadedModel]
    checkpoint: CheckpointUse = "none"
    description: str = ""
    unavailable: Callable[[], str | None] | None = None

    def problem(self) -> str | None:
        """Why this source cannot be loaded now, or ``None``."""
        return self.unavailable() if self.unavailable is not None else None


_REGISTRY: dict[str, ModelSource] = {}


def register_model(source: ModelSource, replace: bool = False) -> None:
    """Add ``source`` to the model menu (``replace=True`` to redefine an existing name)."""
    if source.name in _REGISTRY and not replace:
        raise ValueError(f"a model source named {source.name!r} exists already (pass replace=True)")
    _REGISTRY[source.name] = source


def unregister_model(name: str) -> None:
    """Remove a registered source (the built-in ones come back on the next :func:`available_models`)."""
    _REGISTRY.pop(name, None)


def available_models() -> dict[str, ModelSource]:
    """All model sources by name, in menu order: built-in ones, the user's fine-tuned models
    (:func:`user_sources`), then those registered in this session."""
    # A registered source may redefine a built-in one (it keeps the built-in's place in the menu).
    return {**_builtin_sources(), **user_sources(), **_REGISTRY}


def user_sources() -> dict[str, ModelSource]:
    """The fine-tuned models kept in the user models folder, as ``fine-tuned: <name>`` sources
    (cheap: the folder and the small records beside the checkpoints are read, no checkpoint)."""
    from napari_seem.user_models import list_user_models

    try:
        kept = list_user_models()
    except OSError:  # an unreadable folder must not take the menu down
        return {}
    return {m.label: trained_source(m.label, m.path, m.describe()) for m in kept}


def remove_user_model(name: str) -> Path:
    """Delete the kept fine-tuned model ``name`` (or its menu label) from the user models folder
    and from this session's registry; returns the checkpoint removed (:class:`ModelError` if none)."""
    from napari_seem.user_models import LABEL_PREFIX, UserModelError
    from napari_seem.user_models import remove_user_model as remove

    try:
        path = remove(name)
    except (UserModelError, OSError) as err:
        raise ModelError(str(err)) from err
    _REGISTRY.pop(LABEL_PREFIX + str(name).removeprefix(LABEL_PREFIX), None)
    return path


def get_source(name: str) -> ModelSource:
    sources = available_models()
    if name not in sources:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sources)}")
    return sources[name]


def _builtin_sources() -> dict[str, ModelSource]:
    from napari_seem.loading import default_problem  # torch-free

    sources = [ModelSource(EMBEDDED_DEFAULT, _load_embedded_default, "none",
                           "napari-seem's own small SEEM (default_tiny), trained on microscopy and shipped "
                           "with the package", unavailable=default_problem),
               ModelSource(RANDOM_TINY, _load_random_tiny, "none",
                           "a tiny SEEM with random weights: fast, segments nothing real")]
    for preset in _preset_names():
        sources.append(ModelSource(preset, _preset_loader(preset), "optional",
                                   f"SEEM {preset}: give an official checkpoint file (random weights without one)"))
    from napari_seem.io.checkpoints import REGISTRY  # a plain table: no torch, no network

    for name, entry in REGISTRY.items():
        sources.append(ModelSource(f"{name} (official, downloaded once)", _official_loader(name), "none",
                                   f"the released {entry.filename} from Hugging Face {entry.repo_id}, fetched into "
                                   "napari-seem's cache on first use and checked by SHA-256"))
    return {s.name: s for s in sources}


def _preset_names() -> tuple[str, ...]:
    # The preset list lives in model.config, whose package imports torch; these names are stable. The
    # demo presets (the official app's decoder layout) are left out: the engine runs v1 and v0 only.
    return ("focalt_v1", "focall_v1", "focalt_v0", "focall_v0")


def tiny_random_config():
    """The architecture of the UI-trial model: SEEM's code at toy sizes (fast on any CPU)."""
    from napari_seem.model.config import TINY

    return TINY


def _load_embedded_default(checkpoint: str | None) -> LoadedModel:
    from napari_seem.loading import default_model_info, describe_trained, load_default_model

    info = default_model_info()  # reads the record only; raises the clear "missing" error first
    return LoadedModel(load_default_model(), describe_trained(info, "embedded default: napari-seem"))


def trained_source(name: str, path: str | Path, description: str = "") -> ModelSource:
    """A model source for a napari-seem training checkpoint (e.g. one the fine-tuning widget wrote);
    its weights statement comes from the checkpoint's record."""
    path = Path(path)

    def load(checkpoint: str | None) -> LoadedModel:
        from napari_seem.loading import describe_trained, load_model, read_payload

        record = {k: v for k, v in read_payload(path).items() if k != "state_dict"}
        return LoadedModel(load_model(path), f"{describe_trained(record)} ({path})")

    def missing() -> str | None:
        return None if path.is_file() else f"checkpoint file not found: {path}"

    return ModelSource(name, load, "none", description or f"a napari-seem training checkpoint: {path}",
                       unavailable=missing)


def _load_random_tiny(checkpoint: str | None) -> LoadedModel:
    from napari_seem.model import build_with_weights

    model, weights = build_with_weights(tiny_random_config())
    return LoadedModel(model, f"tiny model, {weights}")


def _preset_loader(preset: str) -> Callable[[str | None], LoadedModel]:
    def load(checkpoint: str | None) -> LoadedModel:
        from napari_seem.model import build_with_weights

        model, weights = build_with_weights(preset, checkpoint or None)
        return LoadedModel(model, f"SEEM {preset}, {weights}")

    return load


def _official_loader(name: str) -> Callable[[str | None], LoadedModel]:
    def load(checkpoint: str | None) -> LoadedModel:
        from napari_seem.io.checkpoints import REGISTRY, fetch_checkpoint
        from napari_seem.model import build_with_weights

        path = fetch_checkpoint(name)
        model, weights = build_with_weights(REGISTRY[name].variant, str(path))
        return LoadedModel(model, f"official SEEM {REGISTRY[name].variant}, {weights}")

    return load


def check_checkpoint(source: ModelSource, checkpoint: str | None) -> str | None:
    """The checkpoint path to load (``None`` for none), or :class:`ModelError` before anything heavy
    is built: a missing file is reported at once, not after building a large model."""
    checkpoint = (checkpoint or "").strip() or None
    if source.checkpoint == "none":
        return None
    if checkpoint is None:
        if source.checkpoint == "required":
            raise ModelError(f"{source.name} needs a checkpoint file: choose one with 'Browse'")
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    return str(path)


def resolve_device(choice: str) -> str:
    """``"auto"`` -> ``"cuda"`` if available, else ``"mps"`` if available, else ``"cpu"``; an explicit
    choice is checked and refused with a clear :class:`ModelError` when it is not available."""
    from napari_seem.loading import auto_device, available_devices

    choice = (choice or "auto").lower()
    if choice not in DEVICES:
        raise ModelError(f"unknown device {choice!r}; choose one of {', '.join(DEVICES)}")
    if choice == "auto":
        return auto_device()
    if not available_devices()[choice]:
        reason = {"cuda": "no CUDA GPU is visible to this PyTorch build",
                  "mps": "Apple's Metal (MPS) backend is not available on this machine"}[choice]
        raise ModelError(f"device {choice.upper()} is not available: {reason}. Choose CPU or auto.")
    return choice


def load_model(name: str, checkpoint: str | None = None, device: str = "auto") -> LoadedModel:
    """Load the source called ``name`` onto ``device`` (slow: run it off the GUI thread)."""
    source = get_source(name)
    problem = source.problem()
    if problem is not None:
        raise ModelError(problem)
    path = check_checkpoint(source, checkpoint)
    target = resolve_device(device)
    loaded = source.load(path)
    model = loaded.model.to(target) if target != "cpu" else loaded.model
    return LoadedModel(model.eval(), loaded.weights + ("" if target == "cpu" else f", on {target}"),
                       loaded.target_size)
