"""Test configuration: make ``src/`` importable when the package is not installed."""

import sys
from pathlib import Path

try:
    import napari_seem  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
