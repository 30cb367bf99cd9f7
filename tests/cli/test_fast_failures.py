"""Bad arguments fail fast: a missing input, an empty folder, a bad prompts file or option is
reported in one plain line within 2 s, before torch is imported or a model is loaded (which takes
many seconds: the user would wait for nothing).

Each case runs the real command line in a fresh Python process (a process that already imported
torch would hide the cost), and checks the exit status, the message, the time and that torch was
never imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

LIMIT_S = 2.0

RUN = """
import sys
from napari_seem.cli.main import main
try:
    code = main(sys.argv[1:])
finally:  # also after argparse's own exit
    print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
sys.exit(code)
"""


@pytest.fixture
def files(tmp_path):
    tifffile.imwrite(tmp_path / "cells.tif", np.zeros((32, 32), np.uint8))
    (tmp_path / "empty").mkdir()
    (tmp_path / "prompts.json").write_text(json.dumps({"*": [{"points": [[5, 5]]}]}))
    (tmp_path / "broken.json").write_text('{"cells.tif": [{"points": [[5, 5]]}')  # cut short
    (tmp_path / "wrong.json").write_text(json.dumps({"cells.tif": [{"points": [[5]]}]}))
    return tmp_path


CASES = {
    "missing input": (["segment", "missing.tif", "--prompts", "prompts.json", "--out", "out"],
                      "input not found: missing.tif"),
    "empty folder": (["segment", "empty", "--prompts", "prompts.json", "--out", "out"],
                     "folder empty has no .tif/.tiff/.png files"),
    "prompts file cut short": (["segment", "cells.tif", "--prompts", "broken.json", "--out", "out"],
                               "broken.json"),
    "malformed prompt": (["segment", "cells.tif", "--prompts", "wrong.json", "--out", "out"],
                         "'cells.tif' object 1: points[0]: expected [y, x] or [y, x, label]"),
    "missing checkpoint": (["segment", "cells.tif", "--prompts", "prompts.json", "--out", "out",
                            "--checkpoint", "missing.pt"], "checkpoint not found: missing.pt"),
    "everything on a missing input": (["everything", "missing.tif", "--vocabulary", "cell", "--out", "out"],
                                      "input not found: missing.tif"),
    "everything threshold out of range": (["everything", "cells.tif", "--vocabulary", "cell", "--out", "out",
                                           "--object-threshold", "2"], "must be in [0, 1], got 2"),
    "repeated class name": (["everything", "cells.tif", "--vocabulary", "cell,cell", "--out", "out"],
                            "class names must be unique, repeated: cell"),
    "propagate a missing stack": (["propagate", "missing.tif", "--prompts", "prompts.json", "--out", "out"],
                                  "input not found: missing.tif"),
    "bad axis": (["propagate", "cells.tif", "--prompts", "prompts.json", "--out", "out", "--axis", "5"],
                 "--axis must be 0, 1 or 2"),
    "precompute a missing image": (["precompute", "missing.tif", "--cache", "cache"], "no such image file: missing.tif"),
    "precompute bad channels": (["precompute", "cells.tif", "--channels", "a,b"],
                                "--channels must be comma-separated integers"),
    "demo on a missing image": (["demo", "--image", "missing.tif", "--out", "out"], "--image: file not found"),
    "demo on an unreadable image": (["demo", "--image", "broken.json", "--out", "out"],
                                    "could not be read as an image"),
    "eval on a missing data folder": (["eval", "interactive", "--data", "missing"], "--data missing: no such folder"),
    "eval on a folder without images": (["eval", "interactive", "--data", "empty"], "empty has no images/ folder"),
    "eval propagation on a missing data folder": (["eval", "propagation", "--data", "missing"],
                                                  "--data missing: no such folder"),
    "eval with a missing checkpoint": (["eval", "interactive", "--data", "empty", "--checkpoint", "missing.pt"],
                                       "checkpoint not found: missing.pt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_fail_in_under_2_s_without_torch(files, case):
    argv, message = CASES[case]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=files, capture_output=True, text=True,
                          timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # argparse's own errors come after its usage lines
    assert "Traceback" not in done.stderr
    assert last.startswith("napari-seem") and message in last, done.stderr
    assert "TORCH_NOT_IMPORTED" in done.stdout, f"{case}: torch was imported before the error"
    assert seconds < LIMIT_S, f"{case}: {seconds:.2f} s to report the error"


def test_eval_interactive_checks_its_data_before_loading_a_model(tmp_path, monkeypatch, capsys):
    """``napari-seem eval`` loads no model for arguments that cannot work (those that need the
    folder's item names are checked after torch is imported, still before the model)."""
    from napari_seem.cli.main import main
    from napari_seem.evaluation import cli as eval_cli

    monkeypatch.setattr(eval_cli, "_predictor", lambda args: pytest.fail("the model was loaded first"))
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels").mkdir()
    tifffile.imwrite(tmp_path / "ds" / "images" / "a.tif", np.zeros((16, 16), np.uint8))
    tifffile.imwrite(tmp_path / "ds" / "labels" / "a.tif", np.zeros((16, 16), np.uint16))
    cases = {
        "missing: no such folder": ["--data", str(tmp_path / "missing")],
        "has no images/ folder": ["--data", str(tmp_path)],
        "no images to evaluate": ["--data", str(tmp_path / "ds"), "--names", "b"],
        "checkpoint not found": ["--data", str(tmp_path / "ds"), "--checkpoint", str(tmp_path / "none.pt")],
        "--max-clicks and --threads must be >= 1": ["--data", str(tmp_path / "ds"), "--max-clicks", "0"],
    }
    for message, options in cases.items():
        assert main(["eval", "interactive", *options]) == 2, message
        assert message in capsys.readouterr().err


def test_auto_everything_uses_the_point_grid_for_models_napari_seem_trained(tmp_path):
    """A fine-tuned default model's object queries are as weak as the default's: "auto" picks the
    point grid for it, and the object queries for an official checkpoint."""
    import argparse

    from napari_seem.cli.batch import everything_strategy
    from toy_checkpoint import save_toy_checkpoint, save_toy_official

    def auto(checkpoint=None, variant=None) -> str:
        return everything_strategy("auto", argparse.Namespace(checkpoint=checkpoint, variant=variant))

    assert auto() == "points"
    assert auto(save_toy_checkpoint(tmp_path / "mine.pt")) == "points"
    assert auto(save_toy_official(tmp_path / "official.pt"), variant="focalt_v1") == "queries"
    assert auto(save_toy_official(tmp_path / "official2.pt")) == "queries"
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert auto(tmp_path / "broken.pt") == "queries"  # loading the model then says what is wrong
    assert everything_strategy("queries", argparse.Namespace(checkpoint=None, variant=None)) == "queries"
