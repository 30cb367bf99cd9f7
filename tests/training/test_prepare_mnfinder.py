"""``scripts/prepare_mnfinder.py``: the wheel's image / nucleus-mask pairs become a training folder
(ids from the masks' blue channel; files without a partner or without nuclei skipped; the same
name in two splits kept apart)."""

import importlib.util
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from napari_seem.training.data import folder_names, read_folder_item

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_mnfinder.py"


def _png(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_wheel_pairs_become_a_dataset_folder(tmp_path):
    spec = importlib.util.spec_from_file_location("prepare_mnfinder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image = (np.arange(32 * 40) % 251).astype(np.uint8).reshape(32, 40)
    mask = np.zeros((32, 40, 4), np.uint8)
    mask[..., 3] = 255
    mask[2:8, 2:8] = (255, 255, 1, 255)
    mask[20:30, 10:20] = (255, 255, 2, 255)
    wheel = tmp_path / "mnfinder-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for split in ("training-data", "test-data"):  # the same file name in two splits
            archive.writestr(f"mnfinder/{split}/set A/images/1.png", _png(image))
            archive.writestr(f"mnfinder/{split}/set A/nucleus_masks/1.png", _png(mask))
        archive.writestr("mnfinder/training-data/set A/nucleus_masks/2.png", _png(mask))  # no image
        archive.writestr("mnfinder/training-data/set A/images/3.png", _png(image))
        archive.writestr("mnfinder/training-data/set A/nucleus_masks/3.png", _png(np.zeros_like(mask)))  # empty
    out = tmp_path / "out"
    assert module.convert(wheel, out) == 2
    names = folder_names(out)
    assert names == ["test-data_set_A_1", "training-data_set_A_1"]
    read_image, labels = read_folder_item(out, names[1])
    assert np.array_equal(read_image, image)
    assert sorted(np.unique(labels)) == [0, 1, 2] and (labels == 2).sum() == 100
