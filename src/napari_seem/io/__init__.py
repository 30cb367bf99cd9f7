"""File input/output (TIFF reader and labels writer)."""
