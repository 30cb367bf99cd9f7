"""Package a trained checkpoint as the embedded default model, with its whole making on record.

The shipped weights come from several training stages, each started from the previous one's
checkpoint. ``python -m napari_seem.training.release FINAL.pt --stage STAGE1.pt ... --eval E.json ...
--out FILE`` writes FINAL's weights and record plus:

* ``lineage``: every earlier stage's record (command, code revision, data, seed, metrics without the
  loss history, creation time), oldest first, so the shipped file says how to remake it;
* ``evaluation``: the summaries of ``napari-seem eval`` JSON reports on held-out data (what
  ``napari-seem eval`` measured, the traces left out);
* ``release``: when and from which code it was packaged.

The weights are not touched: the packaged model decodes exactly as FINAL does.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import _read, code_revision, read_record

RECORD_KEYS = ("command", "code_revision", "created", "data", "seed", "metrics", "training", "torch_version")


def stage_summary(path: str | Path) -> dict:
    """One stage's record without the weights and the per-step loss history."""
    record = read_record(path)
    summary = {k: record[k] for k in RECORD_KEYS if k in record}
    if isinstance(summary.get("metrics"), dict):
        summary["metrics"] = {k: v for k, v in summary["metrics"].items() if k != "history"}
    return {"file": Path(path).name, **summary}


def stage_lineage(path: str | Path) -> list[dict]:
    """A stage's own summary, after its lineage when it is a packaged model (fine-tuning a shipped
    default model continues its lineage)."""
    return list(read_record(path).get("lineage", [])) + [stage_summary(path)]


def evaluation_summary(path: str | Path) -> dict:
    """An ``napari-seem eval`` JSON report without per-object traces or per-frame rows."""
    report = json.loads(Path(path).read_text())

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("traces", "frames", "per_frame")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {"file": Path(path).name, **strip(report)}


def package(final: str | Path, out: str | Path, stages: Sequence[str | Path] = (),
            evaluations: Sequence[str | Path] = ()) -> Path:
    """Write ``final`` with ``lineage``/``evaluation``/``release`` added to ``out`` (atomically)."""
    payload = _read(final)
    if "seem_config" not in payload:
        raise ValueError(f"{final} is not a napari-seem training checkpoint")
    payload["lineage"] = [entry for s in stages for entry in stage_lineage(s)]
    payload["evaluation"] = [evaluation_summary(e) for e in evaluations]
    payload["release"] = {"packaged_from": Path(final).name, "code_revision": code_revision()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("final", help="the last stage's checkpoint (its weights are shipped)")
    parser.add_argument("--stage", action="append", default=[], help="an earlier stage's checkpoint, oldest first")
    parser.add_argument("--eval", action="append", default=[], help="a napari-seem eval JSON report")
    parser.add_argument("--out", required=True, help="where to write the packaged model")
    args = parser.parse_args(argv)
    path = package(args.final, args.out, args.stage, args.eval)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
