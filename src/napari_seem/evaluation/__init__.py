"""Evaluation protocols: simulated clicks (NoC, mIoU per click) and propagation (J, F, J&F)."""

from .clicks import Click, first_click, next_click
from .interactive import InteractiveReport, evaluate_interactive, number_of_clicks, run_object, summarize
from .propagation import PropagationReport, boundary_f, evaluate_propagation

__all__ = [
    "Click",
    "InteractiveReport",
    "PropagationReport",
    "boundary_f",
    "evaluate_interactive",
    "evaluate_propagation",
    "first_click",
    "next_click",
    "number_of_clicks",
    "run_object",
    "summarize",
]
