"""Shared helpers for the parity tests: where the official fixtures are, the deterministic weight
fill, and the comparison rule (max abs error <= 1e-4 x max |reference| per array; arrays with a
query axis query by query, see :func:`query_axis`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = Path(
    os.environ.get("SEEM_PARITY_FIXTURES", str(REPO_ROOT / ".." / "shared" / "parity" / "fixtures"))
).resolve()
REL_TOL = 1e-4


def outlier_budget(num_queries: int) -> int:
    """Whole queries allowed off tolerance in a per-query comparison: 1 in 16, at least 1.

    A query whose binarised cross-attention mask has a pixel at sigmoid = 0.5 flips under fp32
    rounding noise (FIXTURES.md section 5). Measured: adding noise of 1e-6 x the maximum to the pixel
    decoder's 3x3 convolutions (below their own fp32 rounding, ~2e-6) put 1, 4 and 5 of the 101
    queries of v0b_interactive_round2_memory off tolerance over three seeds. A wrong model puts most
    queries off, so the budget still catches one.
    """
    return max(1, num_queries // 16)


# Arrays with one row per decoder query, and the axis of their queries. A query whose binarised
# attention mask flips a pixel at sigmoid = 0.5 is off in every one of them at once (its masks, its
# class logits, its caption embedding, at the layer where it flips and every later one), so they are
# all compared query by query, with the same tolerance and outlier budget.
QUERY_AXES: list[tuple[re.Pattern, int]] = [
    (re.compile(r"(round\d+_|aux\d+_)?pred_(logits|captions|masks|maskembs|smasks|smaskembs|stexts|gmasks|gtexts)"), 1),
    (re.compile(r"pred_masks_top\d+"), 1),
    (re.compile(r"(spatial_)?selection_logits"), 1),
    (re.compile(r"decoder_layer\d+_query_state"), 0),
    (re.compile(r"grounding_out_prob"), 0),
]


def query_axis(name: str) -> int | None:
    """The query axis of the fixture array ``name``, or ``None`` when it has none."""
    return next((axis for pattern, axis in QUERY_AXES if pattern.fullmatch(name)), None)


def fixture_paths() -> list[Path]:
    """Every fixture ``.json`` (with its ``.npz``) in the fixtures directory."""
    if not FIXTURES_DIR.is_dir():
        return []
    return sorted(p for p in FIXTURES_DIR.glob("*.json") if p.with_suffix(".npz").is_file())


def fill_weights_module():
    """The official-run weight fill (``fill_weights.py`` next to the fixtures directory)."""
    path = FIXTURES_DIR.parent / "fill_weights.py"
    spec = importlib.util.spec_from_file_location("seem_fill_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filled_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    fill = fill_weights_module()
    return {k: fill.fill_tensor(k, tuple(v.shape)) for k, v in model.state_dict().items()}


@dataclass
class Fixture:
    name: str
    meta: dict
    arrays: dict[str, np.ndarray]


def load_fixture(json_path: Path) -> Fixture:
    meta = json.loads(json_path.read_text())["meta"]
    with np.load(json_path.with_suffix(".npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Fixture(json_path.stem, meta, arrays)


@lru_cache(maxsize=None)
def _arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files if k in ("image", "text_embeddings")}


def find_shared_input(fixture: Fixture, key: str) -> np.ndarray:
    """An input array the fixture does not repeat (``image`` or ``text_embeddings``).

    Fixtures made on the same inputs omit them. An image is found by ``meta.image_sha256_float32``
    when given; text embeddings by the same ``meta.classes`` / ``meta.vocabulary`` when the fixture
    names them. Among matches a
    generic-forward fixture is preferred.
    """
    if key in fixture.arrays:
        return fixture.arrays[key]
    wanted_sha = fixture.meta.get("image_sha256_float32") if key == "image" else None
    vocabulary = (fixture.meta.get("classes"), fixture.meta.get("vocabulary"))
    candidates = []
    for path in sorted(FIXTURES_DIR.glob("*.npz")):
        arrays = _arrays_of(path)
        if key not in arrays:
            continue
        meta = json.loads(path.with_suffix(".json").read_text())["meta"]
        if key == "image" and wanted_sha is not None:
            if hashlib.sha256(arrays[key].astype(np.float32).tobytes()).hexdigest() != wanted_sha:
                continue
        named = vocabulary != (None, None)
        if key == "text_embeddings" and named and (meta.get("classes"), meta.get("vocabulary")) != vocabulary:
            continue
        candidates.append((meta["kind"] != "generic", path))
    if not candidates:
        raise LookupError(f"fixture {fixture.name}: no matching '{key}' array found in {FIXTURES_DIR}")
    return _arrays_of(sorted(candidates)[0][1])[key]


@dataclass
class Comparison:
    name: str
    max_abs_err: float
    ref_max_abs: float
    outlier_queries: list[int]

    @property
    def rel_err(self) -> float:
        return self.max_abs_err / max(self.ref_max_abs, 1e-30)


class Comparer:
    """Collects comparisons of one fixture; ``failures()`` lists the arrays off tolerance."""

    def __init__(self, fixture: Fixture) -> None:
        self.fixture = fixture
        self.results: list[Comparison] = []
        self.problems: list[str] = []

    def __call__(self, name: str, ours, ref_key: str | None = None, per_query_axis: int | None | str = "auto",
                 max_outlier_queries: int | None = None, reference: np.ndarray | None = None) -> None:
        """Compare ``ours`` with the fixture array ``ref_key`` (default ``name``) or ``reference``.

        ``per_query_axis`` (default: :func:`query_axis` of the array's name; ``None``: the whole
        array): compare query by query and allow up to ``max_outlier_queries`` (default
        :func:`outlier_budget`) whole queries off tolerance (a pixel of a binarised attention mask
        flipping at sigmoid = 0.5). The other queries keep the tolerance of the whole array."""
        if per_query_axis == "auto":
            per_query_axis = query_axis(ref_key or name)
        ref = reference if reference is not None else self.fixture.arrays[ref_key or name]
        ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        ours = ours.astype(np.float64).reshape(ref.shape) if ours.size == ref.size else ours
        if ours.shape != ref.shape:
            self.problems.append(f"{name}: shape {ours.shape} vs reference {ref.shape}")
            return
        ref = ref.astype(np.float64)
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        err = np.abs(ours - ref)
        outliers: list[int] = []
        if per_query_axis is not None and ref.size:
            per_query = np.moveaxis(err, per_query_axis, 0).reshape(ref.shape[per_query_axis], -1).max(1)
            outliers = [int(q) for q in np.nonzero(per_query > REL_TOL * scale)[0]]
            inliers = np.delete(np.moveaxis(err, per_query_axis, 0), outliers, axis=0)
            max_err = float(inliers.max()) if inliers.size else 0.0
            budget = outlier_budget(ref.shape[per_query_axis]) if max_outlier_queries is None else max_outlier_queries
            if len(outliers) > budget:
                self.problems.append(f"{name}: {len(outliers)} queries off tolerance: {outliers[:10]}")
        else:
            max_err = float(err.max()) if err.size else 0.0
        if max_err > REL_TOL * scale:
            self.problems.append(f"{name}: max abs err {max_err:.3g} > {REL_TOL} x {scale:.3g}")
        self.results.append(Comparison(name, max_err, scale, outliers))

    def exact(self, name: str, ours, ref_key: str | None = None, reference: np.ndarray | None = None) -> None:
        """Integer / boolean outputs (indices, thresholded masks): must be identical."""
        ref = reference if reference is not None else self.fixture.arrays[ref_key or name]
        ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        ours = ours.reshape(ref.shape) if ours.size == ref.size else ours
        if ours.shape != ref.shape or not np.array_equal(ours.astype(np.float64), ref.astype(np.float64)):
            diff = int((ours != ref).sum()) if ours.shape == ref.shape else "shape"
            self.problems.append(f"{name}: differs from reference ({diff} elements)")
        self.results.append(Comparison(name, 0.0, 1.0, []))

    def thresholded(self, name: str, logits, threshold: float = 0.0) -> None:
        """A binarised output (``logits > threshold``) must equal the reference except at pixels whose
        logit lies within the comparison tolerance of the threshold (those may flip either way)."""
        ref = self.fixture.arrays[name] > 0.5
        logits = logits.detach().cpu().numpy().astype(np.float64).reshape(ref.shape)
        margin = REL_TOL * float(np.abs(logits).max())
        differ = (logits > threshold) != ref
        unexplained = differ & (np.abs(logits - threshold) > margin)
        if unexplained.any():
            self.problems.append(f"{name}: {int(unexplained.sum())} pixels differ away from the threshold")
        self.results.append(Comparison(name, 0.0, 1.0, [int(differ.sum())] if differ.any() else []))

    def report(self) -> str:
        worst = max(self.results, key=lambda c: c.rel_err, default=None)
        lines = [f"[parity] {self.fixture.name} ({self.fixture.meta['kind']}): {len(self.results)} arrays"]
        if worst is not None:
            lines[0] += f", worst relative error {worst.rel_err:.2e} ({worst.name})"
        for c in self.results:
            if c.outlier_queries:
                what = "pixels at the threshold flipped" if c.name in self.fixture.arrays and c.ref_max_abs == 1.0 \
                    else "isolated outlier queries"
                lines.append(f"    {c.name}: {what} {c.outlier_queries}")
        return "\n".join(lines)
