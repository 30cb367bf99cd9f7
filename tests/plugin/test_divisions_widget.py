"""'new ids for daughters' in the dock widget: a cell that divides in a time-lapse ends there, each
daughter is written with a new id, and the labels' features record its mother (``parent_id``).

The model's step is scripted (the masks a dividing cell gets) so that the division is certain; the
widget, controller, session bookkeeping and the write are the real ones."""

from __future__ import annotations

import numpy as np
import torch

from napari_seem.engine.conversion import ObjectResult
from napari_seem.engine.presence import PresenceSignals
from napari_seem.engine.video import VideoSession

SHAPE = (48, 64)
YY, XX = np.mgrid[: SHAPE[0], : SHAPE[1]]
MOTHER = (YY - 24) ** 2 + (XX - 32) ** 2 <= 100
LEFT, RIGHT = (YY - 24) ** 2 + (XX - 25) ** 2 <= 36, (YY - 24) ** 2 + (XX - 39) ** 2 <= 36
CORNER = (YY < 4) & (XX < 4)  # another object, which does not divide


def scripted_advance(self, sources, frame, anchors, tracks):
    new = {}
    for o in sources:
        if o == 7:
            mask = CORNER
        elif o in self.births:
            mask = LEFT if (self.results[self.births[o]][o].mask & LEFT).any() else RIGHT
        else:
            mask = MOTHER if frame < 2 else LEFT | RIGHT
        new[o] = ObjectResult(mask.copy(), torch.zeros(16, 16), 1.0)
        self.signals.setdefault(frame, {})[o] = PresenceSignals(5.0, 3.0, int(mask.sum()), 0.9, 1.0)
    return new, set()


def _propagate(viewer, widget, monkeypatch, daughters: bool) -> np.ndarray:
    monkeypatch.setattr(VideoSession, "_advance", scripted_advance)
    widget.set_image_layer(viewer.add_image(np.random.default_rng(0).random((4, *SHAPE)), name="cells"))
    viewer.dims.set_point(0, 0)
    labels = widget.ensure_labels_layer()
    labels.data[0][MOTHER] = 1
    labels.data[0][CORNER] = 7  # another object: new ids go above it
    labels.refresh()
    widget.daughters_check.setChecked(daughters)
    widget.propagate("forward", wait=True)
    return labels


def test_new_ids_for_daughters_records_their_mother(seem, qtbot, monkeypatch):
    viewer, widget = seem
    assert widget.daughters_check.isEnabled()  # a time-lapse
    labels = _propagate(viewer, widget, monkeypatch, daughters=True)
    assert np.array_equal(labels.data[1] == 1, MOTHER)
    for t in (2, 3):
        assert set(np.unique(labels.data[t])) == {0, 7, 8, 9}, t  # the mother ended where she divided
        assert np.array_equal(labels.data[t] == 8, LEFT) and np.array_equal(labels.data[t] == 9, RIGHT)
    features = labels.features.set_index("index")
    assert features.loc[8, "parent_id"] == 1 and features.loc[9, "parent_id"] == 1
    assert features.loc[8, "source"] == "propagation"


def test_without_it_both_daughters_keep_the_mothers_id(seem, qtbot, monkeypatch):
    viewer, widget = seem
    labels = _propagate(viewer, widget, monkeypatch, daughters=False)
    assert np.array_equal(labels.data[3] == 1, LEFT | RIGHT)
    assert "parent_id" not in labels.features.columns


def test_the_option_is_for_time_lapses_only(seem, qtbot):
    from napari_seem.plugin.axes import ROLES

    viewer, widget = seem
    widget.set_image_layer(viewer.add_image(np.zeros((4, *SHAPE), np.float32), name="stack"))
    widget.role_combo.setCurrentIndex(ROLES.index("z"))
    assert not widget.daughters_check.isEnabled()
