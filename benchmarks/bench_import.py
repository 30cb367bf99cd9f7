"""Plugin import time: what napari-seem adds to napari's start-up, and that torch stays unimported.

For each module that ``napari.yaml`` names (reader, writer, samples, widget), in fresh interpreters,
prints the median (and min) wall time of ``import <module>``:

* **in napari**: napari's own modules that a running viewer has loaded anyway (``napari.layers``,
  ``napari.qt``, ``napari.utils``, ``qtpy.QtWidgets``) are imported first, so the time is the
  plugin's own share;
* **cold**: nothing imported first (the widget then pays for napari's layers and Qt).

Then it imports all of them in one interpreter and reports whether ``torch`` is in ``sys.modules``.

    .venv/bin/python benchmarks/bench_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_seem" / "napari.yaml"
NAPARI_HOST = ("napari", "napari.layers", "napari.qt", "napari.utils", "napari.utils.notifications", "qtpy.QtWidgets")

_PROBE = """
import importlib, json, sys, time
for name in {preload!r}:
    importlib.import_module(name)
start = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps({{"seconds": time.perf_counter() - start, "torch": "torch" in sys.modules}}))
"""


def manifest_modules() -> list[str]:
    """Modules of the ``python_name`` entries in ``napari.yaml``, in order, without repeats."""
    commands = yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]
    return list(dict.fromkeys(c["python_name"].split(":")[0] for c in commands))


def probe(modules: list[str], preload: tuple[str, ...]) -> dict:
    code = _PROBE.format(preload=list(preload), modules=modules)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per measurement")
    args = parser.parse_args()
    modules = manifest_modules()
    probe(modules, NAPARI_HOST)  # warm the file cache
    print(f"{'module':32s} {'in napari: median ms':>21s} {'min':>6s} {'cold: median ms':>16s} {'min':>6s}")
    for module in modules + ["(all of them)"]:
        names = modules if module == "(all of them)" else [module]
        warm = [probe(names, NAPARI_HOST)["seconds"] for _ in range(args.runs)]
        cold = [probe(names, ())["seconds"] for _ in range(args.runs)]
        print(f"{module:32s} {1e3 * statistics.median(warm):21.0f} {1e3 * min(warm):6.0f} "
              f"{1e3 * statistics.median(cold):16.0f} {1e3 * min(cold):6.0f}")
    print(f"torch imported by the plugin modules: {probe(modules, ())['torch']}")


if __name__ == "__main__":
    main()
