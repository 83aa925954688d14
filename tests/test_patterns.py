"""Rule patterns run in bounded time (RE2), and `clerk check` names what RE2 cannot do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clerk.errors import SpecError
from clerk.plugins.builtin.filters import BUILTIN_FILTERS
from clerk.roots import Root
from clerk.rules.facts import FactSource
from clerk.rules.fileinfo import FileInfo

Completed = subprocess.CompletedProcess[str]

# Exponential for a backtracking engine: 2**40 ways to split the a's before the '!'.
EVIL = r"(a+)+$"
EVIL_TEXT = "a" * 40 + "!"


@pytest.fixture
def inbox(tmp_path: Path, write_rules: Callable[[str], Path]) -> Path:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    return inbox


def info(root: Root, name: str, data: bytes) -> FileInfo:
    path = Path(root.path) / name
    path.write_bytes(data)
    return FileInfo(root, str(path), name, os.lstat(path), FactSource(None, {}))


def test_a_catastrophic_pattern_finishes_in_scan(
    tmp_path: Path, inbox: Path, write_rules: Callable[[str], Path]
) -> None:
    out = tmp_path / "out"
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\n  out: {{path: {out}, watch: false}}\n"
        "rules:\n"
        f"  - {{name: evil-content, in: inbox, match: [{{content: '{EVIL}'}}],"
        f" actions: [{{move: '{out}/content/{{name}}'}}]}}\n"
        f"  - {{name: evil-name, in: inbox, match: [{{regex: '{EVIL}'}}],"
        f" actions: [{{move: '{out}/name/{{name}}'}}]}}\n"
    )
    (inbox / "evil.txt").write_text(EVIL_TEXT)
    (inbox / EVIL_TEXT).write_text("hello")
    # The deadline is the subprocess timeout: a backtracking engine would still be running.
    result = subprocess.run(
        [sys.executable, "-m", "clerk", "scan"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 files seen, 0 matched" in result.stdout
    assert sorted(p.name for p in inbox.iterdir()) == sorted(["evil.txt", EVIL_TEXT])


def test_check_points_at_unsupported_constructs(
    write_rules: Callable[[str], Path],
    inbox: Path,
    clerk: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    path = write_rules(
        f"roots:\n  inbox: {inbox}\n"
        "rules:\n"
        "  - name: backref\n"
        "    match:\n"
        "      - regex: '(a)x\\1'\n"
        "    actions: []\n"
        "  - name: lookahead\n"
        "    match: [{content: {pattern: 'Invoice(?=\\s)', case_sensitive: false}}]\n"
        "    actions: []\n"
        "  - name: lookbehind\n"
        "    match: {name: '*.pdf', regex: \"\\\\d(?<!y)\"}\n"
        "    actions: []\n"
    )
    result = clerk("check")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # the column is the construct's own, inside the quoted pattern
    assert any(
        line.startswith(f"{path}:6:21: ") and "backreference" in line and "\\1" in line
        for line in lines
    ), result.stdout
    assert any(line.startswith(f"{path}:9:41: ") and "lookahead" in line for line in lines), (
        result.stdout
    )
    assert any(line.startswith(f"{path}:12:39: ") and "lookbehind" in line for line in lines), (
        result.stdout
    )
    assert "Traceback" not in result.stderr
    assert "re2.cc" not in result.stderr  # RE2's own logging stays quiet


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"a(?!b)", "lookahead"),
        (r"(?<=a)b", "lookbehind"),
        (r"(?>a+)b", "atomic group"),
        (r"a++", "possessive"),
        (r"a\Z", r"\z"),
        ("a{2000}", "1000"),
        ("(", "missing )"),
    ],
)
def test_unsupported_constructs_are_spec_errors(pattern: str, construct: str) -> None:
    for name in ("regex", "content"):
        with pytest.raises(SpecError, match=re.escape(construct)):
            BUILTIN_FILTERS[name](pattern)


def test_named_groups_flags_and_bytes(tmp_path: Path) -> None:
    root = Root("inbox", str(tmp_path))
    f = info(root, "Scan_2024-05.pdf", "Rechnung für Müller\nBetrag 42\n".encode())
    verdict = BUILTIN_FILTERS["regex"](r"(?i)scan_(?P<year>\d{4})-(?P<month>\d\d)").match(f)
    assert verdict.matched and verdict.fields == {"year": "2024", "month": "05"}
    content = BUILTIN_FILTERS["content"]({"pattern": r"RECHNUNG FÜR (?P<who>\pL+)",
                                          "case_sensitive": False})  # fmt: skip
    verdict = content.match(f)
    assert verdict.matched and verdict.fields == {"who": "Müller"}
    assert not BUILTIN_FILTERS["content"](r"RECHNUNG").match(f).matched  # case-sensitive
    # invalid UTF-8 in the head is replaced, as before, and still matches `.`
    g = info(root, "latin1.txt", b"caf\xe9 Invoice 7")
    verdict = BUILTIN_FILTERS["content"](r"caf. Invoice (?P<n>\d)").match(g)
    assert verdict.matched and verdict.fields == {"n": "7"}


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    root = Root("inbox", str(tmp_path))
    raw = os.fsdecode(b"caf\xff-(7).txt")
    f = info(root, raw, b"x")
    assert BUILTIN_FILTERS["name"]("*.txt").match(f).matched
    assert BUILTIN_FILTERS["name"]("caf?-*").match(f).matched
    verdict = BUILTIN_FILTERS["regex"](r"^(?P<stem>.*)-\((?P<n>\d)\)").match(f)
    assert verdict.matched
    assert verdict.fields == {"stem": os.fsdecode(b"caf\xff"), "n": "7"}  # the byte survives


@pytest.mark.parametrize(
    ("glob", "name", "matched"),
    [
        ("*.JPG", "a.jpg", True),
        ("[!a]*", "a.jpg", False),
        ("[!a]*", "b.jpg", True),
        ("[]x]", "]", True),
        ("[^a]", "^", True),  # fnmatch: `^` in a class is literal
        ("[z-a]", "q", False),
        ("[a-c]?", "b9", True),
        ("[", "[", True),
        ("a[", "a[", True),
        ("*[[:alpha:]]*", "x[:]", True),
        ("\\*", "\\x", True),
        ("a.b", "axb", False),
        ("*a*a*a*a*a*a*a*a*b", "a" * 200, False),
    ],
)
def test_name_globs_mean_what_fnmatch_means(glob: str, name: str, matched: bool) -> None:
    import fnmatch

    assert fnmatch.fnmatch(name.lower(), glob.lower()) == matched  # the reference
    from clerk.rules.patterns import glob_pattern

    assert (glob_pattern(glob, ignore_case=True).fullmatch(name) is not None) == matched


def test_a_catastrophic_pattern_does_not_pin_the_daemon(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    from test_daemon_support import files_under, running_daemon, wait_until, write_config

    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.3s}}\n"
        f"  archive: {{path: {archive}, watch: false}}\nrules:\n"
        f"  - {{name: evil, in: inbox, match: [{{content: '{EVIL}'}}],"
        f" actions: [{{move: '{archive}/evil/{{name}}'}}]}}\n"
        f"  - {{name: text, in: inbox, match: [{{extension: txt}}],"
        f" actions: [{{move: '{archive}/{{name}}'}}]}}\n"
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "evil.txt").write_text(EVIL_TEXT)  # pinned a worker for good before
        (inbox / "after.txt").write_text("hello")
        wait_until(
            lambda: files_under(archive) == ["after.txt", "evil.txt"],
            what="both files organized, the one after the evil one too",
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
