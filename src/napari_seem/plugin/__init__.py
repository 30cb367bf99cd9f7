"""napari glue. ``layer_prompts`` and ``label_writer`` are pure (no Qt) and usable without a viewer."""
