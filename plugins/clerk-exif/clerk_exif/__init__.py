"""clerk-exif: photo metadata (EXIF) for clerk rules, read with Pillow.

Installed next to clerk, it registers the `exif` classifier through the `clerk` entry
point group, so rule files can say::

    match: [{attr: {exif.camera: "Pixel*"}}]
    actions: [{move: "~/Photos/{exif.taken:%Y}/{exif.taken:%m}/{name}"}]
"""

from __future__ import annotations

from collections.abc import Callable

from clerk.plugins.api import Classifier, hookimpl
from clerk_exif.classifier import ExifClassifier, ExifReadError, read_exif

__version__ = "0.1.0"


@hookimpl
def register_classifiers(register: Callable[[Classifier], None]) -> None:
    """Add the `exif` classifier."""
    register(ExifClassifier())


__all__ = ["ExifClassifier", "ExifReadError", "__version__", "read_exif"]
