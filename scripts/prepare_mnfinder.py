"""Extra fluorescence nuclei for training: the images of the MIT-licensed ``mnfinder`` wheel.

The wheel (``pip download --no-deps mnfinder==1.2.3``, from the package index) carries DAPI/Hoechst
images of RPE1, U2OS, HeLa and HFF cells with nucleus instance masks (``nucleus_masks/*.png``:
the instance id is the blue channel, 0 = background). This script downloads the wheel when it is
not given, and writes every image with its labels as one dataset folder that ``napari-seem train
--data OUT:nucleus:W`` reads (``images/<split>_<set>_<name>.png``, ``labels/...tif``). No image
of it is in any development set.

    python scripts/prepare_mnfinder.py OUT [--wheel mnfinder-1.2.3-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path, PurePosixPath

import numpy as np
import tifffile
from PIL import Image

WHEEL = "mnfinder==1.2.3"


def download(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), WHEEL], check=True)
    return next(folder.glob("mnfinder-*.whl"))


def convert(wheel: Path, out: Path) -> int:
    """Write the wheel's image/nucleus-mask pairs under ``out``; returns how many."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in sorted(names):
            path = PurePosixPath(name)
            if path.parent.name != "nucleus_masks" or path.suffix != ".png":
                continue
            image_name = str(path.parent.parent / "images" / path.name)
            if image_name not in names:
                continue
            labels = np.asarray(Image.open(BytesIO(archive.read(name))))
            labels = labels[..., 2] if labels.ndim == 3 else labels
            if not labels.any():
                continue
            image = np.asarray(Image.open(BytesIO(archive.read(image_name))))
            stem = "_".join(path.parts[-4:-2] + (path.stem,)).replace(" ", "_")
            Image.fromarray(image).save(out / "images" / f"{stem}.png")
            tifffile.imwrite(out / "labels" / f"{stem}.tif", labels.astype(np.uint16), compression="zlib")
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--wheel", type=Path, help="the downloaded wheel (default: download it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download(Path(tmp))
        print(f"{convert(wheel, args.out)} images with nucleus labels written to {args.out}")


if __name__ == "__main__":
    main()
