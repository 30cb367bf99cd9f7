"""Segment-everything on a plane too large to shrink: progress per tile, and Cancel within one tile."""

from __future__ import annotations

import time

import numpy as np
from seem_helpers import SLOW_TINY, TARGET_SIZE

from napari_seem.plugin.controller import TILING_FACTOR


def _large_plane(seed=0) -> np.ndarray:
    side = 3 * TILING_FACTOR * TARGET_SIZE // 2  # past the tiling limit: tiled at native resolution
    rng = np.random.default_rng(seed)
    return (rng.random((side, side)) * 4000).astype(np.uint16)


def test_progress_advances_per_tile_and_cancel_stops_within_one_tile(seem, qtbot):
    viewer, widget = seem
    user = np.zeros((768, 768), np.int32)
    user[:10, :10] = 4
    layer = viewer.add_image(_large_plane(), name="slide")
    widget.set_image_layer(layer)
    labels = viewer.add_labels(user.copy(), name="mine")
    widget.labels_combo.set_layer(labels)
    widget.set_model(SLOW_TINY)  # every tile's encode sleeps 0.25 s
    widget.load_model(wait=True)
    widget.vocabulary_edit.setText("nucleus")
    seen: list[str] = []

    def watch() -> bool:
        text = widget.status_label.text()
        if "tile" in text and (not seen or seen[-1] != text):
            seen.append(text)
        return len(seen) >= 2

    widget.segment_everything()
    qtbot.waitUntil(watch, timeout=30_000)
    assert "tile 1 of" in seen[0]
    assert widget.progress_bar.maximum() > 1 and widget.progress_bar.value() >= 1  # the bar follows the tiles
    total = int(seen[0].rsplit(" ", 1)[-1])
    start = time.perf_counter()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    stopped = time.perf_counter() - start
    assert stopped < 2.0, f"cancel took {stopped:.1f} s (a tile takes ~0.3 s)"
    done = max(int(t.split("tile ")[1].split(" of")[0]) for t in seen)
    assert done < total  # it did not run to the end
    assert widget.status_label.text().startswith("cancelled")
    np.testing.assert_array_equal(labels.data, user)  # nothing of the unfinished plane is written
    assert not widget.busy and widget.everything_button.isEnabled()
