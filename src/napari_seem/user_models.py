"""The user models folder: fine-tuned checkpoints kept across sessions, listed in the model menu.

A fine-tuning run's result is kept here (the fine-tuning widget does it for every run), so it is in
the segmentation widget's model menu after napari restarts, as ``fine-tuned: <name>``. The folder
is ``$NAPARI_SEEM_MODELS_DIR``, by default ``<napari-seem cache>/models``
(``~/.cache/napari-seem/models``, or ``$NAPARI_SEEM_CACHE/models``). Each model is one
napari-seem training checkpoint ``<name>.pt`` with a small ``<name>.json`` beside it: what the
checkpoint's record says (starting model, steps, data, when it was made), so that listing the
folder never reads a checkpoint or imports torch. A ``.pt`` file put there by hand is listed too
(with less said about it).

    from napari_seem import user_models

    kept = user_models.add_user_model("runs/mine/model.pt")      # a copy, under a new unique name
    [m.name for m in user_models.list_user_models()]
    user_models.remove_user_model(kept.name)                      # the copy and its record go

Names are file-system safe and unique: adding never replaces a model that is there (a second
``tuned`` becomes ``tuned-2``). Only torch-free work happens at import and when listing.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS_ENV = "NAPARI_SEEM_MODELS_DIR"
LABEL_PREFIX = "fine-tuned: "
SUFFIX = ".pt"
STAGING = ".training"  # runs in progress write here (hidden; never listed)
_NOT_MODELS = {"train_state"}  # a training run's resumable state, not a model


class UserModelError(ValueError):
    """A model that cannot be kept, found or removed as asked."""


@dataclass(frozen=True)
class UserModel:
    """One kept model. ``model``: its architecture (``default_tiny``, ``focalt_v1``...);
    ``started_from``: the checkpoint it was fine-tuned from (a file name, or ``random weights``);
    ``created``: when it was trained (ISO time; the file's time when unknown); ``weights``: the
    one-line statement of its training; ``origin``: the file it was kept from."""

    name: str
    path: Path
    created: str = ""
    model: str | None = None
    started_from: str | None = None
    steps: int | None = None
    weights: str = ""
    origin: str | None = None

    @property
    def label(self) -> str:
        """Its entry in the model menu."""
        return LABEL_PREFIX + self.name

    @property
    def record_path(self) -> Path:
        return self.path.with_suffix(".json")

    def describe(self) -> str:
        """A line for the menu's tooltip."""
        what = self.weights or f"a napari-seem checkpoint ({self.model or 'model not recorded'})"
        return f"your fine-tuned model: {what}; kept in {self.path}"

    def read_record(self) -> dict[str, Any]:
        """The checkpoint's whole record but the weights (reads the file; imports torch)."""
        from napari_seem.loading import read_payload

        return {k: v for k, v in read_payload(self.path).items() if k != "state_dict"}


def models_dir() -> Path:
    """The user models folder: ``$NAPARI_SEEM_MODELS_DIR``, else ``<napari-seem cache>/models``."""
    override = os.environ.get(MODELS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from napari_seem.io.checkpoints import cache_root  # a plain module: no torch, no network

    return cache_root() / "models"


def staging_dir(folder: Path | None = None) -> Path:
    """Where a fine-tuning run without an output file of its own writes (inside the user models
    folder, so that keeping its result is a rename)."""
    return (folder or models_dir()) / STAGING


def safe_name(text: str) -> str:
    """``text`` as a file-system safe model name (letters, digits, ``-``, ``_``, ``.``)."""
    text = str(text).strip()
    if text.lower().endswith(SUFFIX):
        text = text[: -len(SUFFIX)]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return name or "model"


def list_user_models(folder: Path | None = None) -> list[UserModel]:
    """The kept models, by name (cheap: reads the small records only, never a checkpoint)."""
    folder = folder or models_dir()
    if not folder.is_dir():
        return []
    found = [_entry(path) for path in folder.glob(f"*{SUFFIX}")
             if path.is_file() and not path.name.startswith(".") and path.stem not in _NOT_MODELS]
    return sorted(found, key=lambda m: (m.name.lower(), m.name))


def find_user_model(name: str, folder: Path | None = None) -> UserModel:
    """The kept model called ``name`` (or its menu label ``fine-tuned: name``)."""
    name = str(name).removeprefix(LABEL_PREFIX)
    for model in list_user_models(folder):
        if model.name == name:
            return model
    raise UserModelError(f"no fine-tuned model called {name!r} in {folder or models_dir()}")


def add_user_model(checkpoint: str | os.PathLike, name: str | None = None, move: bool = False,
                   folder: Path | None = None) -> UserModel:
    """Keep the napari-seem training checkpoint ``checkpoint`` in the user models folder under
    ``name`` (default: its file name), made unique (``tuned``, ``tuned-2``...): nothing there is
    ever replaced. A copy, or with ``move`` the file itself (a file in the folder already stays as
    it is: its record is written). Reads the checkpoint's record (torch)
    and refuses a file that is not a napari-seem training checkpoint, before anything is written."""
    source = Path(checkpoint).expanduser()
    record = _checked_record(source)
    folder = folder or models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(name if name is not None else source.name)
    in_place = source.parent.resolve() == folder.resolve() and source.suffix == SUFFIX
    if in_place and (name is None or stem == source.stem):
        path = source  # already there (e.g. a training run's output): only its record is written
    else:
        path = _place(source, folder, stem, move)
    try:
        info = _describe_record(record, path.stem, source)
        temporary = path.with_name(f".{path.stem}.json.tmp")
        temporary.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path.with_suffix(".json"))
    except Exception:  # noqa: BLE001 - the model is kept all the same; it lists with less said
        pass
    return _entry(path)


def remove_user_model(name: str | UserModel, folder: Path | None = None) -> Path:
    """Delete a kept model (its checkpoint and record) from the user models folder; returns the
    checkpoint path removed. Only files in that folder are touched."""
    model = name if isinstance(name, UserModel) else find_user_model(name, folder)
    folder = (folder or models_dir()).resolve()
    if model.path.resolve().parent != folder:
        raise UserModelError(f"{model.path} is not in the user models folder {folder}: not removed")
    model.path.unlink()
    model.record_path.unlink(missing_ok=True)
    return model.path


# ---------------------------------------------------------------------------------------- pieces
def _entry(path: Path) -> UserModel:
    info: dict[str, Any] = {}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            info = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            info = {}
    created = info.get("created") or _file_time(path)
    steps = info.get("steps")
    return UserModel(path.stem, path, str(created), info.get("model"), info.get("started_from"),
                     int(steps) if isinstance(steps, (int, float)) else None, str(info.get("weights") or ""),
                     info.get("origin"))


def _file_time(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return ""
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(timespec="seconds")


def _checked_record(source: Path) -> dict[str, Any]:
    from napari_seem.loading import read_payload

    if not source.is_file():
        raise UserModelError(f"checkpoint not found: {source}")
    payload = read_payload(source)  # memory-mapped: the weights are not read
    if "seem_config" not in payload:
        raise UserModelError(f"{source.name} is not a napari-seem training checkpoint (an official SEEM file?): "
                             "only fine-tuned napari-seem checkpoints can be kept as your models")
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _describe_record(record: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    from napari_seem.loading import describe_trained

    settings = record.get("training") or {}
    init = settings.get("init_checkpoint")
    metrics = record.get("metrics") or {}
    return {
        "name": name,
        "created": record.get("created") or _file_time(source),
        "added": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": settings.get("model"),
        "started_from": Path(str(init)).name if init else ("random weights" if settings else None),
        "steps": metrics.get("steps"),
        "weights": describe_trained(record, "napari-seem"),
        "origin": str(source.resolve()),
    }


def _place(source: Path, folder: Path, stem: str, move: bool) -> Path:
    """Put ``source`` at ``folder/<unique name>.pt`` without ever replacing a file there."""
    if move:
        for path in _candidates(folder, stem):
            try:
                os.link(source, path)  # atomic, and fails rather than replace an existing file
            except FileExistsError:
                continue
            except OSError:  # no hard links here (another file system, FAT...): rename once free
                if _taken(path):
                    continue
                shutil.move(str(source), str(path))
                return path
            source.unlink()
            return path
    temporary = folder / f".{stem}.pt.partial"
    shutil.copyfile(source, temporary)
    try:
        for path in _candidates(folder, stem):
            try:
                os.link(temporary, path)
            except FileExistsError:
                continue
            except OSError:
                if _taken(path):
                    continue
                os.replace(temporary, path)
                return path
            return path
    finally:
        temporary.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover - _candidates never ends


def _candidates(folder: Path, stem: str):
    count = 1
    while True:
        path = folder / f"{stem}{SUFFIX}" if count == 1 else folder / f"{stem}-{count}{SUFFIX}"
        if not path.with_suffix(".json").exists():  # a record left without its model also keeps its name
            yield path
        count += 1


def _taken(path: Path) -> bool:
    return path.exists() or path.with_suffix(".json").exists()
