"""Hostile rule files: aliases, nesting, size and bytes get a file:line:col error, fast.

Each `clerk check` runs as a subprocess whose timeout is the deadline: the old loader
hung on these (billion laughs: 30 s and 577 MB; 20,000 rules: over 40 s).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clerk.yamlsrc import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, load_documents

ROOTS = "roots:\n  inbox: {path: /tmp, watch: false}\n"


def check(timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "clerk", "check"],
        capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


def problems_at(result: subprocess.CompletedProcess[str], path: Path) -> list[tuple[int, int, str]]:
    """(line, col, message) of every problem reported in `path`."""
    found = []
    for line in result.stdout.splitlines():
        m = re.match(rf"{re.escape(str(path))}:(\d+):(\d+): (.*)", line)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def test_billion_laughs_is_refused_at_the_alias(write_rules: Callable[[str], Path]) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write_rules("\n".join(lines) + "\n" + ROOTS)
    result = check()
    assert result.returncode == 1
    found = problems_at(result, path)
    assert len(found) == 1, result.stdout
    line, col, message = found[0]
    assert "alias" in message and f"{MAX_ALIAS_NODES:,}" in message, message
    assert 2 <= line <= 10 and lines[line - 1][col - 1] == "*", (line, col)


def test_aliases_within_the_budget_still_work(write_rules: Callable[[str], Path]) -> None:
    write_rules(
        ROOTS + "rules:\n"
        "  - name: a\n    in: inbox\n    match: &pdfs [{extension: pdf}, {size: '> 1KB'}]\n"
        "    actions: &none []\n"
        "  - name: b\n    in: inbox\n    match: *pdfs\n    actions: *none\n"
        "  - <<: {in: inbox, actions: []}\n    name: c\n"
    )
    result = check()
    assert result.returncode == 0, result.stdout
    assert "3 rules" in result.stdout


def test_a_recursive_alias_is_an_error(write_rules: Callable[[str], Path]) -> None:
    path = write_rules(ROOTS + "rules:\n  - &r {name: x, in: inbox, match: {tag: [*r]}}\n")
    result = check()
    assert result.returncode == 1
    assert [(line, col) for line, col, m in problems_at(result, path) if "alias" in m] == [
        (4, 43)
    ], result.stdout


@pytest.mark.parametrize("form", ["flow", "block"])
def test_deep_nesting_is_an_error_at_its_line(
    form: str, write_rules: Callable[[str], Path]
) -> None:
    depth = 2000
    if form == "flow":
        body = "rules: " + "[" * depth + "]" * depth + "\n"
        where = (1, 8 + MAX_DEPTH - 1)
    else:
        body = "rules:\n" + "".join("  " * i + "-\n" for i in range(1, depth))
        where = (MAX_DEPTH + 1, 2 * MAX_DEPTH + 1)
    path = write_rules(ROOTS + body)
    result = check()
    assert result.returncode == 1
    found = problems_at(result, path)
    assert len(found) == 1, result.stdout
    line, col, message = found[0]
    assert (line - 2, col) == where and f"more than {MAX_DEPTH} levels" in message, found


def test_a_file_over_the_size_limit_is_refused(write_rules: Callable[[str], Path]) -> None:
    rule = "  - {name: r%d, in: inbox, match: {extension: pdf}, actions: []}\n"
    body = ROOTS + "rules:\n"
    count = MAX_FILE_BYTES // len(rule % 0) + 10
    path = write_rules(body + "".join(rule % i for i in range(count)))
    assert path.stat().st_size > MAX_FILE_BYTES
    result = check(timeout=30)
    assert result.returncode == 1
    assert f"{path}: " in result.stdout and "MiB" in result.stdout, result.stdout


def test_a_fifo_is_not_read(write_rules: Callable[[str], Path], clerk_home: Path) -> None:
    write_rules(ROOTS)
    fifo = clerk_home / "rules.d" / "fifo.yaml"
    os.mkfifo(fifo)
    result = check(timeout=30)  # opening a FIFO for reading waits for a writer
    assert result.returncode == 1
    assert f"{fifo}: cannot read: not a regular file" in result.stdout, result.stdout


def test_not_utf8_and_control_characters_point_at_the_byte(
    write_rules: Callable[[str], Path], clerk_home: Path
) -> None:
    bad = clerk_home / "rules.d" / "bad.yaml"
    write_rules(ROOTS)
    bad.write_bytes(b"rules:\n  - name: caf\xe9\n")
    ctl = write_rules("rules:\n  - name: a\x01b\n", "ctl.yaml")
    result = check()
    assert result.returncode == 1
    assert problems_at(result, bad)[0][:2] == (2, 14), result.stdout
    assert "UTF-8" in problems_at(result, bad)[0][2]
    assert problems_at(result, ctl)[0][:2] == (2, 12), result.stdout


@pytest.mark.slow
def test_check_of_20000_rules_is_fast(write_rules: Callable[[str], Path]) -> None:
    rules = "".join(
        f"  - name: rule-{i}\n    in: inbox\n"
        f"    match: [{{extension: pdf}}, {{name: 'x{i}*'}}, {{size: '> 1KB'}}]\n"
        f"    actions: [{{move: '/tmp/out/{{name}}'}}]\n"
        for i in range(20_000)
    )
    write_rules(ROOTS + "rules:\n" + rules)
    # The old loader took 26 s of CPU (50 s on a busy machine); 3 s now
    result = check(timeout=20)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "20000 rules" in result.stdout


def test_load_documents_keeps_yaml_12_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("on: [yes, no, 0o17, 012, 1:30, 0x1F, ~, 2024-01-01]\nb:\n  - {c: d}\n")
    docs, problems = load_documents(path)
    assert not problems
    doc = docs[0]
    assert list(doc) == ["on", "b"]
    assert list(doc["on"])[:6] == ["yes", "no", 15, 12, "1:30", 31]
    assert doc["on"][6] is None and str(doc["on"][7]) == "2024-01-01"
    assert doc.key_mark("b") == (1, 0) and doc["b"].item_mark(0) == (2, 4)
    assert doc["b"][0].value_mark("c") == (2, 8)
    path.write_text("a: 1\na: 2\n")
    _, problems = load_documents(path)
    assert len(problems) == 1 and str(problems[0]).startswith(f"{path}:2:1: ")
