"""The segmentation widget's *Find more like this* group: a reference region -> its matches here.

Choose the image that shows the example (any image layer: another image, or the one being annotated),
the region (a labels layer and the example's label, or a shapes layer with the example outlined) and,
for a stack, its frame; then *Find more like this* segments what the region shows on the plane on
screen and writes each match as a new object (:mod:`.reference`).

:class:`ReferencePanel` is a mixin of :class:`~.widget.SeemWidget`; it uses the widget's ``viewer``,
``controller``, ``_context``, ``ensure_labels_layer``, ``write_mode``, ``_where`` and ``_start``/``_action``.
"""

from __future__ import annotations

from typing import Iterator

from napari.layers import Image, Labels, Shapes
from qtpy.QtWidgets import QGroupBox, QPushButton, QSpinBox

from .qt_helpers import LayerCombo, form_group, hbox
from .reference import plan_reference, run_reference, write_reference
from .workers import Status

CURRENT_FRAME = "current"


def reference_body(controller, job) -> Iterator:
    if not controller.model_ready:
        yield Status("loading the model…")
    controller.ensure_model()
    yield Status("encoding the reference and this plane…")
    yield run_reference(controller, job)


class ReferencePanel:
    """The reference image, region and frame, and the *Find more like this* action."""

    def _reference_group(self) -> QGroupBox:
        box, form = form_group("Find more like this")
        self.reference_image_combo = LayerCombo(Image)
        self.reference_region_combo = LayerCombo((Labels, Shapes))
        self.reference_label_spin = QSpinBox()
        self.reference_label_spin.setRange(1, 2**31 - 1)
        self.reference_label_spin.setToolTip("the label of the example in the labels layer (not used for shapes)")
        self.reference_frame_spin = QSpinBox()
        self.reference_frame_spin.setRange(-1, 2**31 - 1)
        self.reference_frame_spin.setSpecialValueText(CURRENT_FRAME)
        self.reference_frame_spin.setValue(-1)
        self.reference_frame_spin.setToolTip("the reference's frame or slice (first stack axis); 'current': the "
                                             "one on screen")
        self.reference_button = QPushButton("Find more like this")
        self.reference_button.setToolTip("segment, on the plane on screen, what the reference region shows; each "
                                         "match becomes a new object")
        form.addRow("example image", self.reference_image_combo)
        form.addRow("example region", hbox(self.reference_region_combo, self.reference_label_spin))
        form.addRow("example frame", self.reference_frame_spin)
        form.addRow(self.reference_button)
        self.reference_button.clicked.connect(lambda: self.find_like_reference())
        return box

    def _refresh_reference_layers(self) -> None:
        self.reference_image_combo.refresh(self.viewer.layers)
        self.reference_region_combo.refresh(self.viewer.layers)

    # ------------------------------------------------------------------ API
    def set_reference(self, image: Image | str, region: Labels | Shapes | str, label: int | None = None,
                      frame: int | None = None) -> None:
        """Choose the example: ``region`` (a labels layer and its ``label``, or a shapes layer) on ``image``
        (layers or their names), at ``frame`` of its first stack axis (default: the one on screen)."""
        layers = self.viewer.layers
        self.reference_image_combo.set_layer(layers[image] if isinstance(image, str) else image)
        self.reference_region_combo.set_layer(layers[region] if isinstance(region, str) else region)
        if label is not None:
            self.reference_label_spin.setValue(int(label))
        self.reference_frame_spin.setValue(-1 if frame is None else int(frame))

    def find_like_reference(self, wait: bool = False):
        """Segment the reference region's matches on the plane on screen, as new objects."""
        return self._action("reference", self._start_reference, wait)

    def _start_reference(self):
        image, geometry, plane, channels = self._context()
        frame = self.reference_frame_spin.value()
        job = plan_reference(image, geometry, plane, channels, self.reference_image_combo.layer(),
                             self.reference_region_combo.layer(), self.reference_label_spin.value(),
                             self.viewer.dims.point, None if frame < 0 else frame)
        labels = self.ensure_labels_layer()

        def write(result) -> None:
            ids = write_reference(self.controller, labels, job, result, self.write_mode)
            found = f"{len(ids)} match{'es' if len(ids) != 1 else ''}" + (f": objects {ids}" if ids else "")
            self.status_label.setText(self._where(geometry, plane, f"like {job.source}: {found}"))

        return self._start("finding more like the example", reference_body, self.controller, job, on_item=write,
                           history=labels)
