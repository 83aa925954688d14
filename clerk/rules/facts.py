"""The expensive facts about a file: MIME type, content hash, classifier attributes.

One `FactSource` per run. libmagic is loaded on first use only, so rules that never ask
for a MIME type never pay for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from clerk.rules.fileinfo import FileInfo
from clerk.rules.model import RootSet
from clerk.store.catalog import Catalog, CatalogRow

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
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def _hash_of(file: FileInfo) -> str:
    return file.hash


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
        # files seen earlier in this run but not yet in the catalog, by size
        self.pending_by_size: dict[int, list[FileInfo]] = {}
        # called before the catalog is read for duplicates: the engine waits there for
        # the rows of earlier batches still being written (see `CatalogWriter`)
        self.sync_catalog: Callable[[], None] | None = None

    def mime(self, file: FileInfo) -> str:
        if self._magic is None:
            self._magic = _make_magic()
        try:
            try:
                return str(self._magic.from_file(file.path))
            except UnicodeEncodeError:  # a non-UTF-8 name: hand libmagic a descriptor
                with open(file.path, "rb") as fh:
                    return str(self._magic.from_descriptor(fh.fileno()))
        except Exception as exc:  # an unreadable file is application/octet-stream
            self._error(file, "mime", exc)
            return "application/octet-stream"

    def hash(self, file: FileInfo) -> str:
        return content_hash(file.path)

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

    def duplicate_of(self, file: FileInfo) -> str | None:
        """Another present file with the same content; hashes only same-size candidates."""
        candidates: list[tuple[str, Callable[[], str | None]]] = []
        if self.catalog is not None:
            if self.sync_catalog is not None:
                self.sync_catalog()
            for row in self.catalog.same_size(file.size, file.file_id):
                candidates.append((f"{row.root}:{row.relpath}", partial(self._row_hash, row)))
        for other in self.pending_by_size.get(file.size, []):
            if other.path != file.path:
                candidates.append((other.path, partial(_hash_of, other)))
        if not candidates:
            return None
        mine = file.hash
        for label, their_hash in candidates:
            if their_hash() == mine:
                return label
        return None

    def _row_hash(self, row: CatalogRow) -> str | None:
        """A catalogued file's hash: cached, or computed now if the file is unchanged."""
        if row.hash:
            return row.hash
        root = self.roots.get(row.root) if self.roots is not None else None
        if root is None or self.catalog is None:
            return None
        path = os.path.join(root.path, row.relpath)
        try:
            st = os.lstat(path)
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (row.inode, row.size, row.mtime_ns):
                return None
            row.hash = content_hash(path)
        except OSError:
            return None
        self.catalog.db.execute("UPDATE files SET hash = ? WHERE id = ?", [row.hash, row.id])
        return row.hash

    def remember(self, file: FileInfo) -> None:
        """Make `file` visible to `duplicate_of` before it reaches the catalog."""
        self.pending_by_size.setdefault(file.size, []).append(file)

    def forget_pending(self) -> None:
        self.pending_by_size.clear()

    def _error(self, file: FileInfo, what: str, exc: Exception) -> None:
        log.warning("%s failed for %s: %s", what, file.path, exc)
        if self._on_error is not None:
            self._on_error(file, what, exc)
