"""Small but real files of common types, for the demo, tests and benchmarks.

Each has the header libmagic recognizes (PNG, JPEG, PDF, ZIP, MP3, gzip, CSV, text), so
MIME rules see real content, not just names.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path


def png(seed: int = 0) -> bytes:
    width, height = 4, 4
    raw = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(width * 3))
                   for y in range(height))  # fmt: skip

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def jpeg(seed: int = 0) -> bytes:
    # SOI, a JFIF APP0 segment, a comment carrying the seed, EOI: enough for libmagic
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    comment = f"clerk sample {seed}".encode()
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + segment + b"\xff\xd9"


def pdf(seed: int = 0, text: str = "Hello") -> bytes:
    return (f"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            f"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n% {text} {seed}\n"
            f"trailer << /Root 1 0 R >>\n%%EOF\n").encode()  # fmt: skip


def zip_archive(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", f"sample {seed}\n")
    return buffer.getvalue()


def mp3(seed: int = 0) -> bytes:
    # an ID3v2 tag then one MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz)
    id3 = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    frame = b"\xff\xfb\x90\x64" + bytes([seed % 256]) * 413
    return id3 + frame * 2


def gz(seed: int = 0) -> bytes:
    return gzip.compress(f"compressed sample {seed}\n".encode() * 4, mtime=0)


def csv(seed: int = 0) -> bytes:
    rows = ["id,name,amount"] + [f"{i},item{i},{(seed * 7 + i) % 100}" for i in range(5)]
    return ("\n".join(rows) + "\n").encode()


def text(seed: int = 0) -> bytes:
    return f"Notes {seed}\nNothing important here.\n".encode()


KINDS: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "png": ("png", png),
    "jpeg": ("jpg", jpeg),
    "pdf": ("pdf", pdf),
    "zip": ("zip", zip_archive),
    "mp3": ("mp3", mp3),
    "gzip": ("gz", gz),
    "csv": ("csv", csv),
    "text": ("txt", text),
}


def make_tree(
    directory: Path,
    count: int,
    *,
    subdirs: int = 0,
    lying: float = 0.05,
    missing_ext: float = 0.05,
    seed: int = 1,
) -> dict[str, int]:
    """Write `count` sample files into `directory` (spread over `subdirs` subdirectories).

    A fraction get a lying extension (a PNG named .txt) or none; returns counts by kind.
    """
    rng = random.Random(seed)  # noqa: S311 (test data, not security)
    directory.mkdir(parents=True, exist_ok=True)
    dirs = [directory] + [directory / f"d{i:03d}" for i in range(subdirs)]
    for d in dirs:
        d.mkdir(exist_ok=True)
    kinds = list(KINDS)
    counts: dict[str, int] = {}
    for i in range(count):
        kind = kinds[i % len(kinds)]
        ext, make = KINDS[kind]
        roll = rng.random()
        if roll < lying:
            ext = rng.choice([e for e, _ in KINDS.values() if e != ext])
        elif roll < lying + missing_ext:
            ext = ""
        name = f"file{i:06d}" + (f".{ext}" if ext else "")
        (dirs[i % len(dirs)] / name).write_bytes(make(i))
        counts[kind] = counts.get(kind, 0) + 1
    return counts
