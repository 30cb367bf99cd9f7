"""Test configuration: ``src/`` importable without installing, and ``tests/`` importable for the
shared helpers (``tiny``, ``model.parity``).

It also says, in pytest's header and summary, whether the project's reference data (the
``shared`` folder beside the clone: parity fixtures, key manifests, microscopy sets) was found.
Without it the tests that need it skip, and the run would otherwise look green."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
try:
    import napari_seem  # noqa: F401
except ImportError:
    sys.path.insert(0, str(TESTS.parent / "src"))

# Where the tests look for the reference data (``<repo>/../shared``, as tests/model/parity.py,
# tests/model/test_model.py and tests/engine/test_video.py do).
SHARED = TESTS.parent.parent / "shared"
# Skip reasons of the tests that need the reference data (fixtures, key manifests, shared sets).
SHARED_SKIP = re.compile(r"fixture|manifest|shared|fill_weights", re.IGNORECASE)
HOW_TO_GET = "place the project's shared folder beside the clone (../shared) to run them"


def shared_header(shared: Path = SHARED) -> str:
    """The one header line about the reference data."""
    if shared.is_dir():
        line = f"napari-seem: reference data (../shared) found at {shared}"
    else:
        line = (f"napari-seem: ../shared not found ({shared}): the tests that need the reference data "
                f"(parity fixtures, key manifests, microscopy sets) will be skipped; {HOW_TO_GET}")
    fixtures = os.environ.get("SEEM_PARITY_FIXTURES")
    if fixtures:
        line += f" (parity fixtures from $SEEM_PARITY_FIXTURES={fixtures})"
    return line


def skip_reason(report) -> str:
    """The reason of a skipped test or collector report (``longrepr`` is (path, line, reason))."""
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def shared_summary(skipped_reports, shared: Path = SHARED) -> str | None:
    """The one summary line when the reference data is missing: how many tests skipped for it."""
    if shared.is_dir():
        return None
    n = sum(1 for r in skipped_reports if SHARED_SKIP.search(skip_reason(r)))
    return (f"napari-seem: ../shared not found: {n} test{'' if n == 1 else 's'} that need the reference "
            f"data (parity fixtures, key manifests, microscopy sets) skipped; {HOW_TO_GET}")


def pytest_report_header(config):
    return shared_header()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = shared_summary(terminalreporter.stats.get("skipped", []))
    if line:
        terminalreporter.write_line(line, yellow=True, bold=True)
