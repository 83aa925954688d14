"""Each built-in filter against real files (MIME by the real libmagic)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from clerk.errors import SpecError
from clerk.plugins.builtin.filters import BUILTIN_FILTERS
from clerk.roots import Root
from clerk.rules.facts import FactSource
from clerk.rules.fileinfo import FileInfo
from clerk.rules.patterns import glob_pattern
from clerk.samples import pdf, png


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root("inbox", str(tmp_path))


def info(root: Root, relpath: str, data: bytes = b"hello", facts: FactSource | None = None,
         age_days: float = 0) -> FileInfo:  # fmt: skip
    path = Path(root.path) / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_days:
        t = time.time() - age_days * 86400
        os.utime(path, (t, t))
    return FileInfo(root, str(path), relpath, os.lstat(path), facts or FactSource(None, {}))


def check(name: str, value: object, file: FileInfo) -> bool:
    return BUILTIN_FILTERS[name](value).match(file).matched


def test_name(root: Root) -> None:
    f = info(root, "Holiday.JPG")
    assert check("name", "*.jpg", f)
    assert check("name", ["*.png", "holiday*"], f)
    assert not check("name", {"glob": "*.jpg", "case_sensitive": True}, f)
    assert check("name", {"startswith": "Holi"}, f)
    assert check("name", {"contains": "day."}, f)
    assert not check("name", {"endswith": ".png"}, f)


def test_regex_groups_become_fields(root: Root) -> None:
    f = info(root, "IMG_1234.jpg")
    verdict = BUILTIN_FILTERS["regex"](r"IMG_(?P<num>\d+)").match(f)
    assert verdict.matched and verdict.fields == {"num": "1234"}
    assert BUILTIN_FILTERS["regex"](r"(?P<n>\d+)").provides() == {"n"}
    with pytest.raises(SpecError, match="invalid regular expression"):
        BUILTIN_FILTERS["regex"]("([")


def test_extension(root: Root) -> None:
    f = info(root, "report.PDF")
    assert check("extension", "pdf", f)
    assert check("extension", [".png", "PDF"], f)
    assert not check("extension", "txt", info(root, "noext"))


def test_mime_sniffs_content_not_name(root: Root) -> None:
    liar = info(root, "notes.txt", png())
    assert check("mime", "image/*", liar)
    assert liar.mime == "image/png"
    assert check("mime", ["application/pdf"], info(root, "x", pdf()))
    with pytest.raises(SpecError, match="type like"):
        BUILTIN_FILTERS["mime"]("image")


def test_size(root: Root) -> None:
    f = info(root, "a", b"x" * 2000)
    assert check("size", ">= 2KB", f)
    assert not check("size", "> 2KB", f)
    assert check("size", [">1KB", "<1MiB"], f)


def test_age_and_modified(root: Root) -> None:
    old = info(root, "old", age_days=40)
    new = info(root, "new")
    assert check("age", "> 30d", old) and not check("age", "> 30d", new)
    assert check("modified", "> 30d", old)
    assert check("modified", f"< {datetime.now():%Y-%m-%d}", old)
    assert not check("modified", "<= 2001-01-01", new)


def test_path_globs(root: Root) -> None:
    f = info(root, "invoices/2024/march/a.pdf")
    assert check("path", "invoices/**/*.pdf", f)
    assert not check("path", "invoices/*.pdf", f)
    assert check("path", "invoices/*/*/a.pdf", f)
    assert glob_pattern("**/x", path=True).fullmatch("x") is not None


def test_content_reads_the_head_only(root: Root) -> None:
    f = info(root, "inv.txt", b"Invoice ACME\nTotal 42\n")
    verdict = BUILTIN_FILTERS["content"](r"Invoice\s+(?P<customer>\w+)").match(f)
    assert verdict.matched and verdict.fields == {"customer": "ACME"}
    late = info(root, "late.txt", b"x" * 5000 + b"Invoice ACME")
    assert not check("content", "Invoice", late)
    assert not check("content", "PNG", info(root, "bin", png()))


class Camera:
    """A classifier for the attr filter's tests."""

    namespace = "cam"

    def applies(self, file: FileInfo) -> bool:
        return True

    def classify(self, file: FileInfo) -> dict[str, object]:
        return {"model": "Pixel 8", "iso": 400}


def test_tag_and_attr(root: Root) -> None:
    f = info(root, "a")
    f.tags.update({"invoice", "2024"})
    assert check("tag", "invoice", f)
    assert not check("tag", ["invoice", "paid"], f)

    g = info(root, "b", facts=FactSource(None, {"cam": Camera()}))
    assert check("attr", {"cam.model": "pixel*"}, g)
    assert check("attr", {"cam.iso": "> 100"}, g)
    assert not check("attr", {"cam.iso": "> 1000"}, g)
    assert check("attr", {"cam.lens": False}, g)
    with pytest.raises(SpecError):
        BUILTIN_FILTERS["attr"]({"nodot": 1})


def test_duplicate_within_one_run(root: Root) -> None:
    facts = FactSource(None, {})
    facts.copies.track = True
    a = info(root, "a.bin", b"same bytes", facts)
    facts.copies.met(a)
    b = info(root, "b.bin", b"same bytes", facts)
    c = info(root, "c.bin", b"other byte", facts)
    assert check("duplicate", True, b)
    facts.copies.met(b)
    assert not check("duplicate", True, c)  # same size, different content
    assert check("duplicate", False, c)
    # a was met first: it is the original, whoever asks and however often
    assert not check("duplicate", True, a) and check("duplicate", False, a)
    verdict = BUILTIN_FILTERS["duplicate"](True).match(b)
    assert verdict.fields == {"original": a.path} and "original: first seen" in verdict.reason
    assert (
        BUILTIN_FILTERS["duplicate"](True).match(a).reason
        == "the original of its copies (first seen)"
    )


def test_duplicate_original_by(root: Root) -> None:
    """`original: oldest | shortest_name` pick another copy; the order is total."""
    facts = FactSource(None, {})
    facts.copies.track = True
    new = info(root, "report (1).pdf", b"same", facts, age_days=1)
    old = info(root, "report copy.pdf", b"same", facts, age_days=3)
    short = info(root, "report.pdf", b"same", facts, age_days=2)
    for file in (new, old, short):
        facts.copies.met(file)
    judged = {
        by: {f.name for f in (new, old, short) if check("duplicate", {"original": by}, f)}
        for by in ("first_seen", "oldest", "shortest_name")
    }
    assert judged == {
        "first_seen": {"report copy.pdf", "report.pdf"},
        "oldest": {"report (1).pdf", "report.pdf"},
        "shortest_name": {"report (1).pdf", "report copy.pdf"},
    }
    with pytest.raises(
        SpecError, match=r"original 'olderst' is not an order \(did you mean 'oldest'\?\)"
    ):
        BUILTIN_FILTERS["duplicate"]({"original": "olderst"})
    with pytest.raises(SpecError, match=r"unknown option 'orignal' \(did you mean 'original'\?\)"):
        BUILTIN_FILTERS["duplicate"]({"orignal": "oldest"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("name", []), ("size", "big"), ("age", "> soon"), ("duplicate", "yes"),
     ("extension", {"a": 1}), ("content", 5), ("tag", [True])],
)  # fmt: skip
def test_bad_values_raise_spec_errors(name: str, value: object) -> None:
    with pytest.raises(SpecError):
        BUILTIN_FILTERS[name](value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("modified", " " * 200_000 + "x"), ("modified", "> " + " " * 200_000 + "2024-01"),
     ("size", "1" + " " * 200_000 + "!"), ("age", "x" + " " * 200_000 + "y")],
)  # fmt: skip
def test_long_values_are_refused_in_linear_time(name: str, value: str) -> None:
    with pytest.raises(SpecError):  # Python's re took minutes on these
        BUILTIN_FILTERS[name](value)


def test_attr_comparisons_are_read_once_in_linear_time(root: Root) -> None:
    f = info(root, "b", facts=FactSource(None, {"cam": Camera()}))
    spaced = ">" + " " * 200_000 + "x"  # a glob, not a comparison; re took minutes per file
    assert not check("attr", {"cam.iso": spaced}, f)
    assert check("attr", {"cam.iso": "  >=  400 ", "cam.model": " pixel*"}, f) is False
    assert check("attr", {"cam.iso": "  >=  400 ", "cam.model": "pixel*"}, f)


@pytest.mark.parametrize("when", [">= 0001-01-01", "< 9999-12-31T23:59:59", "> 2024-02-30"])
def test_dates_at_the_edges_are_read_or_refused(root: Root, when: str) -> None:
    try:
        modified = BUILTIN_FILTERS["modified"](when)
    except SpecError as exc:
        assert "date" in str(exc)
    else:
        modified.match(info(root, "e.txt"))
