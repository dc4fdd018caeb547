"""genbench: benchmark generated, retrieved and original image data for visual recognition."""

__version__ = "0.1.0"
