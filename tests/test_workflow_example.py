"""The worked OCR example of docs/workflows.md, run as written through `clerk scan`.

OCRmyPDF and pdftotext are not installed on the test machine, so two small stand-ins
with their command lines and exit statuses take their place on PATH; everything of
clerk's (rules, move, run action, detached worker, shell executor, on_failure) is real.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

from conftest import REPO, run_clerk
from test_daemon_support import wait_until

from clerk import samples

OCRMYPDF = """\
import shutil, sys
args = sys.argv[1:]
assert args[:3] == ["--skip-text", "-l", "eng"], args
src, dst = args[3], args[4]
data = open(src, "rb").read()
if not data.rstrip().endswith(b"%%EOF"):
    print("input is not a valid PDF", file=sys.stderr)
    sys.exit(2)
shutil.copyfile(src, dst)
"""

PDFTOTEXT = """\
import sys
src, dst = sys.argv[1:]
open(dst, "w").write("text of " + src.rsplit("/", 1)[-1] + "\\n")
"""


def the_example() -> str:
    text = (REPO / "docs" / "workflows.md").read_text(encoding="utf-8")
    section = text.split("## Worked example: OCR every PDF dropped into an inbox", 1)[1]
    found = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert found
    return found.group(1)


def stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, code in (("ocrmypdf", OCRMYPDF), ("pdftotext", PDFTOTEXT)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{code}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def runs(env: dict[str, str]) -> list[dict[str, object]]:
    return json.loads(run_clerk("runs", "list", "--json", env=env, check=True).stdout)


def test_the_ocr_example_files_and_ocrs_pdfs(tmp_path: Path, clerk_home: Path) -> None:
    home = Path.home()
    inbox, scans = home / "Inbox", home / "Documents" / "Scans"
    inbox.mkdir()
    scans.mkdir(parents=True)
    (clerk_home / "rules.d").mkdir()
    (clerk_home / "rules.d" / "scans.yaml").write_text(the_example(), encoding="utf-8")
    stand_ins(tmp_path / "bin")
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    assert run_clerk("check", env=env).returncode == 0

    (inbox / "invoice.pdf").write_bytes(samples.pdf(1, "Invoice 42"))
    (inbox / "scan.bin").write_bytes(samples.pdf(2, "Letter"))  # a PDF by content
    (inbox / "broken.pdf").write_bytes(samples.pdf(3)[:100])  # PDF magic, but truncated
    (inbox / "notes.txt").write_text("not a pdf")
    run_clerk("scan", env=env, check=True)
    assert sorted(os.listdir(inbox)) == ["notes.txt"]

    def all_ended() -> bool:
        found = runs(env)
        return len(found) == 3 and all(r["status"] in ("COMPLETED", "FAILED") for r in found)

    wait_until(all_ended, timeout=60, what="the three ocr runs ended")
    for stem in ("invoice", "scan"):
        assert (scans / f"{stem}.ocr.pdf").read_bytes() == (
            scans / f"{stem}.pdf" if stem == "invoice" else scans / "scan.bin"
        ).read_bytes()
    assert (scans / "invoice.txt").read_text() == "text of invoice.ocr.pdf\n"
    assert (scans / "scan.txt").read_text() == "text of scan.ocr.pdf\n"
    # the truncated one: a business failure, not retried, the run FAILED, text never ran
    failed = [r for r in runs(env) if r["status"] == "FAILED"]
    assert len(failed) == 1
    shown = json.loads(
        run_clerk("runs", "show", str(failed[0]["id"]), "--json", env=env, check=True).stdout
    )
    tasks = {t["task"]: t for t in shown["tasks"]}
    assert tasks["ocr"]["error_code"] == "business"
    assert tasks["ocr"]["attempt"] == 1
    assert tasks["text"]["status"] != "COMPLETED"
    assert not (scans / "broken.txt").exists()
