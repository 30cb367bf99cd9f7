"""Test configuration: ``src/`` importable without installing, and ``tests/`` importable for the
shared helpers (``tiny``, ``model.parity``)."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
try:
    import napari_seem  # noqa: F401
except ImportError:
    sys.path.insert(0, str(TESTS.parent / "src"))
