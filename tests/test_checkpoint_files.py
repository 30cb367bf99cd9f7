"""A wrong file chosen as a checkpoint fails at once, in one plain sentence; a napari-seem
checkpoint chosen under an official preset loads as what it is.

The plugin's preset entries (``focall_v1`` + Browse...) go through ``build_with_weights``; the
package's entry point through ``napari_seem.load_model``. Building Focal-L alone takes tens of
seconds, so the file must be read and judged before any model is built.
"""

from __future__ import annotations

import logging
import os
import pickle
import time

from dataclasses import replace

import pytest
import torch
from tiny import tiny_config
from toy_checkpoint import save_toy_checkpoint, save_toy_official

import napari_seem
from napari_seem.model import CheckpointError, build_seem, build_with_weights, load_checkpoint
from napari_seem.model.config import BackboneConfig

LIMIT_S = 3.0


class Pickled:
    """Stands for a whole pickled object (e.g. ``torch.save(model)``) instead of a state dict."""


def _bad_files(folder):
    official = save_toy_official(folder / "good.pt")
    data = official.read_bytes()
    legacy = folder / "legacy.pt"
    torch.save({"w": torch.zeros(100)}, legacy, _use_new_zipfile_serialization=False)
    files = {
        "truncated": data[: len(data) // 2],
        "random": os.urandom(300_000),
        "empty": b"",
        "truncated legacy": legacy.read_bytes()[:200],
        "a pickled object": pickle.dumps(Pickled()),
    }
    paths = {}
    for name, content in files.items():
        path = folder / f"{name.replace(' ', '_')}.pt"
        path.write_bytes(content)
        paths[name] = path
    return paths


LOADERS = {
    "plugin preset focall_v1": lambda path: build_with_weights("focall_v1", str(path)),
    "napari_seem.load_model": lambda path: napari_seem.load_model(path, variant="focall_v1"),
}

EXPECTED = {
    "truncated": "is not a readable PyTorch checkpoint: it is truncated or damaged",
    "random": "is not a readable PyTorch checkpoint: it is neither a zip archive nor a pickle",
    "empty": "is not a readable PyTorch checkpoint: the file is empty (0 bytes).",
    "truncated legacy": "is not a readable PyTorch checkpoint: it is truncated or damaged",
    "a pickled object": "is not a readable PyTorch checkpoint of tensors: it holds other Python objects",
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_wrong_file_fails_in_under_3_s_with_one_plain_sentence(tmp_path, loader, caplog):
    for kind, path in _bad_files(tmp_path).items():
        caplog.clear()
        start = time.perf_counter()
        with caplog.at_level(logging.DEBUG, logger="napari_seem"), pytest.raises(CheckpointError) as err:
            LOADERS[loader](path)
        seconds = time.perf_counter() - start
        message = str(err.value)
        assert seconds < LIMIT_S, f"{kind}: {seconds:.1f} s to fail"
        assert message.startswith(str(path)) and EXPECTED[kind] in message, (kind, message)
        assert "\n" not in message and len(message) < 300 and message.endswith((".", ")")), (kind, message)
        for jargon in ("weights_only", "Error", "Traceback", "WeightsUnpickler", "GLOBAL"):
            assert jargon not in message, (kind, message)
        if kind in ("a pickled object", "truncated legacy"):  # torch's own words stay in the log
            assert any(r.exc_info for r in caplog.records), kind


def test_a_napari_seem_checkpoint_under_an_official_preset_loads_as_itself(tmp_path):
    trained = save_toy_checkpoint(tmp_path / "mine.pt")
    start = time.perf_counter()
    model, weights = build_with_weights("focall_v1", str(trained))
    assert time.perf_counter() - start < LIMIT_S  # Focal-L was not built
    saved = torch.load(trained, weights_only=True)
    assert model.cfg == tiny_config()
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in model.state_dict().items())
    assert weights.startswith("a napari-seem model (default_tiny) from") and "not focall_v1" in weights


def test_a_napari_seem_checkpoint_of_the_preset_architecture_keeps_the_preset_mode(tmp_path):
    from napari_seem.training import save_trained

    torch.manual_seed(0)
    path = save_trained(tmp_path / "v1.pt", build_seem(tiny_config("v1")))
    model, weights = build_with_weights(tiny_config("v0"), str(path))
    assert model.cfg.mode == "v0" and weights == f"checkpoint {path}"


def test_a_napari_seem_checkpoint_of_another_architecture_is_named_not_listed(tmp_path):
    trained = save_toy_checkpoint(tmp_path / "mine.pt")
    other = build_seem(replace(tiny_config(), backbone=BackboneConfig(embed_dim=24, depths=(1, 1, 1, 1),
                                                                      focal_levels=(2, 2, 2, 2))))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(other, trained)
    message = str(err.value)
    assert message.startswith(f"{trained} is a napari-seem model (default_tiny), made for another architecture")
    assert "napari_seem.load_model" in message
    assert "\n" not in message and "missing keys" not in message and len(message) < 300
