"""Training data packed into one compact file, to carry to another machine (a GPU) and train there.

    napari-seem pack --data ../shared/data/dsb2018_train:nucleus:1.5 \\
        --data ../shared/data/usiigaci_train:cell:1 --out runs/train_data.npz
    napari-seem train --packed runs/train_data.npz --out runs/gpu --device auto ...

The file (a compressed ``.npz``) holds every item of every source with the intensity stretch of
:func:`~napari_seem.engine.image.prepare_image` already applied and rounded to 8 bits, at the
image's own resolution (``s<k>_<j>_image``), its instance labels (``s<k>_<j>_labels``), and a JSON
``meta`` entry naming each source's folder, class, weight and items. Training prepares a packed item
exactly as it prepares the folder's (the same resize to the model's scale), so the two differ only
by that 8-bit rounding. The 586 images of ``dsb2018_train`` and ``usiigaci_train`` pack into 54.5 MB
(52 MiB, in 14 s), where their folders take 73 MB (the phase-contrast images are 16-bit): under the
64 MiB a GPU machine's carry takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_seem.engine.image import normalize_intensity, select_channels

from .data import InstanceDataset, folder_names, read_folder_item

PACK_FORMAT = "napari-seem-packed/1"


def pack(sources: Sequence, out: str | Path, holdout: Sequence[str] = ()) -> Path:
    """Write the folder ``sources`` (:class:`~napari_seem.training.DatasetSpec` with a ``path``) to
    ``out``, leaving out the items named in ``holdout``. Returns ``out``."""
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": PACK_FORMAT, "sources": []}
    for k, spec in enumerate(sources):
        if spec.path is None:
            raise ValueError("only dataset folders can be packed (a DatasetSpec with a path)")
        names = [n for n in folder_names(spec.path) if n not in set(holdout)]
        if not names:
            raise ValueError(f"{spec.path}: no items left to pack")
        for j, name in enumerate(names):
            image, labels = read_folder_item(spec.path, name)
            plane = select_channels(image, spec.channel_axis, spec.channels)
            arrays[f"s{k}_{j}_image"] = np.round(normalize_intensity(plane)).astype(np.uint8)
            labels = np.asarray(labels)
            arrays[f"s{k}_{j}_labels"] = labels.astype(np.uint16 if labels.max(initial=0) < 2**16 else np.int32)
        meta["sources"].append({"path": str(Path(spec.path).resolve()), "class_name": spec.class_name,
                                "weight": spec.weight, "names": names})
    arrays["meta"] = np.array(json.dumps(meta))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    temporary.replace(out)
    return out


def read_meta(path: str | Path) -> dict:
    """The ``meta`` entry of a packed file; a clear error for anything else."""
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path} is not a napari-seem packed data file ({err})") from None
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: unknown packed data format {meta.get('format')!r}")
    return meta


class PackedDataset(InstanceDataset):
    """Source ``index`` of a packed file; items are read when first used."""

    limits = (0.0, 255.0)  # already stretched: the preparation only resizes

    def __init__(self, path: str | Path, index: int, class_name: str | Sequence[str], exclude: Sequence[str] = (),
                 **kwargs) -> None:
        super().__init__(class_name, **kwargs)
        self.path = Path(path)
        source = read_meta(self.path)["sources"][index]
        self.source = source
        self.index = index
        self.keys = [j for j, n in enumerate(source["names"]) if n not in set(exclude)]
        self.names = [source["names"][j] for j in self.keys]
        if not self.names:
            raise ValueError(f"{self.path}: source {index} has no items left to use")
        self._data = np.load(self.path)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        j = self.keys[index]
        return self._data[f"s{self.index}_{j}_image"], self._data[f"s{self.index}_{j}_labels"]

    def describe(self) -> dict:
        return {"kind": "packed", "path": str(self.path.resolve()), "source": self.source["path"],
                **super().describe()}
