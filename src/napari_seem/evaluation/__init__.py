"""Evaluation protocols: simulated clicks (NoC, mIoU per click) and propagation (J, F, J&F).

The names below are imported on first use (PEP 562), so ``napari-seem eval`` can check its
arguments before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Click": "clicks",
    "first_click": "clicks",
    "next_click": "clicks",
    "InteractiveReport": "interactive",
    "evaluate_interactive": "interactive",
    "number_of_clicks": "interactive",
    "run_object": "interactive",
    "summarize": "interactive",
    "PropagationReport": "propagation",
    "boundary_f": "propagation",
    "evaluate_propagation": "propagation",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
