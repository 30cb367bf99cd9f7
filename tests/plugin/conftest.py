"""Fixtures for the dock-widget tests: the plugin's manifest, the tiny test model, a widget on a viewer."""

from __future__ import annotations

import pytest
from seem_helpers import SLOW_TINY, TINY, tiny_loader

from napari_seem.plugin import models


@pytest.fixture(autouse=True)
def feature_cache_in_tmp(tmp_path, monkeypatch):
    """The plugin's on-disk feature cache (on by default) goes to this test's own folder, not ~/.cache."""
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path / "napari-seem-cache"))


@pytest.fixture(scope="session")
def seem_manifest():
    """Register napari-seem's manifest with npe2 (napari 0.9 does not discover plugins in tests)."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    if "napari-seem" not in manager._manifests:
        manager.register(PluginManifest.from_distribution("napari-seem"))
    return manager


@pytest.fixture
def tiny_models():
    """The tests' tiny random model (and a slow variant) in the widget's model menu."""
    sources = [models.ModelSource(TINY, tiny_loader()), models.ModelSource(SLOW_TINY, tiny_loader(0.25))]
    for source in sources:
        models.register_model(source, replace=True)
    yield TINY
    for source in sources:
        models.unregister_model(source.name)


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget shows with ``show_error`` (recorded instead of shown)."""
    shown: list[str] = []
    monkeypatch.setattr("napari_seem.plugin.widget.show_error", shown.append)
    return shown


@pytest.fixture
def seem(make_napari_viewer, seem_manifest, tiny_models, errors):
    """``(viewer, widget)``: the SEEM dock widget opened as a plugin, on the tiny model."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    widget.set_model(TINY)
    # Random weights give faint, unstable masks that propagation would mark lost at once; these
    # tests are about writing, cancelling and undoing propagated frames, so nothing is lost here (nor
    # ended by the z rule: a z stack is carried as a time-lapse; tests of the rule set their own options).
    widget.controller.lost_options = {"lost_iou": 0.0, "lost_score": 0.0, "stack_kind": "time"}
    return viewer, widget
