"""`FileInfo`: a candidate file as filters, actions and classifiers see it.

Everything beyond the stat is computed lazily and at most once: the MIME type (libmagic)
only when a rule asks for it, the content hash only for `duplicate` (and only when
another catalogued file has the same size), the first KiB only for `content`. Values
cached in the catalog are reused while (dev, inode, size, mtime) still match.

A view of the file at a planned place (`at`, for rules after a move with `continue:
true`) has that place's path and name, but facts are always read from the file where it
is (`here`): the walked path until an op has actually moved it.
"""

from __future__ import annotations

import errno
import io
import os
import stat as stat_module
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from clerk.store.catalog import unchanged

if TYPE_CHECKING:
    from clerk.roots import Root
    from clerk.rules.copies import CopyCheck

HEAD_BYTES = 1024


def open_content(path: str, *, follow: bool = False) -> io.BufferedReader:
    """Open a file clerk judges, to read its content (MIME type, first KiB, hash).

    A symlink is not followed unless its root follows symlinks: the walk saw a regular
    file, and one swapped for a link since (by anyone who may write the directory)
    must not be read through. Nor does a FIFO put in its place hang the read (no
    blocking open), and only a regular file is read. The OSError says which.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise OSError(errno.ELOOP, "it is a symlink now, not read through", path) from None
        raise
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "it is not a regular file now", path)
    return os.fdopen(fd, "rb")


class Facts(Protocol):
    """What computes the expensive facts; the rules engine provides one per run."""

    now: datetime

    @property
    def classifiers(self) -> Mapping[str, Any]: ...  # by namespace (templates may name them)

    def mime(self, file: FileInfo) -> str: ...  # of the file where it is (`file.here`)
    def hash(self, file: FileInfo) -> str: ...
    def attrs(self, file: FileInfo, namespace: str) -> dict[str, Any]: ...
    def copies_of(self, file: FileInfo, by: str) -> CopyCheck: ...  # see clerk.rules.copies


class CachedFacts(Protocol):
    """A catalog row's cached values (see store.catalog.CatalogRow)."""

    id: int | None
    size: int | None
    mtime_ns: int | None
    dev: int | None
    inode: int | None
    mime: str | None
    hash: str | None
    tags: set[str]
    attrs: dict[str, Any]


class FileInfo:
    """One file under a root: path parts, stat, and lazily computed facts."""

    def __init__(
        self,
        root: Root,
        path: str,
        relpath: str,
        st: os.stat_result,
        facts: Facts,
        cached: CachedFacts | None = None,
    ):
        self.root = root
        self._set_path(path)
        self.relpath = relpath
        self.st = st
        self._facts = facts
        fresh = cached if cached is not None and unchanged(cached, st) else None
        self.cached = fresh
        self.file_id: int | None = cached.id if cached is not None else None
        self.unsaved = False  # an id is reserved, the catalog row not yet written
        self.tags: set[str] = set(cached.tags) if cached is not None else set()
        self._mime: str | None = fresh.mime if fresh else None
        self._hash: str | None = fresh.hash if fresh else None
        self._attrs: dict[str, Any] = dict(fresh.attrs) if fresh else {}
        self._head: bytes | None = None
        self.computed: set[str] = set()  # facts computed now (to write back to the catalog)
        # the first view of this file in this run (None: this one). Not `self`: a
        # reference to itself would make every FileInfo garbage that only the cyclic
        # collector frees, and a scan makes one per file.
        self._origin: FileInfo | None = None
        self._here: FileInfo | None = None  # on the origin: the file after a done move

    def at(self, root: Root, path: str, relpath: str) -> FileInfo:
        """A view of the same file at another place (after a planned move).

        Facts are shared: whatever one view computes, the original records.
        """
        view = object.__new__(FileInfo)
        view.__dict__.update(self.__dict__)
        view._origin = self.origin
        view.root, view.relpath = root, relpath
        view._set_path(path)
        return view

    # --- path parts --------------------------------------------------------------------
    def _set_path(self, path: str) -> None:
        # plain attributes, not properties: filters read these for every file
        self.path = path
        self.name = path[path.rfind("/") + 1 :]
        #: extension without the dot, as written (`"JPG"`); filters compare it folded
        self.stem, self.ext = _split_ext(self.name)

    @property
    def dir(self) -> str:
        return os.path.dirname(self.path)

    # --- stat --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.st.st_size

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(self.st.st_mtime).astimezone()

    @property
    def is_regular(self) -> bool:
        return stat_module.S_ISREG(self.st.st_mode)

    @property
    def origin(self) -> FileInfo:
        """The first view of this file in this run: facts computed by any view live there."""
        return self._origin or self

    @property
    def here(self) -> FileInfo:
        """The view of the file where it is now, to read its content from: the walked
        path, or where an op (not just a plan) has moved it (see `moved_to`)."""
        origin = self.origin
        return origin._here or origin

    def moved_to(self, view: FileInfo) -> None:
        """An op has moved the file to `view`'s place: read it there from now on."""
        self.origin._here = view

    # --- lazy facts --------------------------------------------------------------------
    @property
    def mime(self) -> str:
        origin = self.origin
        if origin._mime is None:
            origin._mime = self._facts.mime(self.here)
            origin.computed.add("mime")
        return origin._mime

    @property
    def hash(self) -> str:
        origin = self.origin
        if origin._hash is None:
            origin._hash = self._facts.hash(self.here)
            origin.computed.add("hash")
        return origin._hash

    def learn_hash(self, digest: str) -> None:
        """The content hash, computed elsewhere from this very file (the copy index)."""
        origin = self.origin
        if origin._hash is None:
            origin._hash = digest
            origin.computed.add("hash")

    @property
    def mime_if_known(self) -> str | None:
        return self.origin._mime

    @property
    def hash_if_known(self) -> str | None:
        return self.origin._hash

    @property
    def head(self) -> bytes:
        """The first KiB of the file. Raises OSError if it cannot be read: "no content"
        would make `not: {content: ...}` match a file nobody looked into."""
        origin = self.origin
        if origin._head is None:
            with self.open_content() as fh:
                origin._head = fh.read(HEAD_BYTES)
        return origin._head

    def open_content(self) -> io.BufferedReader:
        """The file where it is, open to read its content (see `open_content`)."""
        here = self.here
        return open_content(here.path, follow=here.root.follow_symlinks)

    def attrs(self, namespace: str) -> dict[str, Any]:
        known = self.origin._attrs  # the same dict in every view
        if namespace not in known:
            known[namespace] = self._facts.attrs(self.here, namespace)
            self.origin.computed.add("attrs")
        return known[namespace]

    def copies(self, by: str = "first_seen") -> CopyCheck:
        """Is this file a duplicate, and of which file (its original, picked `by` one of
        `clerk.rules.copies.ORIGINAL_BY`)? The one place that decides it."""
        return self._facts.copies_of(self, by)

    def duplicate_of(self, by: str = "first_seen") -> str | None:
        """Where the original is, if this file is a duplicate (see `copies`)."""
        return self.copies(by).original

    @property
    def known_attrs(self) -> dict[str, Any]:
        return self._attrs

    @property
    def now(self) -> datetime:
        return self._facts.now

    def fields(self, extra: Mapping[str, Any] | None = None) -> TemplateFields:
        return TemplateFields(self, extra or {})

    def __repr__(self) -> str:
        return f"FileInfo({self.path!r})"


def _split_ext(name: str) -> tuple[str, str]:
    """Like os.path.splitext (leading dots do not start an extension), without the dot."""
    dot = name.rfind(".")
    if dot > 0 and name[:dot].lstrip("."):
        return name[:dot], name[dot + 1 :]
    return name, ""


# A value of each standard field's type: `clerk check` tries a template's format specs on
# them (`{size:>>>}` fails on every file, so it fails the check).
FIELD_SAMPLES: dict[str, Any] = {
    "name": "a.pdf", "stem": "a", "ext": "pdf", "dir": "/r", "root": "r", "relpath": "a.pdf",
    "reldir": "", "size": 1024, "mime": "application/pdf", "mtime": datetime(2024, 1, 2, 3, 4),
    "now": datetime(2024, 1, 2, 3, 4), "hash": "9f86d081884c7d65",
}  # fmt: skip
STANDARD_FIELDS: frozenset[str] = frozenset(FIELD_SAMPLES)


class TemplateFields(Mapping[str, Any]):
    """The fields a template can use, computed only when asked for.

    Standard fields, then `extra` (regex and content groups), then classifier
    attributes written `namespace.key`.
    """

    def __init__(self, file: FileInfo, extra: Mapping[str, Any]):
        self._file = file
        self._extra = extra

    def __getitem__(self, key: str) -> Any:
        if key in self._extra:
            return self._extra[key]
        f = self._file
        match key:
            case "name":
                return f.name
            case "stem":
                return f.stem
            case "ext":
                return f.ext
            case "dir":
                return f.dir
            case "root":
                return f.root.name
            case "relpath":
                return f.relpath
            case "reldir":
                return os.path.dirname(f.relpath)
            case "size":
                return f.size
            case "mime":
                return f.mime
            case "mtime":
                return f.mtime
            case "now":
                return f.now
            case "hash":
                return f.hash
        namespace, dot, attr = key.partition(".")
        if dot:
            values = f.attrs(namespace)
            if attr in values:
                return values[attr]
            if namespace in f._facts.classifiers:
                return None  # a known classifier had nothing for this file: "has no value"
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from STANDARD_FIELDS
        yield from self._extra

    def __len__(self) -> int:
        return len(STANDARD_FIELDS) + len(self._extra)
