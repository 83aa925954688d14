"""The expensive facts about a file: MIME type, content hash, classifier attributes.

One `FactSource` per run. libmagic is loaded on first use only, so rules that never ask
for a MIME type never pay for it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from clerk.roots import RootSet
from clerk.rules.copies import CopyCheck, CopyIndex
from clerk.rules.fileinfo import FileInfo, open_content
from clerk.store.catalog import Catalog

log = logging.getLogger("clerk.facts")


class MagicUnavailable(RuntimeError):
    pass


def _make_magic() -> Any:
    try:
        import magic
    except ImportError as exc:  # libmagic missing: python-magic raises ImportError
        raise MagicUnavailable(
            f"libmagic is not available ({exc}); install it with `apt-get install libmagic1`"
        ) from None
    return magic.Magic(mime=True)


def content_hash(path: str) -> str:
    """The hash of a catalogued file's content (never through a symlink)."""
    with open_content(path) as fh:
        return _digest(fh)


def _digest(fh: io.BufferedReader) -> str:
    return hashlib.file_digest(fh, "blake2b").hexdigest()


class FactSource:
    """Computes facts for `FileInfo` objects; see `clerk.rules.fileinfo.Facts`."""

    def __init__(
        self,
        catalog: Catalog | None,
        classifiers: dict[str, Any],
        *,
        roots: RootSet | None = None,
        now: datetime | None = None,
        on_error: Callable[[FileInfo, str, Exception], None] | None = None,
    ):
        self.catalog = catalog
        self.roots = roots
        self.classifiers = classifiers
        self.now = now or datetime.now().astimezone()
        self._magic: Any = None
        self._on_error = on_error
        #: which files share their content, and which copy is the original
        self.copies = CopyIndex(catalog, roots, content_hash)

    def mime(self, file: FileInfo) -> str:
        """libmagic's type for the file's content. Raises OSError when the file cannot
        be read: taking it for `application/octet-stream` would let a rule act on that
        guess, and the catalog keep it after the file became readable."""
        if self._magic is None:
            self._magic = _make_magic()
        with file.open_content() as fh:  # its error is the file's: not readable, a link now
            if os.fstat(fh.fileno()).st_size == 0:
                return "inode/x-empty"  # what libmagic says of an empty file by its name
            try:
                return str(self._magic.from_descriptor(fh.fileno()))
            except Exception as exc:  # libmagic itself failed on a readable file
                self._error(file, "mime", exc)
                return "application/octet-stream"

    def hash(self, file: FileInfo) -> str:
        with file.open_content() as fh:
            return _digest(fh)

    def attrs(self, file: FileInfo, namespace: str) -> dict[str, Any]:
        classifier = self.classifiers.get(namespace)
        if classifier is None:
            return {}
        try:
            if not classifier.applies(file):
                return {}
            return dict(classifier.classify(file) or {})
        except Exception as exc:  # a plugin bug is recorded against the file, never fatal
            self._error(file, f"classifier {namespace}", exc)
            return {}

    def copies_of(self, file: FileInfo, by: str) -> CopyCheck:
        return self.copies.check(file, by)

    def _error(self, file: FileInfo, what: str, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(file, what, exc)  # the engine reports it, once
        else:
            log.warning("%s failed for %s: %s", what, file.path, exc)
