"""Command line interface (``napari-seem``)."""
